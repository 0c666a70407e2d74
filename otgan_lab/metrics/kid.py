"""Kernel Inception Distance (KID): unbiased MMD² with a cubic polynomial kernel, averaged over subsets.

Bińkowski, Sutherland, Arbel, Gretton, "Demystifying MMD GANs", ICLR 2018. With k(x, y) = (x·y/d + 1)³ and
m samples X, Y from each distribution, the unbiased estimator (Gretton et al., JMLR 2012, eq. 3) is

    MMD²_u = 1/(m(m-1)) Σ_{i≠j} k(x_i, x_j) + 1/(m(m-1)) Σ_{i≠j} k(y_i, y_j) - 2/m² Σ_{i,j} k(x_i, y_j).

It is unbiased, so it averages to 0 for equal distributions and can be negative on one draw. Following
the paper, it is computed on ``n_subsets`` random subsets of ``subset_size`` samples (without replacement
within a subset) and reported as mean and standard deviation (ddof=0, as torch-fidelity) over subsets.
Works with any backbone's features (the name says Inception, the estimator does not care).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def polynomial_kernel(x: Tensor, y: Tensor, degree: int = 3, coef0: float = 1.0) -> Tensor:
    """k(x, y) = (x·y / d + coef0)^degree for all pairs: (n, d), (m, d) -> (n, m)."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(x: Tensor, y: Tensor, degree: int = 3) -> Tensor:
    """Unbiased MMD² between samples x (m, d) and y (n, d) under the polynomial kernel (scalar tensor)."""
    m, n = x.shape[0], y.shape[0]
    k_xx, k_yy, k_xy = (
        polynomial_kernel(x, x, degree),
        polynomial_kernel(y, y, degree),
        polynomial_kernel(x, y, degree),
    )
    # Off-diagonal sums: the i == j terms k(x_i, x_i) would bias the estimate upwards.
    term_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    term_yy = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return term_xx + term_yy - 2.0 * k_xy.mean()


def kid(
    features1: Tensor | np.ndarray,
    features2: Tensor | np.ndarray,
    n_subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (mean, std over subsets). ``subset_size`` is clipped to the smaller set's size.

    Computed in float64 on the features' device; subset indices come from a seeded CPU generator, so the
    result is reproducible for a given ``seed``.
    """
    x = torch.as_tensor(features1).double()
    y = torch.as_tensor(features2).to(x.device).double()
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need (N1, d) and (N2, d) features, got {tuple(x.shape)} and {tuple(y.shape)}")
    size = min(subset_size, x.shape[0], y.shape[0])
    if size < 2:
        raise ValueError("KID needs at least 2 samples per set")
    gen = torch.Generator().manual_seed(seed)
    values = torch.empty(n_subsets, dtype=torch.float64)
    for s in range(n_subsets):
        idx_x = torch.randperm(x.shape[0], generator=gen)[:size].to(x.device)
        idx_y = torch.randperm(y.shape[0], generator=gen)[:size].to(y.device)
        values[s] = mmd2_unbiased(x[idx_x], y[idx_y], degree).cpu()
    return float(values.mean()), float(values.std(unbiased=False))
