"""Precision/recall and density/coverage of generated samples, from k-NN balls in feature space.

- Precision and recall: Kynkäänniemi, Karras, Laine, Lehtinen, Aila, "Improved precision and recall metric
  for assessing generative models", NeurIPS 2019. Each sample's ball has the radius of its k-th nearest
  neighbour within its own set; precision = fraction of fake samples inside at least one real ball,
  recall = fraction of real samples inside at least one fake ball.
- Density and coverage: Naeem, Oh, Uh, Choi, Yoo, "Reliable fidelity and diversity metrics for generative
  models", ICML 2020. Only real balls are used: density = (1/(k M)) Σ_j #{real balls containing fake_j}
  (≈ 1 when fake ~ real, unbounded above), coverage = fraction of real balls holding at least one fake.

Balls are closed (distance <= radius), as in Kynkäänniemi et al.; Naeem et al.'s code uses strict <, which
differs only on exact ties (duplicated samples). Distances are Euclidean and computed ``chunk_size`` rows
at a time, so memory is O(chunk_size × N) rather than O(N²). Default k = 5 (Naeem et al.'s choice for
density/coverage; Kynkäänniemi et al. use k = 3 — pass k explicitly to match them).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from otgan_lab.metrics.spec import MetricSpec, declares

ArrayLike = Tensor | np.ndarray


def _as_features(features: ArrayLike, device: torch.device | None = None) -> Tensor:
    x = torch.as_tensor(features)
    if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()  # fp16 distances lose too much precision; ints have no matmul
    return x if device is None else x.to(device)


def _distances(queries: Tensor, references: Tensor) -> Tensor:
    """Euclidean distances (q, r); the matmul form is fast, clamp removes tiny negative round-off."""
    squared = (
        queries.pow(2).sum(1, keepdim=True) + references.pow(2).sum(1)[None, :] - 2.0 * queries @ references.T
    )
    return squared.clamp_(min=0.0).sqrt_()


def knn_radii(features: ArrayLike, k: int = 5, chunk_size: int = 2048) -> Tensor:
    """Distance from each sample to its k-th nearest neighbour in the same set (itself excluded), (N,)."""
    x = _as_features(features)
    if x.shape[0] <= k:
        raise ValueError(f"need more than k={k} samples, got {x.shape[0]}")
    radii = []
    for start in range(0, x.shape[0], chunk_size):
        d = _distances(x[start : start + chunk_size], x)
        # The k+1 smallest include the sample itself at distance 0, so index k is the k-th neighbour.
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def _ball_counts(queries: Tensor, centres: Tensor, radii: Tensor, chunk_size: int) -> Tensor:
    """For each query, how many balls B(centre_i, radius_i) contain it, (Q,)."""
    counts = []
    for start in range(0, queries.shape[0], chunk_size):
        inside = _distances(queries[start : start + chunk_size], centres) <= radii[None, :]
        counts.append(inside.sum(1))
    return torch.cat(counts)


def _nearest_distance(queries: Tensor, references: Tensor, chunk_size: int) -> Tensor:
    return torch.cat(
        [
            _distances(queries[start : start + chunk_size], references).min(1).values
            for start in range(0, queries.shape[0], chunk_size)
        ]
    )


@declares({
    "precision": MetricSpec("precision", "max"),
    "recall": MetricSpec("recall", "max"),
    # ≈ 1 when fake ~ real and unbounded above (fakes piled on dense real regions): no side is better
    "density": MetricSpec("density", None),
    "coverage": MetricSpec("coverage", "max"),
})
def prdc(real: ArrayLike, fake: ArrayLike, k: int = 5, chunk_size: int = 2048) -> dict[str, float]:
    """Precision, recall (Kynkäänniemi et al.), density, coverage (Naeem et al.) of ``fake`` (M, d) against
    ``real`` (N, d); the real k-NN radii are computed once and shared."""
    real_t = _as_features(real)
    fake_t = _as_features(fake, real_t.device).to(real_t.dtype)
    real_radii = knn_radii(real_t, k, chunk_size)
    fake_radii = knn_radii(fake_t, k, chunk_size)
    real_balls_per_fake = _ball_counts(fake_t, real_t, real_radii, chunk_size)
    recall = (_ball_counts(real_t, fake_t, fake_radii, chunk_size) > 0).double().mean()
    covered = _nearest_distance(real_t, fake_t, chunk_size) <= real_radii
    return {
        "precision": float((real_balls_per_fake > 0).double().mean()),
        "recall": float(recall),
        "density": float(real_balls_per_fake.double().sum() / (k * fake_t.shape[0])),
        "coverage": float(covered.double().mean()),
    }

