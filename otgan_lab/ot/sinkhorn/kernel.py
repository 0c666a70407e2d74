"""The stabilised kernel K = 2^(kappa C + F + G) of the log-stabilised Sinkhorn solver, and its safe range.

Dual potentials F (B, n), G (B, m) stay in the log domain (in bits); the solver scales K by s, t in between
*absorptions*, which fold log2 s, log2 t into F, G and recompute K (one exp pass). The constants and the
growth bound below say how far the scalings may go before an absorption, so nothing under- or overflows.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from otgan_lab.ot.sinkhorn.logdomain import exp2_, exp2_shifted

# Exponents are base 2: K_ij = 2^(F_i + G_j - C_ij / (eps ln 2)), F and G in bits, and the plan is
# P = diag(s) K diag(t).
# * K's exponents are clamped at STAB_FLOOR, where 2^floor is still a normal number, so no mat-vec meets
#   a subnormal; an entry below the floor is reported as 2^floor * s_i * t_j instead of its smaller value.
# * The scalings are kept within [2^-limit, 2^limit] (limit = STAB_LIMIT). That bounds the floor's effect
#   on any plan entry by 2^(floor + 2 limit): 2^-488 (float64) or 2^-62 (float32), far below either
#   precision. Right after an absorption K is the plan (rows sum to a_i, so a row holds an entry >= a_i / m),
#   so row and column products of K with scalings in that range cannot underflow either.
# * One iteration moves a log2-scaling by at most `beta` bits (see growth_bits), so the range is enforced
#   without reading it every iteration.
# * On CPU, iteration 1 first tries plain scaling against K = 2^(kappa C + G0), G0 = -min_i kappa C_ij
#   (one exp pass, column maxima 1, so the column update is exact). Its row update is exact to 2^-valid
#   unless a row's entries all lie within 2^valid of the floor (a row that would underflow in the plain
#   kernel): then that half-step is redone in the log domain.
STAB_FLOOR = {torch.float64: -1000.0, torch.float32: -126.0}
STAB_LIMIT = {torch.float64: 256.0, torch.float32: 32.0}
STAB_VALID = {torch.float64: 64.0, torch.float32: 32.0}


def growth_bits(a: Tensor, b: Tensor, uniform: bool) -> float:
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


class StabilizedKernel:
    """K = 2^(kappa C + F + G) (B, n, m) in one buffer, with its log-domain potentials F (B, n), G (B, m)."""

    def __init__(self, cost: Tensor, eps: float):
        self.cost = cost
        self.kappa = -1.0 / (eps * math.log(2.0))  # log2 of the plain kernel = kappa * C
        self.floor = STAB_FLOOR[cost.dtype]
        self.k = torch.empty(cost.shape, dtype=cost.dtype, device=cost.device)  # the one (B, n, m) buffer
        self.f = self.g = None

    def exact_first_iteration(self, log2_a: Tensor, log2_b: Tensor, u0: Tensor | None = None) -> None:
        """Iteration 1 in the log domain (as solve_log from the row scaling u0, None: 0); afterwards K is
        the plan.

        Its rows sum to a and a column holds at least min(a) * b_j (see growth_bits), so no row or column
        of K is empty however small eps is.
        """
        shift = torch.zeros_like(log2_a) if u0 is None else u0
        top, total = exp2_shifted(self.cost, shift.unsqueeze(-1), -2, self.k, alpha=self.kappa)
        self.exact_row_update(log2_a, log2_b - top - total.log2())

    def exact_row_update(self, log2_a: Tensor, g: Tensor) -> None:
        """Log-domain row update after the column potential ``g``: F, G = (u, g) and K = the plan."""
        top, total = exp2_shifted(self.cost, g.unsqueeze(-2), -1, self.k, self.floor, self.kappa)
        self.f, self.g = log2_a - top - total.log2(), g
        self.k.mul_(torch.exp2(self.f + top).unsqueeze(-1)).clamp_min_(2.0**self.floor)

    def column_scaled(self) -> None:
        """K = 2^(kappa C + G0) with G0 = -max_i kappa C_ij (each column's largest entry 1), F = 0."""
        self.f = torch.zeros_like(self.cost[..., 0])
        self.g = self.cost.amin(-2) * -self.kappa
        torch.add(self.g.unsqueeze(-2), self.cost, alpha=self.kappa, out=self.k)
        exp2_(self.k.clamp_min_(self.floor))

    def absorb(self, s: Tensor, t: Tensor) -> None:
        """F += log2 s, G += log2 t and K recomputed (one exp pass): afterwards K is the plan."""
        self.f, self.g = self.f + s.log2(), self.g + t.log2()
        torch.add(self.f.unsqueeze(-1), self.cost, alpha=self.kappa, out=self.k)
        exp2_(self.k.add_(self.g.unsqueeze(-2)).clamp_min_(self.floor))
