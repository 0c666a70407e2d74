"""Batched, robust Sinkhorn for entropic optimal transport (Cuturi, NeurIPS 2013), as OT-GAN needs it.

For a cost ``C`` (..., n, m) and positive marginals ``a``, ``b`` it solves

    min_P <P, C> + eps * KL(P | a b^T)   s.t.   P 1 = a,  P^T 1 = b

by alternating dual updates (column, then row: POT's order). The plain kernel exp(-C/eps) underflows for
cosine costs at OT-GAN's eps, so both solvers stay robust at any eps and compute the same iterates:
``method="stabilized"`` (default; stabilized.py) and ``method="log"`` (logdomain.py); ``eps_scaling``
anneals eps down to the target (annealing.py). ``sinkhorn`` is not differentiable by design: OT-GAN holds
the plan constant (envelope theorem), see ``entropic_ot_loss``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from otgan_lab.ot.sinkhorn.annealing import eps_schedule, solve_annealed
from otgan_lab.ot.sinkhorn.logdomain import log2_marginal, solve_log
from otgan_lab.ot.sinkhorn.stabilized import solve_stabilized

__all__ = ["SinkhornResult", "entropic_ot_loss", "sinkhorn"]


class SinkhornResult(NamedTuple):
    """Output of :func:`sinkhorn`; tensors carry the input's batch shape ``...``."""

    plan: Tensor  # (..., n, m) transport plan P
    cost: Tensor  # (...,) <P, C>, the "sharp" Sinkhorn value used by OT-GAN
    f: Tensor  # (..., n) row dual potential, in cost units
    g: Tensor  # (..., m) column dual potential, in cost units
    n_iters: int  # iterations run
    err: Tensor  # (...,) max-norm marginal violation max(|P 1 - a|, |P^T 1 - b|)


def sinkhorn(
    cost: Tensor,
    a: Tensor | None = None,
    b: Tensor | None = None,
    *,
    eps: float,
    n_iters: int = 100,
    tol: float | None = None,
    check_every: int = 10,
    method: str = "auto",
    absorb_every: int | None = None,
    eps_scaling: float | None = None,
) -> SinkhornResult:
    """Entropic OT between ``a`` and ``b`` for ``cost`` (..., n, m) by robust (log-stabilised) Sinkhorn.

    Args:
        cost: (..., n, m) cost matrices. Computed in float64 if given float64, else in float32 (half
            inputs are upcast; autocast is disabled inside).
        a, b: marginals (n,)/(..., n) and (m,)/(..., m), positive, each summing to the same mass;
            uniform when None.
        eps: entropic regularisation, in cost units (OT-GAN: ~0.002-0.05 for cosine costs).
        n_iters: maximum number of iterations (each = one column and one row update).
        tol: stop once every problem's marginal error is below ``tol``. None runs exactly ``n_iters``
            iterations without any host-device synchronisation.
        check_every: iterations between two error checks when ``tol`` is set (each check syncs).
        method: "stabilized" (log-stabilised scaling, two mat-vecs per iteration), "log" (log-sum-exp
            half-steps, two exp passes per iteration) or "auto" (= "stabilized"). Both compute the same
            iterates; they differ only in rounding.
        absorb_every: "stabilized" only. None: absorb the scalings into the potentials only as often as
            needed to keep them in a safe range, using a bound on their growth per iteration (on CPU
            their range is read when the bound could have been reached; on other devices, where that
            would sync, absorption is unconditional every floor(limit / bound) iterations; non-uniform
            ``a``/``b`` cost one host read for the bound). An int: absorb unconditionally every
            ``absorb_every`` iterations, the caller vouching that the scalings stay in range.
        eps_scaling: None solves at ``eps`` from zero potentials. A ratio in (0, 1) anneals first: up to
            30 iterations (fewer once the error is below ``tol``) at each of eps_0 * ratio^k > eps, eps_0 the
            largest range max C - min C in the batch (one host read), each stage warm-started from the last,
            then iterations at ``eps`` until ``tol``. Same solution; at OT-GAN's tolerances and eps / range
            <= 0.005 several times fewer iterations. ``n_iters`` counts all stages (at most half of it
            goes to the stages before the last). Not the default: it changes the fixed-``n_iters`` iterates,
            and each stage costs two exp passes (~18 iterations at 500 x 500 on CPU), a loss on easy problems.

    Returns:
        SinkhornResult; no tensor in it requires grad. After the last (row) update ``P 1 = a`` to
        rounding, so ``err`` measures the column marginal.
    """
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    if n_iters < 1 or check_every < 1:
        raise ValueError("n_iters and check_every must be >= 1")
    if absorb_every is not None and absorb_every < 1:
        raise ValueError("absorb_every must be None or >= 1")
    if eps_scaling is not None and not 0.0 < eps_scaling < 1.0:
        raise ValueError(f"eps_scaling must be None or in (0, 1), got {eps_scaling}")
    if method not in ("auto", "stabilized", "log"):
        raise ValueError(f"method must be 'auto', 'stabilized' or 'log', got {method!r}")
    if cost.dim() < 2:
        raise ValueError(f"cost must have shape (..., n, m), got {tuple(cost.shape)}")

    *batch_shape, n, m = cost.shape
    dtype = torch.float64 if cost.dtype == torch.float64 else torch.float32
    with torch.no_grad(), torch.autocast(device_type=cost.device.type, enabled=False):
        cost_flat = cost.detach().to(dtype).reshape(-1, n, m)
        log2_a = log2_marginal(a, batch_shape, n, cost_flat)  # (B, n)
        log2_b = log2_marginal(b, batch_shape, m, cost_flat)  # (B, m)

        if method == "log" or cost_flat.numel() == 0:

            def solve(eps_k: float, iters: int, tol_k: float | None, u0: Tensor | None, check: int):
                return solve_log(cost_flat, log2_a, log2_b, eps_k, iters, tol_k, check, u0)

        else:
            uniform = a is None and b is None

            def solve(eps_k: float, iters: int, tol_k: float | None, u0: Tensor | None, check: int):
                return solve_stabilized(
                    cost_flat, log2_a, log2_b, eps_k, iters, tol_k, check, absorb_every, uniform, u0
                )

        if eps_scaling is None or cost_flat.numel() == 0:
            plan, u, v, done = solve(eps, n_iters, tol, None, check_every)
        else:
            cost_range = float((cost_flat.amax((-2, -1)) - cost_flat.amin((-2, -1))).amax())
            schedule = eps_schedule(cost_range, eps, eps_scaling)
            stage_check = 1 if cost.device.type == "cpu" else check_every  # a check syncs off-CPU only
            plan, u, v, done = solve_annealed(solve, log2_a, schedule, n_iters, tol, check_every, stage_check)
        err = torch.maximum(
            (plan.sum(-1) - log2_a.exp2()).abs().amax(-1), (plan.sum(-2) - log2_b.exp2()).abs().amax(-1)
        )
        value = _transport_cost(plan, cost_flat)
        f = (eps * math.log(2.0)) * (u - log2_a)
        g = (eps * math.log(2.0)) * (v - log2_b)

    return SinkhornResult(
        plan=plan.reshape(*batch_shape, n, m),
        cost=value.reshape(batch_shape),
        f=f.reshape(*batch_shape, n),
        g=g.reshape(*batch_shape, m),
        n_iters=done,
        err=err.reshape(batch_shape),
    )


def _transport_cost(plan: Tensor, cost: Tensor) -> Tensor:
    """<P, C> (B,) as row dot products summed by torch (pairwise: a float32 BLAS dot over all n m terms was
    1e-5 off at 2000 x 2000); on CPU through numpy's einsum, which needs no (n, m) temporary."""
    if plan.device.type == "cpu":
        return torch.from_numpy(np.einsum("bij,bij->bi", plan.numpy(), cost.numpy())).sum(-1)
    return torch.linalg.vecdot(plan, cost).sum(-1)


def entropic_ot_loss(cost: Tensor, eps: float, **sinkhorn_kwargs) -> Tensor:
    """Sharp Sinkhorn value <P, C> (...,) with the plan held constant: gradients flow through ``cost`` only.

    By the envelope theorem this is OT-GAN's gradient estimate (the paper does not backpropagate through
    Sinkhorn). Returned in the solver's precision (float32, or float64 for float64 costs).
    """
    plan = sinkhorn(cost, eps=eps, **sinkhorn_kwargs).plan
    with torch.autocast(device_type=cost.device.type, enabled=False):
        return (plan * cost.to(plan.dtype)).sum((-2, -1))
