"""Mode-collapse metrics for 2-D Gaussian mixtures (VEEGAN / PacGAN protocol, METHODS.md §1).

A sample is high quality (HQ) when it lies within `n_sigma` (3) standard deviations of its nearest centre;
a mode is covered when at least `min_per_mode` HQ samples fall in it. Also: KL of the HQ mode histogram to
uniform, mean within-mode std of HQ samples, and the exact Wasserstein-2 distance between generated and real
samples (POT's network-simplex solver on the squared Euclidean cost).
"""

from __future__ import annotations

import math

import numpy as np
import ot
import torch

from otgan_lab.metrics.histogram import class_histogram, classes_covered, kl_to_uniform
from otgan_lab.metrics.spec import MetricSpec, declares, specs_of


def nearest_mode(points: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of the nearest centre, distance to it) for each point."""
    dist = torch.cdist(points.double(), centres.double().to(points.device))
    d_min, idx = dist.min(dim=1)
    return idx, d_min


@declares({
    "modes_covered": MetricSpec("modes covered", "max"),
    "modes_total": MetricSpec("modes in the mixture", None),
    "hq_share": MetricSpec("high-quality share", "max"),
    "mode_kl": MetricSpec("KL(mode histogram || uniform)", "min"),
    "hq_std": MetricSpec("within-mode std of HQ samples", None),  # good = close to the mixture's std
})
def mode_metrics(
    points: torch.Tensor, centres: torch.Tensor, std: float, n_sigma: float = 3.0, min_per_mode: int = 1
) -> dict[str, float]:
    n_modes = len(centres)
    idx, d_min = nearest_mode(points, centres)
    hq = d_min <= n_sigma * std
    counts = class_histogram(idx[hq], n_modes)
    n_hq = int(hq.sum())
    covered = classes_covered(counts, min_per_mode)
    if n_hq > 0:
        kl = kl_to_uniform(counts)
        offsets = points.double()[hq] - centres.double().to(points.device)[idx[hq]]
        within_std = float(offsets.pow(2).sum(1).div(2).mean().sqrt())
    else:
        kl, within_std = math.inf, math.nan
    return {
        "modes_covered": covered,
        "modes_total": n_modes,
        "hq_share": n_hq / len(points),
        "mode_kl": kl,
        "hq_std": within_std,
    }


def exact_w2(x: torch.Tensor, y: torch.Tensor, num_itermax: int = 1_000_000) -> float:
    """Exact W2 between two empirical measures with uniform weights (POT's emd on squared distances)."""
    xa, ya = x.detach().double().cpu().numpy(), y.detach().double().cpu().numpy()
    cost = ot.dist(xa, ya, metric="sqeuclidean")
    a, b = np.full(len(xa), 1 / len(xa)), np.full(len(ya), 1 / len(ya))
    return math.sqrt(max(float(ot.emd2(a, b, cost, numItermax=num_itermax)), 0.0))


@declares({**specs_of(mode_metrics), "w2": MetricSpec("W2", "min")})
def points2d_metrics(
    fake: torch.Tensor,
    real: torch.Tensor,
    centres: torch.Tensor,
    std: float,
    n_sigma: float = 3.0,
    min_per_mode: int = 1,
    w2_points: int = 2000,
) -> dict[str, float]:
    out = mode_metrics(fake, centres, std, n_sigma, min_per_mode)
    if not torch.isfinite(fake).all():
        out["w2"] = math.inf
        return out
    n = min(w2_points, len(fake), len(real))
    out["w2"] = exact_w2(fake[:n], real[:n]) if n > 0 else math.nan
    return out
