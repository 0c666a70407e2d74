"""Run loggers behind one small interface: local JSONL (always) and Weights & Biases (optional).

W&B defaults to offline mode (no account needed; `wandb sync <run dir>/wandb/offline-run-*` uploads later).
Any W&B failure (no network, bad key, missing package) warns once and the run continues with local logs.

A run dir is one W&B run: its id is kept in `<run dir>/wandb_run_id`, and a resumed run (the same
`hydra.run.dir`) continues that W&B run (`resume="allow"`) instead of starting a second one with the same
name. Runs are tagged with their method, dataset, model, sampler and report row (`default_tags`), plus
`logger.tags`; the console (stdout and stderr) is captured into the W&B run's `output.log`.
"""

from __future__ import annotations

import json
import math
import secrets
import string
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

RUN_ID_FILE = "wandb_run_id"


class Logger:
    def log_scalars(self, step: int, scalars: dict[str, float]) -> None: ...

    def log_image(self, step: int, name: str, image: np.ndarray) -> None: ...

    def describe(self, info: dict[str, Any]) -> None:
        """Facts about the run known once it is built (the evaluation protocol): config, not time series."""

    def finish(self, status: str, summary: dict[str, Any]) -> None: ...


def _json_safe(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def training_rates(optimizers: Mapping[str, Any], steps_per_sec: float) -> dict[str, float]:
    """What a log step records besides the losses: each optimizer's learning rate (`lr/<optimizer>`; a
    Python float in param_groups, so no device sync; `lr/<optimizer>/<group>` when its groups differ) and
    the generator iterations per second over the last log interval (`speed/steps_per_sec`)."""
    rates: dict[str, float] = {}
    for name, optimizer in optimizers.items():
        lrs = [float(group["lr"]) for group in optimizer.param_groups]
        if len(set(lrs)) == 1:
            rates[f"lr/{name}"] = lrs[0]
        else:
            rates.update({f"lr/{name}/{i}": lr for i, lr in enumerate(lrs)})
    rates["speed/steps_per_sec"] = float(steps_per_sec)
    return rates


def default_tags(config: Mapping[str, Any]) -> list[str]:
    """`method:<m>`, `dataset:<d>`, `model:<m>`, `sampler:<s>` and `report_row:<r>` (when the config has
    one) from a run's resolved config; what is missing is left out."""

    def name(group: str) -> str | None:
        node = config.get(group)
        if not isinstance(node, Mapping):
            return None
        if node.get("name"):
            return str(node["name"])
        target = node.get("_target_")
        return str(target).rsplit(".", 1)[-1] if target else None

    tags = [f"{group}:{value}" for group in ("method", "dataset", "model", "sampler")
            if (value := name(group))]
    if config.get("report_row"):
        tags.append(f"report_row:{config['report_row']}")
    return tags


def protocol_config(protocol: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluation protocol as W&B config: the whole record under `eval_protocol`, and each suite's
    feature backbone flat (`fid_backbone: lenet_mnist`) so that runs can be filtered and grouped by it:
    FIDs from different backbones are not comparable."""
    info: dict[str, Any] = {"eval_protocol": dict(protocol)}
    for suite, params in (protocol.get("suites") or {}).items():
        if isinstance(params, Mapping) and params.get("backbone"):
            info[f"{suite}_backbone"] = params["backbone"]
    return info


def _new_run_id() -> str:
    """A W&B run id (8 lowercase letters and digits, W&B's own form), chosen here so that it can be kept."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


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
    """One W&B run per run dir (its id in `<out_dir>/wandb_run_id`; a rerun in the dir resumes it), tagged
    with `default_tags(config)` + `tags`, the console captured (`output.log` in the W&B run's files)."""

    def __init__(self, out_dir, config: dict, *, project: str, mode: str, group: str | None, name: str | None,
                 tags: list[str] | None = None, entity: str | None = None, job_type: str = "train") -> None:
        self.run = None
        try:
            import wandb

            self._wandb = wandb
            id_file = Path(out_dir) / RUN_ID_FILE
            run_id = id_file.read_text().strip() if id_file.is_file() else None
            all_tags = list(dict.fromkeys([*default_tags(config), *(tags or [])]))
            self.run = wandb.init(
                project=project, entity=entity, mode=mode, group=group, name=name, tags=all_tags,
                job_type=job_type, dir=str(out_dir), reinit="finish_previous",
                id=run_id or _new_run_id(), resume="allow",
                settings=wandb.Settings(silent=True, console="wrap"),
            )
            # a resumed run may change keys that may change (trainer.steps...): update, not a conflict
            self.run.config.update(config, allow_val_change=True)
            if run_id is None:
                id_file.write_text(self.run.id + "\n")
        except Exception as exc:  # logging must never take a run down
            warnings.warn(f"W&B logging disabled ({exc.__class__.__name__}: {exc}); local logs continue.",
                          stacklevel=2)
            if self.run is not None:
                try:
                    self.run.finish(exit_code=1)
                except Exception:
                    pass
            self.run = None

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

    def describe(self, info):
        self._safe(lambda: self.run.config.update(dict(info), allow_val_change=True))

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

    def describe(self, info):
        for lg in self.loggers:
            lg.describe(info)

    def finish(self, status, summary):
        for lg in self.loggers:
            lg.finish(status, summary)
