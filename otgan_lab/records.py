"""Run records: result.json, written atomically, read by `otlab table` (which globs them)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
STATUSES = ("running", "completed", "diverged", "failed", "interrupted")


def clean_json(value: Any) -> Any:
    """JSON cannot hold inf/nan: keep them as strings ('inf', 'nan') so tables can show them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write JSON to a temp file beside `path`, fsync, rename: a reader sees the old or the new file, whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(json.dumps(clean_json(obj), indent=2, sort_keys=False, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def write_result(run_dir: str | Path, record: dict[str, Any]) -> Path:
    if record.get("status") not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {record.get('status')!r}")
    return write_json_atomic(Path(run_dir) / RESULT_FILE, record)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values (they are compared as a whole)."""
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node} if prefix else {}


def read_existing(run_dir: str | Path) -> dict[str, Any] | None:
    """The run dir's result.json as a dict, or None when there is none or it cannot be read."""
    try:
        record = read_result(run_dir)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def may_replace(existing: dict[str, Any] | None, status: str) -> bool:
    """A completed record is only ever replaced by another completed one (a longer run, a re-evaluation):
    a failed, diverged, interrupted or running attempt never downgrades it (the attempt goes to
    attempts.jsonl instead). Any other record may be replaced."""
    return not (existing is not None and existing.get("status") == "completed" and status != "completed")


def read_result(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / RESULT_FILE).read_text())


# ----------------------------------------------------------------------------------------------------------
# Shape of a record, as `otlab table` reads it: one place says what a well-formed result.json holds.

_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
               float: "a number", type(None): "null"}
_TEXT_FIELDS = ("method", "dataset", "model", "sampler", "precision", "error", "primary_metric")
_TIME_FIELDS = ("wall_time", "train_time", "steps_per_sec")
_METRIC_GOALS = ("min", "max", None)


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_number_text(value: Any) -> bool:
    """A number, or one written as text ('inf', 'nan': JSON has no infinities)."""
    if _is_number(value):
        return True
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _metrics_problems(metrics: Any, where: str) -> list[str]:
    if not isinstance(metrics, dict):
        return [f"{where} is {_json_type(metrics)}, not an object of metric values"]
    return [f"{where}[{key!r}] is {_json_type(value)}, not a number or string"
            for key, value in metrics.items() if not isinstance(value, (int, float, str, type(None)))]


def _specs_problems(specs: Any, where: str) -> list[str]:
    if not isinstance(specs, dict):
        return [f"{where} is {_json_type(specs)}, not an object"]
    problems = []
    for key, entry in specs.items():
        if not isinstance(entry, dict):
            problems.append(f"{where}[{key!r}] is {_json_type(entry)}, not an object")
        elif "goal" not in entry:
            problems.append(f"{where}[{key!r}] has no goal ('min', 'max' or null)")
        elif entry["goal"] not in _METRIC_GOALS:
            problems.append(f"{where}[{key!r}].goal is {entry['goal']!r}, not 'min', 'max' or null")
        elif not isinstance(entry.get("display", ""), str):
            problems.append(f"{where}[{key!r}].display is {_json_type(entry['display'])}, not a string")
    return problems


def record_problems(record: Any) -> list[str]:
    """What is wrong with the shape of a result.json record (key, and what it holds instead); empty when it
    can be tabulated. Keys the table does not read are not checked; absent optional keys are fine."""
    if not isinstance(record, dict):
        return [f"the record is {_json_type(record)}, not an object"]
    problems = []
    status = record.get("status")
    if status not in STATUSES:
        problems.append(f"status is {status!r}, not one of {', '.join(STATUSES)}")
    for key in _TEXT_FIELDS:
        if not isinstance(record.get(key), (str, type(None))):
            problems.append(f"{key} is {_json_type(record[key])}, not a string")
    seed = record.get("seed")
    if not (seed is None or _is_number(seed) or isinstance(seed, str)):
        problems.append(f"seed is {_json_type(seed)}, not a number or string")
    for key in _TIME_FIELDS:
        if record.get(key) is not None and not _is_number_text(record[key]):
            problems.append(f"{key} is {_json_type(record[key])} ({record[key]!r:.40}), not a number")
    steps = record.get("steps")
    if not (steps is None or (_is_number(steps) and float(steps).is_integer())):
        problems.append(f"steps is {_json_type(steps)} ({steps!r:.40}), not an integer")
    for key in ("config", "protocol"):
        if not isinstance(record.get(key), (dict, type(None))):
            problems.append(f"{key} is {_json_type(record[key])}, not an object")
    overrides = record.get("overrides")
    if overrides is not None and not (isinstance(overrides, list)
                                      and all(isinstance(o, str) for o in overrides)):
        problems.append(f"overrides is {_json_type(overrides)}, not an array of strings")
    if "metrics" in record and record["metrics"] is not None:
        problems += _metrics_problems(record["metrics"], "metrics")
    if "metric_specs" in record and record["metric_specs"] is not None:
        problems += _specs_problems(record["metric_specs"], "metric_specs")
    samplers = record.get("samplers")
    if samplers is not None and not isinstance(samplers, dict):
        problems.append(f"samplers is {_json_type(samplers)}, not an object of sampler entries")
    for name, entry in (samplers.items() if isinstance(samplers, dict) else ()):
        where = f"samplers[{name!r}]"
        if not isinstance(entry, dict):
            problems.append(f"{where} is {_json_type(entry)}, not an object")
            continue
        if entry.get("metrics") is not None:
            problems += _metrics_problems(entry["metrics"], f"{where}.metrics")
        if not isinstance(entry.get("protocol"), (dict, type(None))):
            problems.append(f"{where}.protocol is {_json_type(entry['protocol'])}, not an object")
        if entry.get("metric_specs") is not None:
            problems += _specs_problems(entry["metric_specs"], f"{where}.metric_specs")
    return problems


def sampler_entry(metrics: dict[str, Any], evaluator, use_ema: bool, error: str | None) -> dict[str, Any]:
    """One sampler's part of result.json: its metrics, protocol and specs, and its error if it failed."""
    entry: dict[str, Any] = {"metrics": metrics, "protocol": evaluator.protocol, "use_ema": use_ema,
                             "metric_specs": evaluator.metric_specs}
    if error is not None:
        entry["error"] = error
    return entry


def summary_text(record: dict[str, Any]) -> str:
    """Plain text (printed without rich markup, so `[completed]` and user paths show as they are)."""
    lines = [f"[{record['status']}] {record['method']} on {record['dataset']} ({record['model']}), "
             f"{record.get('steps', 0)} steps, {record.get('steps_per_sec', 0):.1f} it/s, "
             f"{record.get('wall_time', 0):.0f} s"]
    for key, value in record.get("metrics", {}).items():
        lines.append(f"  {key:>24s}: {value:.4g}" if isinstance(value, float) else f"  {key:>24s}: {value}")
    for name, entry in (record.get("samplers") or {}).items():
        if "error" in entry:
            lines.append(f"  evaluation with sampler {name} failed: {entry['error']}")
            lines.append(f"    the weights are saved; after fixing the cause, redo it with: "
                         f"otlab eval run={record['run_dir']} sampler={name}")
    if record.get("kept_record"):
        lines.append(f"  note: {record['kept_record']}")
    lines.append(f"  run dir: {record['run_dir']}")
    return "\n".join(lines)
