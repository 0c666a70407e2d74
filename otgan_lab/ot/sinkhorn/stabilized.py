"""Log-stabilised scaling Sinkhorn: two mat-vecs per iteration and no exp, robust however small eps is.

Schmitzer, "Stabilized sparse scaling algorithms for entropy regularized transport problems", SIAM J. Sci.
Comput. 2019, Alg. 2 (POT's ``sinkhorn_stabilized``). Between two absorptions the iterations are plain
scalings s, t against the stabilised kernel (see kernel.py); a bound on how fast the scalings can grow
decides when to absorb, so accelerators need no host sync for it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from otgan_lab.ot.sinkhorn.kernel import STAB_LIMIT, STAB_VALID, StabilizedKernel, growth_bits


def solve_stabilized(cost: Tensor, log2_a: Tensor, log2_b: Tensor, eps: float, n_iters: int,
                     tol: float | None, check_every: int, absorb_every: int | None, uniform: bool,
                     u0: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, int]:
    """Log-stabilised scaling Sinkhorn from the row log2-scaling ``u0`` (None: 0).

    Returns (plan, u, v, iterations) like :func:`~otgan_lab.ot.sinkhorn.logdomain.solve_log`.
    """
    kernel = StabilizedKernel(cost, eps)
    a, b = log2_a.exp2(), log2_b.exp2()
    # schedule: (beta, limit) keeps the scalings within 2^+-limit; (None, k) absorbs every k iterations
    if absorb_every is None:
        schedule = (growth_bits(a, b, uniform), STAB_LIMIT[cost.dtype])
    else:
        schedule = (None, absorb_every)
    iterate = iterate_cpu if cost.device.type == "cpu" else iterate_device
    s, t, done = iterate(kernel, log2_a, log2_b, a, b, n_iters, tol, check_every, schedule, u0)
    plan = kernel.k.mul_(s.unsqueeze(-1)).mul_(t.unsqueeze(-2))  # (B, n, m), reuses the kernel buffer
    return plan, kernel.f + s.log2(), kernel.g + t.log2(), done


def iterate_cpu(kernel: StabilizedKernel, log2_a, log2_b, a, b, n_iters, tol, check_every, schedule, u0):
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
    batch, n, m = k_np.shape
    scalings = np.empty((batch, n + m), dtype=a_np.dtype)
    s, t = scalings[:, :n], scalings[:, n:]  # one buffer: their range is read with two reductions
    kts, kt = np.empty((batch, m), dtype=a_np.dtype), np.empty((batch, n), dtype=a_np.dtype)

    if u0 is not None:  # a warm start: iteration 1 in the log domain
        kernel.exact_first_iteration(log2_a, log2_b, u0)
        scalings.fill(1.0)
    else:
        # Iteration 1 by plain scaling against the column-scaled kernel, F = 0 (one exp pass), redone in
        # the log domain if a row's mass could be distorted by the floor (rows far from every column's
        # minimum).
        kernel.column_scaled()
        np.sum(k_np, axis=-2, out=kts)  # (B, m) column sums >= 1
        np.divide(b_np, kts, out=t)
        np.matmul(k_np, t[:, :, None], out=kt[:, :, None])
        with np.errstate(divide="ignore", over="ignore"):  # such a row is redone just below
            np.divide(a_np, kt, out=s)
        if not (kt >= 2.0 ** (kernel.floor + STAB_VALID[dtype]) * t.sum(-1, keepdims=True)).all():
            kernel.exact_row_update(log2_a, kernel.g + torch.from_numpy(t).log2())
            scalings.fill(1.0)

    def steps(bits: float) -> int:  # iterations until the range must be looked at again
        return limit if beta is None else max(1, int((limit - bits) / beta))

    # Operand views for the mat-vecs, made once (s, t, kts, kt are only ever updated in place); one problem
    # goes through plain 2-D BLAS mat-vecs.
    if batch == 1:
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


def iterate_device(kernel: StabilizedKernel, log2_a, log2_b, a, b, n_iters, tol, check_every, schedule, u0):
    """As :func:`iterate_cpu` with torch ops and no host sync unless ``tol``: iteration 1 is always
    exact in the log domain, and the automatic schedule absorbs unconditionally every floor(limit / beta)
    iterations, which keeps the scalings in range without reading them."""
    beta, limit = schedule
    every = limit if beta is None else max(1, int(limit / beta))
    kernel.exact_first_iteration(log2_a, log2_b, u0)
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
