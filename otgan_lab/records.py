"""Run records: result.json, written atomically, read by `otlab table` (which globs them)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
STATUSES = ("running", "completed", "diverged", "failed", "interrupted")


def _clean(value: Any) -> Any:
    """JSON cannot hold inf/nan: keep them as strings ('inf', 'nan') so tables can show them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_result(run_dir: str | Path, record: dict[str, Any]) -> Path:
    if record.get("status") not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {record.get('status')!r}")
    path = Path(run_dir) / RESULT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RESULT_FILE}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(_clean(record), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def read_result(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / RESULT_FILE).read_text())
