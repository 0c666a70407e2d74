"""Run loggers behind one small interface: local JSONL (always) and Weights & Biases (optional).

W&B defaults to offline mode (no account needed; `wandb sync <run dir>/wandb/offline-run-*` uploads later).
Any W&B failure (no network, bad key, missing package) warns once and the run continues with local logs.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np


class Logger:
    def log_scalars(self, step: int, scalars: dict[str, float]) -> None: ...

    def log_image(self, step: int, name: str, image: np.ndarray) -> None: ...

    def finish(self, status: str, summary: dict[str, Any]) -> None: ...


def _json_safe(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


class JsonlLogger(Logger):
    """Appends one JSON object per logged step to <run dir>/metrics.jsonl."""

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log_scalars(self, step, scalars):
        record = {"step": step, **{k: _json_safe(float(v)) for k, v in scalars.items()}}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")


class WandbLogger(Logger):
    def __init__(self, out_dir, config: dict, *, project: str, mode: str, group: str | None, name: str | None,
                 tags: list[str] | None = None, entity: str | None = None, job_type: str = "train") -> None:
        self.run = None
        try:
            import wandb

            self._wandb = wandb
            self.run = wandb.init(
                project=project, entity=entity, mode=mode, group=group, name=name, tags=tags, job_type=job_type,
                config=config, dir=str(out_dir), reinit="finish_previous",
                settings=wandb.Settings(silent=True, console="off"),
            )
        except Exception as exc:  # logging must never take a run down
            warnings.warn(f"W&B logging disabled ({exc.__class__.__name__}: {exc}); local logs continue.",
                          stacklevel=2)

    def _safe(self, fn, *args, **kw) -> None:
        if self.run is None:
            return
        try:
            fn(*args, **kw)
        except Exception as exc:
            warnings.warn(f"W&B call failed ({exc}); disabling W&B for this run.", stacklevel=3)
            self.run = None

    def log_scalars(self, step, scalars):
        self._safe(lambda: self.run.log(dict(scalars), step=step))

    def log_image(self, step, name, image):
        self._safe(lambda: self.run.log({name: self._wandb.Image(image)}, step=step))

    def finish(self, status, summary):
        def _finish():
            self.run.summary.update({"status": status, **summary})
            self.run.finish(exit_code=0 if status == "completed" else 1)

        self._safe(_finish)


class MultiLogger(Logger):
    def __init__(self, *loggers: Logger) -> None:
        self.loggers = loggers

    def log_scalars(self, step, scalars):
        for lg in self.loggers:
            lg.log_scalars(step, scalars)

    def log_image(self, step, name, image):
        for lg in self.loggers:
            lg.log_image(step, name, image)

    def finish(self, status, summary):
        for lg in self.loggers:
            lg.finish(status, summary)
