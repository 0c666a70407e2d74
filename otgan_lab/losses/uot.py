"""UOTM losses: generative modelling through the semi-dual of unbalanced OT (Choi, Choi, Kang, NeurIPS 2023).

The potential v (critic) minimises  E_y Ψ2*(−v(y)) + E_x Ψ1*(v(T(x)) − c(x, T(x)))  and the generator T
(transport map) minimises  E_x [c(x, T(x)) − v(T(x))];  Ψ1*, Ψ2* are convex non-decreasing conjugates that
relax the marginals (Ψ* = identity gives balanced OT, "OTM"). Pure functions; the R1 penalty on real data
is added by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "PSI_STAR_NAMES",
    "psi_star",
    "transport_cost",
    "uot_potential_loss",
    "uot_transport_loss",
]

PsiStar = Callable[[Tensor], Tensor]

PSI_STAR_NAMES = ("softplus", "exp", "softplus_shifted", "exp_shifted", "chi", "linear")

_LOG2 = math.log(2.0)


def _guarded_exp(x: Tensor, max_arg: float) -> Tensor:
    """exp(x) for x ≤ max_arg, continued by its tangent line above max_arg.

    A hard clamp would zero the gradient exactly where the potential most needs a signal (v(T) − c large
    early in training); the tangent continuation keeps the function convex, non-decreasing and C¹, with a
    finite slope exp(max_arg). exp is only ever evaluated at the clamped argument, so nothing overflows in
    fp32 and no inf·0 appears in the backward pass.
    """
    clamped = x.clamp(max=max_arg)
    return torch.exp(clamped) * (1.0 + (x - clamped))


def _softplus(x: Tensor) -> Tensor:
    """log(1 + e^x) without F.softplus's switch to the identity above x = 20 (a 2e-9 kink that breaks
    convexity); logaddexp is exact to rounding everywhere, cannot overflow, and has slope σ(x)."""
    return torch.logaddexp(x, torch.zeros_like(x))


def psi_star(name: str, max_arg: float = 30.0) -> PsiStar:
    """Return the convex, non-decreasing conjugate Ψ* called `name` (see PSI_STAR_NAMES).

    - ``softplus``: log(1 + e^x)                      (original UOTM code)
    - ``exp``: e^x                                     (original UOTM "kl")
    - ``softplus_shifted``: 2·softplus(x) − 2 log 2    (follow-up repos; Ψ*(0) = 0, Ψ*'(0) = 1)
    - ``exp_shifted``: e^x − 1                         (follow-up "kl"; Ψ*(0) = 0, Ψ*'(0) = 1)
    - ``chi``: y = relu(x + 2) − 2; y²/4 + y            (χ² marginals; already Ψ*(0) = 0, Ψ*'(0) = 1)
    - ``linear``: x                                    (balanced OT, "OTM")

    The exp forms are continued linearly above `max_arg` (see `_guarded_exp`), so they stay finite for
    any argument. Shifting changes logged loss values, not the minimiser.
    """
    if name == "softplus":
        return _softplus
    if name == "exp":
        return lambda x: _guarded_exp(x, max_arg)
    if name == "softplus_shifted":
        return lambda x: 2.0 * _softplus(x) - 2.0 * _LOG2
    if name == "exp_shifted":
        return lambda x: _guarded_exp(x, max_arg) - 1.0
    if name == "chi":

        def chi(x: Tensor) -> Tensor:
            y = F.relu(x + 2.0) - 2.0  # below −2 the conjugate is flat at −1 (a density ratio cannot be < 0)
            return 0.25 * y * y + y

        return chi
    if name == "linear":
        return lambda x: x
    raise ValueError(f"unknown psi_star {name!r}; choose one of {PSI_STAR_NAMES}")


def _as_psi(psi: PsiStar | str) -> PsiStar:
    return psi_star(psi) if isinstance(psi, str) else psi


def transport_cost(x_src: Tensor, y: Tensor, tau: float) -> Tensor:
    """Per-sample cost c(x, y) = τ·Σ_non-batch (y − x)², shape (n,).

    No ½, as in the official image code (the 1-D toy code uses ½τ; pass tau/2 to reproduce it). x_src and
    y must have the same shape: UOTM's source noise lives in data space.
    """
    if x_src.shape != y.shape:
        raise ValueError(f"source {tuple(x_src.shape)} and target {tuple(y.shape)} shapes differ")
    n = y.shape[0]
    return tau * (y - x_src).pow(2).reshape(n, -1).sum(dim=1)


def uot_potential_loss(
    v_real: Tensor,
    v_fake: Tensor,
    cost_fake: Tensor,
    psi1: PsiStar | str,
    psi2: PsiStar | str,
) -> tuple[Tensor, Tensor]:
    """Potential (critic) loss  mean Ψ2*(−v(y)) + mean Ψ1*(v(T(x)) − c(x, T(x))).

    v_real: v(y) on data, (n,). v_fake: v(T(x)) on *detached* generator output, (m,). cost_fake:
    c(x, T(x)) from `transport_cost`, (m,), also detached. Returns (loss, max Ψ1* argument): the second,
    detached, is worth logging because a large value means the exp conjugate is near its guard.
    """
    psi1, psi2 = _as_psi(psi1), _as_psi(psi2)
    arg1 = v_fake - cost_fake
    loss = psi2(-v_real).mean() + psi1(arg1).mean()
    return loss, arg1.detach().max()


def uot_transport_loss(v_fake: Tensor, cost_fake: Tensor) -> Tensor:
    """Generator (transport map) loss  mean[c(x, T(x)) − v(T(x))], with v frozen and T not detached."""
    return (cost_fake - v_fake).mean()
