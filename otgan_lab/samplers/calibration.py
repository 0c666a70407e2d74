"""Critic calibration for the samplers that read a critic as a logit (DRS, MH).

DRS and MH need logit(x) ≈ log p_data/p_gen. ``calibrate_steps > 0`` (real data passed to ``fit``) first
calibrates a copy of the trained critic, leaving the method untouched:
- ``"finetune"`` (default for logit critics, DRS's "keep training D"): a deep copy of
  ``method.critic_module`` is trained with BCE-with-logits (real = 1, fake = 0), generator fixed.
- ``"platt"`` (default and only choice for WGAN critics): the critic is frozen and a logistic head
  a·critic(x) + b is fitted by Newton's method (Platt scaling), turning a critic value into a logit.
``CalibratedSampler`` is the sampler-side glue both samplers share.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from otgan_lab.metrics.spec import MetricSpec, frozen_specs
from otgan_lab.samplers.base import RealData, Sampler, draw_latents, eval_mode, real_batches

LogitFn = Callable[[Tensor], Tensor]


def fit_platt(scores_real: Tensor, scores_fake: Tensor, l2: float = 1e-6,
              iters: int = 50) -> tuple[float, float]:
    """Platt scaling: fit logit = a·s + b to real (label 1) vs fake (label 0) by damped Newton, float64.

    The score is standardised first (critic values can be in the hundreds); ``l2`` (on the standardised
    slope, per sample) keeps the fit finite when the two sets are separable. With equal numbers of real and
    fake scores, a·s + b estimates log p_d/p_g.
    """
    s = torch.cat([scores_real.reshape(-1), scores_fake.reshape(-1)]).to(torch.float64).cpu()
    y = torch.cat([torch.ones(scores_real.numel()), torch.zeros(scores_fake.numel())]).to(torch.float64)
    mu, sd = s.mean(), s.std().clamp_min(1e-12)
    feats = torch.stack([(s - mu) / sd, torch.ones_like(s)], dim=1)  # (N, 2): standardised score, bias
    reg = torch.diag(torch.tensor([l2, 0.0], dtype=torch.float64))

    def loss(theta: Tensor) -> Tensor:  # mean BCE-with-logits + ridge on the slope
        return nnf.binary_cross_entropy_with_logits(feats @ theta, y) + 0.5 * theta @ reg @ theta

    theta = torch.zeros(2, dtype=torch.float64)
    for _ in range(iters):
        p = torch.sigmoid(feats @ theta)
        grad = feats.T @ (p - y) / len(y) + reg @ theta
        hess = (feats.T * (p * (1 - p))) @ feats / len(y) + reg + 1e-12 * torch.eye(2, dtype=torch.float64)
        step = torch.linalg.solve(hess, grad)
        t, current = 1.0, loss(theta)
        while loss(theta - t * step) > current and t > 1e-8:  # halve the step when Newton overshoots
            t *= 0.5
        theta = theta - t * step
        if float(grad.abs().max()) < 1e-10:
            break
    a = float(theta[0] / sd)
    return a, float(theta[1] - a * mu)


class PlattCritic:
    """x -> a·critic(x) + b on a frozen critic."""

    def __init__(self, critic: LogitFn, a: float, b: float) -> None:
        self.critic, self.a, self.b = critic, a, b

    def __call__(self, x: Tensor) -> Tensor:
        return self.a * self.critic(x).reshape(len(x)) + self.b


class ModuleCritic:
    """x -> module(x) as a (n,) logit; ``module`` is a fine-tuned deep copy of ``method.critic_module``."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, x: Tensor) -> Tensor:
        return self.module(x).reshape(len(x))


@torch.no_grad()
def _fake(method: Any, n: int, generator: torch.Generator | None) -> Tensor:
    return method.generate(draw_latents(method, n, generator))


def calibrate_critic(
    method: Any,
    real: RealData,
    steps: int,
    *,
    mode: str = "auto",
    lr: float = 1e-4,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
) -> LogitFn:
    """Return a calibrated logit function x -> (n,) estimating log p_d/p_g; ``method`` is not modified.

    mode "platt": ``steps`` real and fake batches are scored by the frozen critic and (a, b) is fitted.
    mode "finetune": ``steps`` Adam(lr, betas=(0.5, 0.999)) steps of BCE-with-logits on a deep copy of
    ``method.critic_module`` (train mode, like GAN training), generator fixed. "auto": finetune for a logit
    critic, platt for a WGAN critic (a critic value is not a logit, so it is rescaled rather than retrained).
    """
    if steps < 1:
        raise ValueError(f"calibration needs steps >= 1, got {steps}")
    if mode == "auto":
        mode = "finetune" if method.critic_is_logit else "platt"
    stream = real_batches(real, batch_size, generator)
    with eval_mode(method):
        if mode == "platt":
            s_real, s_fake = [], []
            with torch.no_grad():
                for _ in range(steps):
                    fake = _fake(method, batch_size, generator)
                    s_real.append(method.critic(next(stream).to(fake.device)).reshape(-1))
                    s_fake.append(method.critic(fake).reshape(-1))
            a, b = fit_platt(torch.cat(s_real), torch.cat(s_fake))
            return PlattCritic(method.critic, a, b)
        if mode != "finetune":
            raise ValueError(f"unknown calibration mode {mode!r}; expected 'auto', 'platt' or 'finetune'")
        module = getattr(method, "critic_module", None)
        if not isinstance(module, nn.Module):
            raise ValueError("fine-tune calibration needs method.critic_module (an nn.Module); "
                             "use mode='platt'")
        tuned = copy.deepcopy(module)
        probe = _fake(method, min(batch_size, 64), generator)
        with torch.no_grad():
            tuned.eval()
            if not torch.allclose(tuned(probe).reshape(len(probe)), method.critic(probe).reshape(len(probe)),
                                  rtol=1e-4, atol=1e-5):
                raise ValueError("method.critic_module(x) differs from method.critic(x); fine-tuning the "
                                 "module would calibrate a different function, use mode='platt'")
        tuned.train().requires_grad_(True)
        opt = torch.optim.Adam(tuned.parameters(), lr=lr, betas=(0.5, 0.999))
        for _ in range(steps):
            fake = _fake(method, batch_size, generator)
            real_x = next(stream).to(fake.device)
            out_real, out_fake = tuned(real_x).reshape(-1), tuned(fake).reshape(-1)
            loss = nnf.binary_cross_entropy_with_logits(out_real, torch.ones_like(out_real)) + \
                nnf.binary_cross_entropy_with_logits(out_fake, torch.zeros_like(out_fake))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        tuned.eval().requires_grad_(False)
        return ModuleCritic(tuned)


class CriticCalibration:
    """Holds an optional calibrated logit for one method; shared by the DRS and MH samplers."""

    # the keys of stats(): the Platt fit logit = a * critic + b, present only when Platt-scaled
    stat_specs = frozen_specs({"platt_a": MetricSpec("Platt slope a", None),
                               "platt_b": MetricSpec("Platt offset b", None)})

    def __init__(self, steps: int = 0, lr: float = 1e-4, mode: str = "auto", batch_size: int = 256) -> None:
        if steps < 0:
            raise ValueError(f"calibrate_steps must be >= 0, got {steps}")
        self.steps, self.lr, self.mode, self.batch_size = steps, lr, mode, batch_size
        self._fn: LogitFn | None = None
        self._method_id: int | None = None

    def fit(self, method: Any, real: RealData, steps: int | None = None,
            generator: torch.Generator | None = None) -> LogitFn:
        self._fn = calibrate_critic(method, real, steps or self.steps, mode=self.mode, lr=self.lr,
                                    batch_size=self.batch_size, generator=generator)
        self._method_id = id(method)
        return self._fn

    def stats(self) -> dict[str, float]:
        if isinstance(self._fn, PlattCritic):
            return {"platt_a": self._fn.a, "platt_b": self._fn.b}
        return {}

    def requirement_problems(self, method: Any, who: str) -> list[str]:
        """A critic, and a logit one unless this sampler calibrates (Platt-scales) it first."""
        name = getattr(method, "name", "?")
        if not getattr(method, "has_critic", False):
            return [f"sampler={who} needs a critic, and method {name!r} has none (has_critic is False)"]
        if self.steps == 0 and not getattr(method, "critic_is_logit", False):
            return [f"sampler={who} needs a logit critic (≈ log p_data/p_gen), and method {name!r} has a "
                    f"WGAN critic value (critic_is_logit=False): set calibrate_steps > 0 (e.g. "
                    f"sampler.calibrate_steps=500, or {{option: {who}, calibrate_steps: 500}} in "
                    "eval.samplers) to Platt-scale it into a logit"]
        return []

    def logit_fn(self, method: Any, who: str) -> LogitFn:
        """The logit to use for ``method``: the calibrated one, or the raw critic when it is a logit."""
        if not getattr(method, "has_critic", False):
            raise ValueError(f"{who} needs a critic, but the method has none (has_critic is False)")
        if self._fn is not None:
            if self._method_id != id(method):
                raise ValueError(f"{who} was calibrated for a different method; call fit(method, real) again")
            return self._fn
        if self.steps > 0:
            raise RuntimeError(f"{who} has calibrate_steps={self.steps}: "
                               "call fit(method, real) before sample")
        if not method.critic_is_logit:
            raise ValueError(
                f"{who} needs a logit critic (≈ log p_data/p_gen), but this method's critic is a WGAN critic "
                "value (critic_is_logit=False). Set calibrate_steps > 0 and call fit(method, real) to "
                "Platt-scale it into a logit first."
            )
        return method.critic


class CalibratedSampler(Sampler):
    """Base of the samplers that read a logit critic, calibrated on real data first when
    ``calibrate_steps > 0``; holds the ``CriticCalibration`` and the real-data plumbing (DRS, MH)."""

    def __init__(self, calibrate_steps: int, calibrate_lr: float, calibration: str, batch_size: int) -> None:
        super().__init__()
        self.calibration = CriticCalibration(calibrate_steps, calibrate_lr, calibration, min(batch_size, 256))

    @property
    def needs_real_data(self) -> bool:
        return self.calibration.steps > 0

    def requirement_problems(self, method: Any) -> list[str]:
        return self.calibration.requirement_problems(method, self.name)

    def fit(self, method: Any, real: RealData) -> None:
        if self.calibration.steps > 0:
            self.calibration.fit(method, real)

    def calibrate(self, method: Any, real: RealData, steps: int | None = None,
                  generator: torch.Generator | None = None) -> LogitFn:
        """Calibrate the critic on real data (see ``calibrate_critic``); later ``sample`` calls use it."""
        return self.calibration.fit(method, real, steps, generator)
