"""Metropolis-Hastings GAN (Turner, Hung, Frank, Saatci, Yosinski, ICML 2019).

An independence Metropolis-Hastings sampler whose proposals are generator draws x' ~ p_g and whose target is
p_d ∝ p_g·r with r = exp(logit) ≈ p_d/p_g read from the (optionally calibrated) critic: a chain at x moves to
x' with probability min(1, r(x')/r(x)). One chain per requested sample, ``chain_length`` proposals each,
all chains advanced together; the final states are returned.

Initialisation (our choice): each chain starts at a generator draw. The paper [recalled] starts at a real
sample and restarts chains that never accept; starting at a generated sample returns no real data, and makes
a chain that never moves return a plain p_g sample (the fraction is logged as ``never_moved``). This is also
what the DOT authors' MH code does when no initial real batch is given.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from otgan_lab.metrics.spec import MetricSpec, frozen_specs
from otgan_lab.samplers.base import DRAWS_PER_SAMPLE, draw_latents, uniforms
from otgan_lab.samplers.calibration import CalibratedSampler, CriticCalibration, LogitFn


def mh_accept(log_r_current: Tensor, log_r_proposal: Tensor, log_u: Tensor) -> Tensor:
    """Independence-MH acceptance: U < min(1, r(x')/r(x)) ⇔ log U < log r(x') − log r(x). Bool, same shape.

    A current state with r = 0 (log r = −inf) accepts any proposal with r > 0; −inf vs −inf stays (NaN < u).
    """
    return log_u < (log_r_proposal - log_r_current)


class MHSampler(CalibratedSampler):
    """MH-GAN sampling with ``chain_length`` generator proposals per returned sample.

    The paper evaluates chains of up to 640 proposals [recalled], as does the DOT authors' MH code (default
    640). Calibration (``calibrate_steps > 0`` and ``fit(method, real)``) defaults to Platt scaling, i.e. a
    logistic regression on the critic output as in that code; a WGAN critic needs it.
    """

    name = "mh"
    stat_specs = frozen_specs({
        "acceptance_rate": MetricSpec("acceptance rate", "max"),
        # a chain that never moved returns its first, unfiltered proposal
        "never_moved": MetricSpec("share of chains that never moved", "min"),
        "draws_per_sample": DRAWS_PER_SAMPLE,
        **CriticCalibration.stat_specs,
    })

    def __init__(
        self,
        chain_length: int = 640,
        batch_size: int = 1000,
        calibrate_steps: int = 0,
        calibrate_lr: float = 1e-4,
        calibration: str = "platt",
    ) -> None:
        if chain_length < 0 or batch_size < 1:
            raise ValueError("chain_length must be >= 0 and batch_size >= 1")
        super().__init__(calibrate_steps, calibrate_lr, calibration, batch_size)
        self.chain_length, self.batch_size = chain_length, batch_size

    @torch.no_grad()
    def _draw(self, method: Any, logit_fn: LogitFn, m: int,
              generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        x = method.generate(draw_latents(method, m, generator))
        return x, logit_fn(x).reshape(m).to(torch.float64)

    def _sample(self, method: Any, n: int, generator: torch.Generator | None) -> Tensor:
        logit_fn = self.calibration.logit_fn(method, "MH")
        if n == 0:
            return self._draw(method, logit_fn, 1, generator)[0][:0]
        outs, n_accepted, n_never_moved = [], 0, 0
        # chains are independent: run them block by block to bound memory at batch_size states
        for start in range(0, n, self.batch_size):
            m = min(self.batch_size, n - start)
            x, log_r = self._draw(method, logit_fn, m, generator)
            moved = torch.zeros(m, dtype=torch.bool, device=log_r.device)
            for _ in range(self.chain_length):
                x_new, log_r_new = self._draw(method, logit_fn, m, generator)
                acc = mh_accept(log_r, log_r_new, uniforms(m, log_r.device, generator).log())
                x = torch.where(acc.to(x.device).view(-1, *([1] * (x.dim() - 1))), x_new, x)
                log_r = torch.where(acc, log_r_new, log_r)
                moved |= acc
                n_accepted += int(acc.sum())
            n_never_moved += int((~moved).sum())
            outs.append(x)
        self.stats = {
            "acceptance_rate": n_accepted / max(n * self.chain_length, 1),
            "never_moved": n_never_moved / n,
            "draws_per_sample": float(self.chain_length + 1),
            **self.calibration.stats(),
        }
        return torch.cat(outs)

    def __repr__(self) -> str:
        return (f"MHSampler(chain_length={self.chain_length}, batch_size={self.batch_size}, "
                f"calibrate_steps={self.calibration.steps})")
