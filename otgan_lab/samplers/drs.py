"""Discriminator Rejection Sampling (Azadi, Olsson, Darrell, Goodfellow, Odena, ICLR 2019).

With the optimal logit D̃*(x) = log p_d/p_g, rejection sampling from p_g accepts x with probability
exp(D̃*(x) − D̃*_M). DRS estimates D̃_M as the max logit over a burn-in of generator draws (raised on
the fly), and accepts with σ(F − γ), F = Δ − log(1 − exp(Δ − ε)), Δ = logit − D̃_M, γ a per-batch
percentile of F (γ = 0 gives exact rejection sampling: σ(F) → e^Δ as ε → 0). See METHODS.md §10.
The critic can first be calibrated on real data (``calibrate_steps > 0``; samplers/calibration.py).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as nnf
from torch import Tensor

from otgan_lab.metrics.spec import MetricSpec, frozen_specs
from otgan_lab.numerics import log1mexp
from otgan_lab.samplers.base import draw_latents, generate_batched, uniforms
from otgan_lab.samplers.calibration import CalibratedSampler, CriticCalibration, LogitFn


def drs_score(logits: Tensor, max_logit: float | Tensor, eps: float = 1e-6) -> Tensor:
    """F(x) = Δ − log(1 − exp(Δ − ε)) with Δ = logit − D̃_M, in float64; shape of ``logits``.

    Requires every logit ≤ max_logit (so Δ − ε < 0): samplers raise D̃_M before calling this.
    """
    delta = logits.to(torch.float64) - torch.as_tensor(max_logit, dtype=torch.float64, device=logits.device)
    if bool((delta - eps >= 0).any()):
        raise ValueError("drs_score needs logits <= max_logit (update the max logit before scoring)")
    return delta - log1mexp(delta - eps)


class DRSSampler(CalibratedSampler):
    """Discriminator rejection sampling; ``percentile=None`` sets γ = 0 (exact rejection sampling)."""

    name = "drs"
    stat_specs = frozen_specs({
        "acceptance_rate": MetricSpec("acceptance rate", "max"),  # higher: fewer generator draws
        "draws_per_accepted": MetricSpec("generator draws per sample", "min"),
        "max_logit": MetricSpec("max critic logit", None),
        "gamma_mean": MetricSpec("mean gamma", None),
        "burn_in_draws": MetricSpec("burn-in draws", None),
        **CriticCalibration.stat_specs,
    })

    def __init__(
        self,
        burn_in: int = 10000,
        percentile: float | None = 80.0,
        eps: float = 1e-6,
        batch_size: int = 1000,
        calibrate_steps: int = 0,
        calibrate_lr: float = 1e-4,
        calibration: str = "auto",
        max_draws: int | None = None,
    ) -> None:
        if percentile is not None and not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must be in [0, 100] or None, got {percentile}")
        if batch_size < 1 or burn_in < 0:
            raise ValueError("batch_size must be >= 1 and burn_in >= 0")
        super().__init__(calibrate_steps, calibrate_lr, calibration, batch_size)
        self.burn_in, self.percentile, self.eps, self.batch_size = burn_in, percentile, eps, batch_size
        self.max_draws = max_draws
        # D̃_M after the burn-in and after each sampling batch (never decreases); for inspection and tests
        self.max_logit_trace: list[float] = []

    def _batch_logits(self, method: Any, logit_fn: LogitFn, m: int,
                      generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            x = method.generate(draw_latents(method, m, generator))
            logits = logit_fn(x).reshape(m).to(torch.float64)
        if bool(torch.isnan(logits).any()) or bool((logits == math.inf).any()):
            raise ValueError("critic returned NaN or +inf logits; DRS cannot bound them")
        return x, logits

    def _sample(self, method: Any, n: int, generator: torch.Generator | None) -> Tensor:
        logit_fn = self.calibration.logit_fn(method, "DRS")
        if n == 0:
            return generate_batched(method, 0, self.batch_size, generator)[1]
        max_logit, burned = -math.inf, 0
        while burned < self.burn_in:  # D̃_M estimate; burn-in samples are only scored, never returned
            m = min(self.batch_size, self.burn_in - burned)
            max_logit = max(max_logit, float(self._batch_logits(method, logit_fn, m, generator)[1].max()))
            burned += m
        self.max_logit_trace = [max_logit]
        limit = self.max_draws if self.max_draws is not None else 100 * n + self.batch_size
        kept: list[Tensor] = []
        n_accepted, draws, gammas = 0, 0, []
        while n_accepted < n:
            if draws >= limit:
                raise RuntimeError(
                    f"DRS accepted {n_accepted}/{n} samples in {draws} draws (max_draws={limit}); "
                    "lower the percentile or raise max_draws"
                )
            x, logits = self._batch_logits(method, logit_fn, self.batch_size, generator)
            # raise D̃_M BEFORE computing acceptances so that Δ − ε < 0 for every sample in the batch
            max_logit = max(max_logit, float(logits.max()))
            self.max_logit_trace.append(max_logit)
            f = drs_score(logits, max_logit, self.eps)
            gamma = (torch.quantile(f, self.percentile / 100.0) if self.percentile is not None
                     else f.new_zeros(()))
            gammas.append(float(gamma))
            accept = uniforms(len(f), f.device, generator).log() < nnf.logsigmoid(f - gamma)
            kept.append(x[accept.to(x.device)])
            n_accepted += int(accept.sum())
            draws += len(f)
        self.stats = {
            "acceptance_rate": n_accepted / draws,
            "draws_per_accepted": draws / n,
            "max_logit": max_logit,
            "gamma_mean": sum(gammas) / len(gammas),
            "burn_in_draws": float(burned),
            **self.calibration.stats(),
        }
        return torch.cat(kept)[:n]

    def __repr__(self) -> str:
        return (f"DRSSampler(burn_in={self.burn_in}, percentile={self.percentile}, eps={self.eps}, "
                f"batch_size={self.batch_size}, calibrate_steps={self.calibration.steps})")
