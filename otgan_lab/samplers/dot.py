"""Discriminator Optimal Transport (Tanaka, NeurIPS 2019; official Chainer code AkinoriTanaka-phys/DOT).

Each sample y = G(z) is moved to T(y) ∈ argmin_x ‖x − y + δ‖₂ − D(x)/K_eff (plain, not squared, norm: the W1
cost; δ = 1e-3 added to every coordinate keeps the norm differentiable at x = y), by a few optimiser steps
from x = y. K_eff = max over random pairs of |D(a) − D(b)|/‖a − b‖. In latent space the same objective is
minimised over z with D(G(z)) and latent distances. See METHODS.md §11.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from otgan_lab.metrics.spec import MetricSpec, frozen_specs
from otgan_lab.samplers.base import Sampler, draw_latents, flat_norm

ScoreFn = Callable[[Tensor], Tensor]


def estimate_k_eff(
    score_fn: ScoreFn,
    points: Tensor,
    n_pairs: int = 100,
    n_repeats: int = 1,
    generator: torch.Generator | None = None,
) -> float:
    """Mean over ``n_repeats`` of max over ``n_pairs`` random pairs (a ≠ b) of |D(a) − D(b)| / ‖a − b‖₂.

    ``points``: (N, ...) with N ≥ 2; distances are over all non-batch dimensions. Every point is scored once.
    This lower-bounds the Lipschitz constant of ``score_fn`` on the points' support.
    """
    n = len(points)
    if n < 2:
        raise ValueError("estimate_k_eff needs at least 2 points")
    with torch.no_grad():
        scores = score_fn(points).reshape(n).to(torch.float64)
    flat = points.detach().flatten(1).to(torch.float64)
    idx_device = generator.device if generator is not None else torch.device("cpu")
    maxima = []
    for _ in range(n_repeats):
        i = torch.randint(n, (n_pairs,), generator=generator, device=idx_device)
        j = (i + torch.randint(1, n, (n_pairs,), generator=generator, device=idx_device)) % n  # j != i
        i, j = i.to(points.device), j.to(points.device)
        dist = (flat[i] - flat[j]).norm(dim=1)
        gap = (scores[i] - scores[j]).abs()
        ratio = torch.where(dist > 0, gap / dist.clamp_min(1e-300), torch.zeros_like(gap))  # duplicates: 0
        maxima.append(float(ratio.max()))
    return sum(maxima) / len(maxima)


def transport_objective(x: Tensor, y: Tensor, score: Tensor, k_eff: float, delta: float = 1e-3) -> Tensor:
    """Per-sample H_y(x) = ‖x − y + δ‖₂ − D(x)/K, shape (n,); ``score`` is D(x) with shape (n,)."""
    return flat_norm(x - y + delta) - score.reshape(len(x)) / k_eff


def _optimizer(kind: str, param: Tensor, lr: float) -> torch.optim.Optimizer:
    if kind == "adam":
        return torch.optim.Adam([param], lr=lr, betas=(0.0, 0.9))  # the official DOT settings
    if kind == "sgd":
        return torch.optim.SGD([param], lr=lr)
    raise ValueError(f"unknown optimizer {kind!r}; expected 'adam' or 'sgd'")


def _check_k(k_eff: float) -> None:
    if not (math.isfinite(k_eff) and k_eff > 0):
        raise ValueError(f"K_eff must be finite and > 0, got {k_eff} "
                         "(is the critic constant on the samples?)")


def dot_target(
    y: Tensor,
    critic: ScoreFn,
    k_eff: float,
    steps: int = 100,
    lr: float = 0.01,
    delta: float = 1e-3,
    clip: tuple[float, float] | None = None,
    optimizer: str = "adam",
) -> Tensor:
    """Target-space DOT: minimise H_y(x) from x = y for every sample at once; returns x (detached).

    The per-sample objectives are independent, so the gradient of their sum is each sample's own gradient
    (the official code backpropagates a vector of ones). Gradients are taken w.r.t. x only, so the critic's
    parameters never receive a ``.grad``. ``clip=(lo, hi)`` clamps x after every step (the 2-D demo: ±2).
    """
    _check_k(k_eff)
    y = y.detach()
    x = y.clone().requires_grad_(True)
    opt = _optimizer(optimizer, x, lr)
    for _ in range(steps):
        with torch.enable_grad():  # callers may sample under no_grad; DOT needs ∂H/∂x
            h = transport_objective(x, y, critic(x), k_eff, delta)
            (x.grad,) = torch.autograd.grad(h.sum(), x)
        opt.step()
        if clip is not None:
            with torch.no_grad():
                x.clamp_(clip[0], clip[1])
    return x.detach()


def dot_latent(
    z_y: Tensor,
    score_of_z: ScoreFn,
    k_eff: float,
    steps: int = 10,
    lr: float = 0.01,
    prior_kind: str = "normal",
    delta: float = 1e-3,
    optimizer: str = "sgd",
    radial: str = "official",
) -> Tensor:
    """Latent-space DOT: minimise ‖z − z_y + δ‖₂ − D(G(z))/k over z from z = z_y; returns z (detached).

    Prior handling, as in the official code:
    - "uniform": clamp z to [−1, 1] after every step (the prior's support).
    - "normal": before every step, correct the gradient's radial part (``radial``):
      "official": grad ← grad − z (z·grad)/√d, d = latent size (the official code hard-codes √128 = 11.31).
      It is a heuristic, not a projection: the radial component is scaled by 1 − ‖z‖²/√d ≈ 1 − √d
      (≈ −10.3 for d = 128, i.e. reversed and amplified), since ‖z‖² ≈ d on the typical shell.
      "project": grad ← grad − z (z·grad)/‖z‖², the exact tangent projection (no radial motion to first
      order). "none": no correction.
    """
    _check_k(k_eff)
    if prior_kind not in ("normal", "uniform"):
        raise ValueError(f"unknown prior_kind {prior_kind!r}")
    if radial not in ("official", "project", "none"):
        raise ValueError(f"radial must be 'official', 'project' or 'none', got {radial!r}")
    z_y = z_y.detach()
    z = z_y.clone().requires_grad_(True)
    dim = z[0].numel()
    opt = _optimizer(optimizer, z, lr)
    for _ in range(steps):
        with torch.enable_grad():  # callers may sample under no_grad; DOT needs ∂H/∂z
            h = transport_objective(z, z_y, score_of_z(z), k_eff, delta)
            (grad,) = torch.autograd.grad(h.sum(), z)
        if prior_kind == "normal" and radial != "none":
            zf, gf = z.detach().flatten(1), grad.flatten(1)  # (n, d)
            scale = (math.sqrt(dim) if radial == "official"
                     else (zf * zf).sum(1, keepdim=True).clamp_min(1e-12))
            grad = (gf - zf * (zf * gf).sum(1, keepdim=True) / scale).view_as(grad)
        z.grad = grad
        opt.step()
        if prior_kind == "uniform":
            with torch.no_grad():
                z.clamp_(-1.0, 1.0)
    return z.detach()


class DOTSampler(Sampler):
    """DOT post-processing of generator draws, in the latent space (default) or the data (target) space.

    Defaults follow the official code: latent = SGD, 10 steps; target = Adam(β = (0, 0.9)), 100 steps.
    ``k_eff=None`` estimates K from ``2·k_pairs·k_repeats`` fresh draws (K in latent units for the latent
    space, data units for the target space); a number fixes it (the official ``--k 1``).
    Works with a logit or a WGAN critic (the critic's scale cancels in D/K_eff).
    """

    name = "dot"
    stat_specs = frozen_specs({
        "k_eff": MetricSpec("K_eff", None),
        "mean_critic_gain": MetricSpec("mean critic gain", None),
        "mean_critic_before": MetricSpec("mean critic before", None),
        "mean_critic_after": MetricSpec("mean critic after", None),
        "mean_move": MetricSpec("mean move", None),
    })

    def __init__(
        self,
        space: str = "latent",
        steps: int | None = None,
        lr: float = 0.01,
        k_pairs: int = 100,
        k_repeats: int = 1,
        k_eff: float | None = None,
        delta: float = 1e-3,
        optimizer: str | None = None,
        clip: tuple[float, float] | None = None,
        batch_size: int = 500,
        radial: str = "official",
    ) -> None:
        super().__init__()
        if space not in ("latent", "target"):
            raise ValueError(f"space must be 'latent' or 'target', got {space!r}")
        self.space = space
        self.steps = steps if steps is not None else (10 if space == "latent" else 100)
        self.optimizer = optimizer or ("sgd" if space == "latent" else "adam")
        self.lr, self.k_pairs, self.k_repeats, self.k_eff = lr, k_pairs, k_repeats, k_eff
        self.delta, self.batch_size = delta, batch_size
        self.clip = tuple(clip) if clip is not None else None
        self.radial = radial  # normal-prior gradient correction in latent space, see dot_latent

    def _estimate_k(self, method: Any, generator: torch.Generator | None) -> float:
        if self.k_eff is not None:
            return float(self.k_eff)
        z = draw_latents(method, 2 * self.k_pairs * self.k_repeats, generator)
        if self.space == "latent":
            return estimate_k_eff(lambda zz: method.critic(method.generate(zz)), z, self.k_pairs,
                                  self.k_repeats, generator)
        with torch.no_grad():
            x = method.generate(z)
        return estimate_k_eff(method.critic, x, self.k_pairs, self.k_repeats, generator)

    def requirement_problems(self, method: Any) -> list[str]:
        if getattr(method, "has_critic", False):
            return []
        return [f"sampler={self.name} (DOT) needs a critic, and method {getattr(method, 'name', '?')!r} has "
                "none (has_critic is False)"]

    def _sample(self, method: Any, n: int, generator: torch.Generator | None) -> Tensor:
        if not getattr(method, "has_critic", False):
            raise ValueError("DOT needs a critic, but the method has none (has_critic is False)")
        if n == 0:
            with torch.no_grad():
                return method.generate(draw_latents(method, 1, generator))[:0]
        k = self._estimate_k(method, generator)
        outs, before, after, moved = [], [], [], []
        for start in range(0, n, self.batch_size):
            z = draw_latents(method, min(self.batch_size, n - start), generator)
            with torch.no_grad():
                y = method.generate(z)
            if self.space == "latent":
                z_t = dot_latent(z, lambda zz: method.critic(method.generate(zz)), k, self.steps, self.lr,
                                 method.prior_kind, self.delta, self.optimizer, self.radial)
                with torch.no_grad():
                    x = method.generate(z_t)
            else:
                x = dot_target(y, method.critic, k, self.steps, self.lr, self.delta, self.clip,
                               self.optimizer)
            with torch.no_grad():
                before.append(method.critic(y).reshape(-1).double())
                after.append(method.critic(x).reshape(-1).double())
                moved.append(flat_norm(x - y).double())
            outs.append(x)
        d_before, d_after = torch.cat(before), torch.cat(after)
        self.stats = {
            "k_eff": k,
            "mean_critic_gain": float((d_after - d_before).mean()),
            "mean_critic_before": float(d_before.mean()),
            "mean_critic_after": float(d_after.mean()),
            "mean_move": float(torch.cat(moved).mean()),  # data-space distance ‖T(y) − y‖, per sample
        }
        return torch.cat(outs)

    def __repr__(self) -> str:
        return (f"DOTSampler(space={self.space!r}, steps={self.steps}, lr={self.lr}, "
                f"optimizer={self.optimizer!r}, k_pairs={self.k_pairs}, k_eff={self.k_eff})")
