"""The evaluation hook: sample through the configured sampler, compute the configured metric suites, save a
picture of the samples. Built by train.py / eval.py from config and handed to the trainer as a callable.

Metric suites are registered by name; each takes (generated samples, dataset, **params) and returns floats.
The protocol (suite names, sample count, parameters) is recorded with every number so that `otlab table`
only compares numbers measured the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from otgan_lab.data.base import DeviceDataset
from otgan_lab.loggers import Logger
from otgan_lab.metrics.points2d import points2d_metrics
from otgan_lab.viz import image_grid, save_png, scatter_plot

Suite = Callable[..., dict[str, float]]


def _points2d(fake: torch.Tensor, data: DeviceDataset, **params) -> dict[str, float]:
    if data.kind != "points" or "centres" not in data.meta:
        raise ValueError(f"the points2d metrics need a 2-D mixture dataset, not {data.name!r}")
    real = data.all(0, params.get("w2_points", 2000))
    return points2d_metrics(fake, real, data.meta["centres"], data.meta["std"], **params)


SUITES: dict[str, Suite] = {"points2d": _points2d}


def register_suite(name: str, fn: Suite) -> None:
    SUITES[name] = fn


class Evaluator:
    def __init__(self, data: DeviceDataset, sampler: Any, *, n_samples: int, suites: dict[str, dict] | None,
                 out_dir: str | Path, logger: Logger | None = None, picture_samples: int = 64) -> None:
        suites = dict(suites or {})
        unknown = [s for s in suites if s not in SUITES]
        if unknown:
            raise ValueError(f"unknown metric suites {unknown}; available: {sorted(SUITES)}")
        self.data, self.sampler, self.n_samples, self.suites = data, sampler, int(n_samples), suites
        self.out_dir, self.logger, self.picture_samples = Path(out_dir), logger, picture_samples

    @property
    def protocol(self) -> dict[str, Any]:
        return {"n_samples": self.n_samples, "sampler": getattr(self.sampler, "name", "standard"),
                "suites": {k: dict(v) for k, v in self.suites.items()}, "dataset": self.data.name}

    @torch.no_grad()
    def __call__(self, method, step: int) -> dict[str, float]:
        fake = self.sampler.sample(method, self.n_samples)
        metrics: dict[str, float] = {}
        for name, params in self.suites.items():
            metrics.update(SUITES[name](fake, self.data, **params))
        metrics.update({f"sampler/{k}": float(v) for k, v in getattr(self.sampler, "stats", {}).items()})
        self.save_picture(fake, step)
        return metrics

    def save_picture(self, fake: torch.Tensor, step: int) -> Path:
        if self.data.kind == "points":
            real = self.data.all(0, len(fake))
            picture = scatter_plot(fake, real, self.data.meta.get("centres"), title=f"step {step}")
        else:
            picture = image_grid(fake[: self.picture_samples])
        path = save_png(picture, self.out_dir / "samples" / f"step_{step:08d}.png")
        if self.logger is not None:
            self.logger.log_image(step, "samples", picture)
        return path
