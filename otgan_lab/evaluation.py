"""The evaluation hook: sample through the configured sampler, compute the configured metric suites, save a
picture of the samples. Built by train.py / eval.py from config and handed to the trainer as a callable.

Metric suites are registered by name; each takes (generated samples, dataset, **params) and returns floats,
declares what the keys it returns mean (`otgan_lab.metrics.spec.declares`: display name and which direction
is better) and may describe its protocol (backbone, reference split...). A `metrics` config is `n_samples`
plus one entry per suite with its parameters. The protocol (suites, their parameters, sample count, sampler)
is recorded with every number so that `otlab table` only compares numbers measured the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from otgan_lab.data.base import DeviceDataset
from otgan_lab.loggers import Logger
from otgan_lab.metrics.images import (
    class_metrics,
    image_metrics,
    image_protocol,
    inception_score,
    inception_score_protocol,
    stacked_modes,
)
from otgan_lab.metrics.points2d import points2d_metrics
from otgan_lab.metrics.spec import MetricSpec, declares, prefixed, specs_of, specs_record
from otgan_lab.viz import captioned, image_grid, run_title, save_png, scatter_plot

Suite = Callable[..., dict[str, float]]


@declares(specs_of(points2d_metrics))
def _points2d(fake: torch.Tensor, data: DeviceDataset, **params) -> dict[str, float]:
    if data.kind != "points" or "centres" not in data.meta:
        raise ValueError(f"the points2d metrics need a 2-D mixture dataset, not {data.name!r}")
    real = data.all(0, params.get("w2_points", 2000))
    return points2d_metrics(fake, real, data.meta["centres"], data.meta["std"], **params)


SUITES: dict[str, Suite] = {"points2d": _points2d, "fid": image_metrics, "classifier": class_metrics,
                            "stacked_modes": stacked_modes, "inception_score": inception_score}
PROTOCOLS: dict[str, Callable[..., dict[str, Any]]] = {"fid": image_protocol,
                                                       "inception_score": inception_score_protocol}


def register_suite(name: str, fn: Suite, protocol: Callable[..., dict[str, Any]] | None = None,
                   specs: Mapping[str, MetricSpec] | None = None) -> None:
    """Add a suite; `specs` declares its keys when `fn` was not decorated with `declares` (a key nothing
    declares has no direction: `otlab table` then asks for --goal)."""
    SUITES[name] = declares({**specs_of(fn), **(specs or {})})(fn) if specs else fn
    if protocol is not None:
        PROTOCOLS[name] = protocol


class Evaluator:
    def __init__(self, data: DeviceDataset, sampler: Any, *, n_samples: int, suites: dict[str, dict] | None,
                 out_dir: str | Path, logger: Logger | None = None, picture_samples: int = 64,
                 primary: bool = True) -> None:
        suites = dict(suites or {})
        unknown = [s for s in suites if s not in SUITES]
        if unknown:
            raise ValueError(f"unknown metric suites {unknown}; available: {sorted(SUITES)}")
        self.data, self.sampler, self.n_samples, self.suites = data, sampler, int(n_samples), suites
        self.out_dir, self.logger, self.picture_samples = Path(out_dir), logger, picture_samples
        self.primary = primary

    @property
    def protocol(self) -> dict[str, Any]:
        suites = {k: {**v, **PROTOCOLS[k](self.data, **v)} if k in PROTOCOLS else dict(v)
                  for k, v in self.suites.items()}
        return {"n_samples": self.n_samples, "sampler": getattr(self.sampler, "name", "standard"),
                "suites": suites, "dataset": self.data.name}

    @property
    def declared_specs(self) -> dict[str, MetricSpec]:
        """What every key this evaluator can log means: the suites' keys and the sampler's sampler/<key>."""
        specs: dict[str, MetricSpec] = {}
        for suite in self.suites:
            specs.update(specs_of(SUITES[suite]))
        specs.update(prefixed(getattr(type(self.sampler), "stat_specs", {}), "sampler/"))
        return specs

    @property
    def metric_specs(self) -> dict[str, dict[str, str | None]]:
        """{key: {"display": ..., "goal": "min" | "max" | None}} for result.json (`record["metric_specs"]`):
        known before any evaluation, so even a run that fails early records its metrics' directions."""
        return specs_record(self.declared_specs)

    @property
    def name(self) -> str:
        """'' for the run's own sampler (metrics logged as eval/<metric>), else the sampler's name."""
        return "" if self.primary else self.sampler.name

    def fit_sampler(self, method) -> None:
        """Samplers that calibrate on real data (DRS, MH) get the dataset's batches first."""
        if getattr(self.sampler, "needs_real_data", False):
            self.sampler.fit(method, self.random_real)

    def random_real(self, n: int) -> torch.Tensor:
        return random_real(self.data, n)

    def __call__(self, method, step: int) -> dict[str, float]:
        self.fit_sampler(method)  # the critic moves during training: calibrate on the weights evaluated now
        self.method_name = getattr(method, "name", None)  # for the picture's title
        with torch.no_grad():
            fake = self.sampler.sample(method, self.n_samples)
        return self.measure(fake, step)

    @torch.no_grad()
    def suite_metrics(self, fake: torch.Tensor) -> dict[str, float]:
        """The configured metric suites on `fake`, nothing else (no sampler stats, no picture)."""
        metrics: dict[str, float] = {}
        for name, params in self.suites.items():
            metrics.update(SUITES[name](fake, self.data, **params))
        return metrics

    @torch.no_grad()
    def measure(self, fake: torch.Tensor, step: int) -> dict[str, float]:
        metrics = self.suite_metrics(fake)
        metrics.update({f"sampler/{k}": float(v) for k, v in getattr(self.sampler, "stats", {}).items()})
        self.save_picture(fake, step)
        return metrics

    def save_picture(self, fake: torch.Tensor, step: int) -> Path:
        """samples/<step>.png, titled with method, dataset, step and sampler (the method's name is known
        once the evaluator has been called with it)."""
        title = run_title(getattr(self, "method_name", None), self.data.name, step,
                          getattr(self.sampler, "name", None))
        if self.data.kind == "points":
            real = self.data.all(0, len(fake))
            picture = scatter_plot(fake, real, self.data.meta.get("centres"), title=title,
                                   std=self.data.meta.get("std"))
        else:
            shown = fake[: self.picture_samples]
            picture = captioned(image_grid(shown), f"{title} ({len(shown)} of {len(fake)} samples)")
        tag = "" if self.primary else f"{self.sampler.name}_"
        path = save_png(picture, self.out_dir / "samples" / f"{tag}step_{step:08d}.png")
        if self.logger is not None:
            self.logger.log_image(step, f"samples/{self.sampler.name}", picture)
        return path


def random_real(data, n: int) -> torch.Tensor:
    """n real samples in data space drawn with the global RNG (a sampler's calibration data): the training
    data order (the dataset's own generator) is left untouched."""
    idx = torch.randint(len(data), (n,), device=data.device)
    return data.to_data_space(data.data[idx])
