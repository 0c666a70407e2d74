"""Batched, log-stabilised Sinkhorn for entropic optimal transport.

Cuturi, "Sinkhorn Distances: Lightspeed Computation of Optimal Transport" (NeurIPS 2013), made robust
as OT-GAN needs it (Salimans et al., ICLR 2018; METHODS.md §6). For a cost ``C`` (n, m) and positive
marginals ``a`` (n,), ``b`` (m,) it solves

    min_P <P, C> + eps * KL(P | a b^T)   s.t.   P 1 = a,  P^T 1 = b

by alternating the dual updates (one iteration = column update, then row update, POT's order)

    g_j = -eps * LSE_i[(f_i - C_ij) / eps + log a_i]
    f_i = -eps * LSE_j[(g_j - C_ij) / eps + log b_j]
    P_ij = exp((f_i + g_j - C_ij) / eps + log a_i + log b_j).

The plain kernel exp(-C/eps) underflows to exactly 0 for cosine costs in [0, 2] at eps = 0.002, so the
plain scaling algorithm cannot be used. Two robust solvers compute the same iterates:

* ``method="log"``: every half-step is a log-sum-exp over the whole (n, m) matrix (Peyré & Cuturi,
  "Computational Optimal Transport", 2019, §4.4): two exp passes per iteration.
* ``method="stabilized"`` (the default, ``"auto"``): the log-stabilised scaling algorithm (Schmitzer,
  "Stabilized sparse scaling algorithms for entropy regularized transport problems", SIAM J. Sci.
  Comput. 2019, Alg. 2; POT's ``sinkhorn_stabilized``). Dual potentials (F, G) stay in the log domain and
  the iterations between two *absorptions* are plain scalings s, t against the stabilised kernel
  K_ij = exp((F_i + G_j - C_ij) / eps): two mat-vecs per iteration, no exp. The true potentials are
  F + eps log s and G + eps log t. Absorbing log s, log t into F, G (and recomputing K: one exp pass)
  keeps the scalings in a range where nothing under- or overflows however small eps is; a bound on how
  fast the scalings can grow decides when, so accelerators need no host sync for it. Iteration 1 is done
  exactly in the log domain wherever the plain kernel could lose a row, so no row or column of K is empty.

Any number of leading batch dimensions is allowed: ``cost`` (..., n, m), ``a`` (n,) or (..., n), ``b``
(m,) or (..., m).

``sinkhorn`` is not differentiable by design: OT-GAN treats the plan as a constant (envelope theorem), so
the iterations run under ``no_grad`` and ``entropic_ot_loss`` puts the gradient on the cost alone.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

# The solver works in base 2 (log2 and exp2) because torch's CPU exp2 is several times faster than exp
# at the same accuracy (1 ulp). Exponents whose result would be subnormal slow exp2/exp down further;
# terms more than 100 bits below the largest change a log-sum-exp by < m * 2^-100 (relative 1e-25 for
# m = 1e5), far below float64 resolution, so shifted exponents are clamped to this floor first. (The
# returned plan reuses the last half-step's powers: entries under 2^-100 of their row's largest are
# reported at that floor instead of their smaller true value.)
_LOG2_FLOOR = -100.0

# Stabilised solver. Exponents are base 2: K_ij = 2^(F_i + G_j - C_ij / (eps ln 2)), F and G in bits, and
# the plan is P = diag(s) K diag(t).
# * K's exponents are clamped at _STAB_FLOOR, where 2^floor is still a normal number, so no mat-vec meets
#   a subnormal; an entry below the floor is reported as 2^floor * s_i * t_j instead of its smaller value.
# * The scalings are kept within [2^-limit, 2^limit] (limit = _STAB_LIMIT). That bounds the floor's effect
#   on any plan entry by 2^(floor + 2 limit): 2^-488 (float64) or 2^-62 (float32), far below either
#   precision. Right after an absorption K is the plan (rows sum to a_i, so a row holds an entry >= a_i / m),
#   so row and column products of K with scalings in that range cannot underflow either.
# * One iteration moves a log2-scaling by at most `beta` bits (see _growth_bits), so the range is enforced
#   without reading it every iteration.
# * On CPU, iteration 1 first tries plain scaling against K = 2^(kappa C + G0), G0 = -min_i kappa C_ij
#   (one exp pass, column maxima 1, so the column update is exact). Its row update is exact to 2^-valid
#   unless a row's entries all lie within 2^valid of the floor (a row that would underflow in the plain
#   kernel): then that half-step is redone in the log domain.
_STAB_FLOOR = {torch.float64: -1000.0, torch.float32: -126.0}
_STAB_LIMIT = {torch.float64: 256.0, torch.float32: 32.0}
_STAB_VALID = {torch.float64: 64.0, torch.float32: 32.0}


class SinkhornResult(NamedTuple):
    """Output of :func:`sinkhorn`; tensors carry the input's batch shape ``...``."""

    plan: Tensor  # (..., n, m) transport plan P
    cost: Tensor  # (...,) <P, C>, the "sharp" Sinkhorn value used by OT-GAN
    f: Tensor  # (..., n) row dual potential, in cost units
    g: Tensor  # (..., m) column dual potential, in cost units
    n_iters: int  # iterations run
    err: Tensor  # (...,) max-norm marginal violation max(|P 1 - a|, |P^T 1 - b|)


def _log2_marginal(weights: Tensor | None, batch_shape: list[int], size: int, like: Tensor) -> Tensor:
    """log2 of a marginal broadcast to (B, size), B = prod(batch_shape); None means uniform."""
    batch = like.shape[0]
    if weights is None:
        return torch.full((batch, size), -math.log2(size), dtype=like.dtype, device=like.device)
    weights = weights.detach().to(device=like.device, dtype=like.dtype)
    return torch.broadcast_to(weights, (*batch_shape, size)).reshape(batch, size).log2()


def _exp2_shifted(
    log2_kernel: Tensor, shift: Tensor, dim: int, out: Tensor, floor: float = _LOG2_FLOOR, alpha: float = 1.0
) -> tuple[Tensor, Tensor]:
    """out <- 2^(alpha * log2_kernel + shift - top), top = max along ``dim``, exponents clamped at ``floor``.

    Returns (top, sum of out along dim). The base-2 log-sum-exp along ``dim`` is ``top + log2(sum)``; the
    powers stay in ``out`` for reuse. One preallocated buffer and in-place ops: torch.logsumexp would
    allocate per call, use the slower exp and hit its subnormal path at small eps.
    """
    if alpha == 1.0:
        torch.add(log2_kernel, shift, out=out)
    else:
        torch.add(shift, log2_kernel, alpha=alpha, out=out)
    top = out.amax(dim, keepdim=True)
    out.sub_(top).clamp_min_(floor).exp2_()
    return top.squeeze(dim), out.sum(dim)


def _solve_log(cost: Tensor, log2_a: Tensor, log2_b: Tensor, eps: float, n_iters: int, tol, check_every: int):
    """Log-domain Sinkhorn. Returns (plan, u, v, iterations) with u, v the log2 scalings (see below)."""
    # Work with u = (f/eps + log a) / ln 2 and v = (g/eps + log b) / ln 2, so that
    # log2 P = -C/(eps ln 2) + u_i + v_j and each half-step is one base-2 log-sum-exp over the
    # log2-kernel, which is computed once.
    log2_kernel = cost * (-1.0 / (eps * math.log(2.0)))  # (B, n, m)
    buf = torch.empty_like(log2_kernel)  # reused by every half-step: no allocation inside the loop
    u = torch.zeros_like(log2_a)
    v = torch.zeros_like(log2_b)

    done = 0
    while done < n_iters:
        # Column update: v_j = log2 b_j - LSE2_i(log2_kernel_ij + u_i).
        top, total = _exp2_shifted(log2_kernel, u.unsqueeze(-1), -2, out=buf)
        v = log2_b - top - total.log2()
        # Row update: u_i = log2 a_i - LSE2_j(log2_kernel_ij + v_j). Afterwards buf_ij =
        # 2^(log2_kernel_ij + v_j - top_i), so the plan is buf scaled by 2^(u + top) = a / total per row.
        top, total = _exp2_shifted(log2_kernel, v.unsqueeze(-2), -1, out=buf)
        u = log2_a - top - total.log2()
        done += 1
        if tol is not None and done % check_every == 0 and done < n_iters:
            row_scale = torch.exp2(u + top)
            col_mass = torch.bmm(row_scale.unsqueeze(-2), buf).squeeze(-2)  # (B, m) = P^T 1
            if bool(((col_mass - log2_b.exp2()).abs().amax(-1) < tol).all()):  # the only host sync
                break

    plan = buf.mul_(torch.exp2(u + top).unsqueeze(-1))  # (B, n, m), reuses the last buffer
    return plan, u, v, done


def _growth_bits(a: Tensor, b: Tensor, uniform: bool) -> float:
    """Upper bound, in bits, on how far one iteration moves any log2-scaling (one host read unless uniform).

    After a row update (rows sum to a) a column of the plan holds at least min(a) * b_j of mass (the row
    update scaled every row of the column-updated plan, whose rows hold at most the total mass M, by at
    least a_i / M) and at most M, so the next column update's factor b_j / mass_j lies in
    [b_j / M, M / min(a)]; symmetrically for rows. Hence beta = log2(M / min(min a, min b)), for uniform
    marginals log2(max(n, m)).
    """
    if uniform:
        return math.log2(max(a.shape[-1], b.shape[-1]))
    ratio = a.sum(-1) / torch.minimum(a.amin(-1), b.amin(-1))
    return math.log2(max(float(ratio.amax()), 2.0))


class _StabilizedKernel:
    """K = 2^(kappa C + F + G) (B, n, m) in one buffer, with its log-domain potentials F (B, n), G (B, m)."""

    def __init__(self, cost: Tensor, eps: float):
        self.cost = cost
        self.kappa = -1.0 / (eps * math.log(2.0))  # log2 of the plain kernel = kappa * C
        self.floor = _STAB_FLOOR[cost.dtype]
        self.k = torch.empty(cost.shape, dtype=cost.dtype, device=cost.device)  # the one (B, n, m) buffer
        self.f = self.g = None

    def exact_first_iteration(self, log2_a: Tensor, log2_b: Tensor) -> None:
        """Iteration 1 in the log domain (as _solve_log from u = 0); afterwards K is the plan.

        Its rows sum to a and a column holds at least min(a) * b_j (see _growth_bits), so no row or column
        of K is empty however small eps is.
        """
        zero = torch.zeros_like(log2_a).unsqueeze(-1)
        top, total = _exp2_shifted(self.cost, zero, -2, self.k, alpha=self.kappa)
        self.exact_row_update(log2_a, log2_b - top - total.log2())

    def exact_row_update(self, log2_a: Tensor, g: Tensor) -> None:
        """Log-domain row update after the column potential ``g``: F, G = (u, g) and K = the plan."""
        top, total = _exp2_shifted(self.cost, g.unsqueeze(-2), -1, self.k, self.floor, self.kappa)
        self.f, self.g = log2_a - top - total.log2(), g
        self.k.mul_(torch.exp2(self.f + top).unsqueeze(-1)).clamp_min_(2.0**self.floor)

    def column_scaled(self) -> None:
        """K = 2^(kappa C + G0) with G0 = -max_i kappa C_ij (each column's largest entry 1), F = 0."""
        self.f = torch.zeros_like(self.cost[..., 0])
        self.g = self.cost.amin(-2) * -self.kappa
        torch.add(self.g.unsqueeze(-2), self.cost, alpha=self.kappa, out=self.k)
        self.k.clamp_min_(self.floor).exp2_()

    def absorb(self, s: Tensor, t: Tensor) -> None:
        """F += log2 s, G += log2 t and K recomputed (one exp pass): afterwards K is the plan."""
        self.f, self.g = self.f + s.log2(), self.g + t.log2()
        torch.add(self.f.unsqueeze(-1), self.cost, alpha=self.kappa, out=self.k)
        self.k.add_(self.g.unsqueeze(-2)).clamp_min_(self.floor).exp2_()


def _solve_stabilized(
    cost: Tensor,
    log2_a: Tensor,
    log2_b: Tensor,
    eps: float,
    n_iters: int,
    tol,
    check_every: int,
    absorb_every: int | None,
    uniform: bool,
):
    """Log-stabilised scaling Sinkhorn. Returns (plan, u, v, iterations) like :func:`_solve_log`."""
    kernel = _StabilizedKernel(cost, eps)
    a, b = log2_a.exp2(), log2_b.exp2()
    # schedule: (beta, limit) keeps the scalings within 2^+-limit; (None, k) absorbs every k iterations
    if absorb_every is None:
        schedule = (_growth_bits(a, b, uniform), _STAB_LIMIT[cost.dtype])
    else:
        schedule = (None, absorb_every)
    iterate = _iterate_cpu if cost.device.type == "cpu" else _iterate_device
    s, t, done = iterate(kernel, log2_a, log2_b, a, b, n_iters, tol, check_every, schedule)
    plan = kernel.k.mul_(s.unsqueeze(-1)).mul_(t.unsqueeze(-2))  # (B, n, m), reuses the kernel buffer
    return plan, kernel.f + s.log2(), kernel.g + t.log2(), done


def _iterate_cpu(kernel: _StabilizedKernel, log2_a, log2_b, a, b, n_iters, tol, check_every, schedule):
    """Iterations 1..n_iters on CPU; returns the scalings (s, t) and the iterations run.

    Reading a CPU tensor costs no synchronisation, so the automatic schedule reads the scalings' range
    only when ``beta`` bits per iteration could have taken it past ``limit`` and absorbs only if one
    more iteration could. The mat-vecs run on numpy views of the tensors (``absorb`` rewrites the kernel
    in place): numpy's BLAS mat-vec beat torch's by 1.5x on an AMD EPYC (MKL is not tuned for it), and
    torch.bmm with a vector operand was 5-20x slower for batched problems.
    """
    beta, limit = schedule
    dtype = kernel.cost.dtype
    k_np, a_np, b_np = kernel.k.numpy(), a.numpy(), b.numpy()
    n = a_np.shape[-1]
    scalings = np.empty((a_np.shape[0], n + b_np.shape[-1]), dtype=a_np.dtype)
    s, t = scalings[:, :n], scalings[:, n:]  # one buffer: their range is read with two reductions

    # Iteration 1 by plain scaling against the column-scaled kernel, F = 0 (one exp pass), redone in the
    # log domain if a row's mass could be distorted by the floor (rows far from every column's minimum).
    kernel.column_scaled()
    kts = k_np.sum(-2)  # (B, m) column sums >= 1
    np.divide(b_np, kts, out=t)
    kt = np.matmul(k_np, t[:, :, None])[:, :, 0]
    with np.errstate(divide="ignore", over="ignore"):  # such a row is redone just below
        np.divide(a_np, kt, out=s)
    if not (kt >= 2.0 ** (kernel.floor + _STAB_VALID[dtype]) * t.sum(-1, keepdims=True)).all():
        kernel.exact_row_update(log2_a, kernel.g + torch.from_numpy(t).log2())
        scalings.fill(1.0)

    def steps(bits: float) -> int:  # iterations until the range must be looked at again
        return limit if beta is None else max(1, int((limit - bits) / beta))

    # Operand views for the mat-vecs, made once (s, t, kts, kt are only ever updated in place); one problem
    # goes through plain 2-D BLAS mat-vecs.
    if k_np.shape[0] == 1:
        col_args, row_args = (s[0], k_np[0], kts[0]), (k_np[0], t[0], kt[0])
    else:
        col_args, row_args = (s[:, None, :], k_np, kts[:, None, :]), (k_np, t[:, :, None], kt[:, :, None])
    largest, smallest = np.maximum.reduce, np.minimum.reduce
    done, next_absorb = 1, 1  # look at the range right away
    while True:
        if done == next_absorb and done < n_iters:
            bits = 0.0
            if beta is not None:
                bits = math.log2(max(largest(scalings, None), 1.0 / smallest(scalings, None)))
            if beta is None or bits + beta > limit:
                kernel.absorb(torch.from_numpy(s), torch.from_numpy(t))
                scalings.fill(1.0)
                bits = 0.0
            next_absorb = done + steps(bits)
        if done >= n_iters:
            break
        np.matmul(col_args[0], col_args[1], out=col_args[2])  # kts = K^T s, (B, m); P^T 1 = t * kts
        if tol is not None and done % check_every == 0:
            if (np.abs(t * kts - b_np).max(-1) < tol).all():
                break
        np.divide(b_np, kts, out=t)  # column update
        np.matmul(row_args[0], row_args[1], out=row_args[2])  # kt = K t, (B, n)
        np.divide(a_np, kt, out=s)  # row update
        done += 1
    return torch.from_numpy(s), torch.from_numpy(t), done


def _iterate_device(kernel: _StabilizedKernel, log2_a, log2_b, a, b, n_iters, tol, check_every, schedule):
    """As :func:`_iterate_cpu` with torch ops and no host sync unless ``tol``: iteration 1 is always
    exact in the log domain, and the automatic schedule absorbs unconditionally every floor(limit / beta)
    iterations, which keeps the scalings in range without reading them."""
    beta, limit = schedule
    every = limit if beta is None else max(1, int(limit / beta))
    kernel.exact_first_iteration(log2_a, log2_b)
    s, t = torch.ones_like(a), torch.ones_like(b)
    done = 1
    while done < n_iters:
        kts = torch.bmm(s.unsqueeze(-2), kernel.k).squeeze(-2)  # (B, m); P^T 1 = t * kts
        if tol is not None and done % check_every == 0:
            if bool(((t * kts - b).abs().amax(-1) < tol).all()):  # the only host sync
                break
        t = b / kts  # column update
        s = a / torch.bmm(kernel.k, t.unsqueeze(-1)).squeeze(-1)  # row update
        done += 1
        if (done - 1) % every == 0 and done < n_iters:
            kernel.absorb(s, t)
            s, t = torch.ones_like(s), torch.ones_like(t)
    return s, t, done


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
    if method not in ("auto", "stabilized", "log"):
        raise ValueError(f"method must be 'auto', 'stabilized' or 'log', got {method!r}")
    if cost.dim() < 2:
        raise ValueError(f"cost must have shape (..., n, m), got {tuple(cost.shape)}")

    *batch_shape, n, m = cost.shape
    dtype = torch.float64 if cost.dtype == torch.float64 else torch.float32
    with torch.no_grad(), torch.autocast(device_type=cost.device.type, enabled=False):
        cost_flat = cost.detach().to(dtype).reshape(-1, n, m)
        log2_a = _log2_marginal(a, batch_shape, n, cost_flat)  # (B, n)
        log2_b = _log2_marginal(b, batch_shape, m, cost_flat)  # (B, m)

        if method == "log" or cost_flat.numel() == 0:
            plan, u, v, done = _solve_log(cost_flat, log2_a, log2_b, eps, n_iters, tol, check_every)
        else:
            plan, u, v, done = _solve_stabilized(
                cost_flat,
                log2_a,
                log2_b,
                eps,
                n_iters,
                tol,
                check_every,
                absorb_every,
                uniform=a is None and b is None,
            )
        err = torch.maximum(
            (plan.sum(-1) - log2_a.exp2()).abs().amax(-1), (plan.sum(-2) - log2_b.exp2()).abs().amax(-1)
        )
        # <P, C> as row dot products summed by torch (pairwise: a float32 BLAS dot over all n m terms was
        # 1e-5 off at 2000 x 2000); on CPU through numpy's einsum, which needs no (n, m) temporary.
        if plan.device.type == "cpu":
            value = torch.from_numpy(np.einsum("bij,bij->bi", plan.numpy(), cost_flat.numpy())).sum(-1)
        else:
            value = torch.linalg.vecdot(plan, cost_flat).sum(-1)
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


def entropic_ot_loss(cost: Tensor, eps: float, **sinkhorn_kwargs) -> Tensor:
    """Sharp Sinkhorn value <P, C> (...,) with the plan held constant: gradients flow through ``cost`` only.

    By the envelope theorem this is OT-GAN's gradient estimate (the paper does not backpropagate through
    Sinkhorn). Returned in the solver's precision (float32, or float64 for float64 costs).
    """
    plan = sinkhorn(cost, eps=eps, **sinkhorn_kwargs).plan
    with torch.autocast(device_type=cost.device.type, enabled=False):
        return (plan * cost.to(plan.dtype)).sum((-2, -1))
