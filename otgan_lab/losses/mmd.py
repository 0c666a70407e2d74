"""Maximum mean discrepancy with the inverse multiquadric kernel (WAE-MMD, Tolstikhin et al. 2018).

k(z, z') = C / (C + ||z - z'||^2), summed over C = s * 2 d sigma^2 for the scales s of the official code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def imq_kernel(x: torch.Tensor, y: torch.Tensor, base: float,
               scales: Sequence[float] = IMQ_SCALES) -> torch.Tensor:
    """sum_s C_s / (C_s + ||x_i - y_j||^2) with C_s = s * base: (n, d), (m, d) -> (n, m)."""
    sq_dist = (x[:, None, :] - y[None, :, :]).pow(2).sum(-1)  # exact zeros on the diagonal, unlike cdist
    return sum(s * base / (s * base + sq_dist) for s in scales)


def imq_mmd(x: torch.Tensor, y: torch.Tensor, *, prior_var: float = 1.0, scales: Sequence[float] = IMQ_SCALES,
            unbiased: bool = True) -> torch.Tensor:
    """MMD^2 between samples x (n, d) and y (m, d) with the IMQ kernel, base C = 2 d prior_var.

    unbiased: U-statistics for the x-x and y-y terms (diagonals left out); else the V-statistic (biased,
    exactly 0 for identical samples).
    """
    x, y = x.float(), y.float()
    base = 2.0 * x.shape[1] * prior_var
    k_xx, k_yy = imq_kernel(x, x, base, scales), imq_kernel(y, y, base, scales)
    k_xy = imq_kernel(x, y, base, scales)
    n, m = x.shape[0], y.shape[0]
    if unbiased:
        within = ((k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
                  + (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1)))
    else:
        within = k_xx.mean() + k_yy.mean()
    return within - 2.0 * k_xy.mean()
