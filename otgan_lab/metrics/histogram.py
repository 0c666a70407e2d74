"""Mode counting on a histogram of assignments (classifier classes, stacked-MNIST modes, 2-D mixture modes).

A mode is covered when at least ``min_count`` samples are assigned to it. KL divergences are in nats;
0·log 0 = 0, so empty modes contribute nothing to KL(p || uniform).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _labels(labels_or_logits: Tensor) -> Tensor:
    x = torch.as_tensor(labels_or_logits)
    return x.argmax(1) if x.ndim == 2 else x.long()


def class_histogram(labels_or_logits: Tensor, n_classes: int) -> Tensor:
    """Counts per class (n_classes,) from integer labels (N,) or logits/probabilities (N, K) (argmax)."""
    return torch.bincount(_labels(labels_or_logits).cpu(), minlength=n_classes)[:n_classes]


def classes_covered(counts: Tensor, min_count: int = 1) -> int:
    """Number of classes with at least ``min_count`` samples."""
    return int((torch.as_tensor(counts) >= min_count).sum())


def kl_to_uniform(counts: Tensor) -> float:
    """KL(p || uniform) in nats for the normalised histogram p of ``counts``; 0 iff p is uniform."""
    p = torch.as_tensor(counts, dtype=torch.float64)
    p = p / p.sum()
    nonzero = p[p > 0]
    return float((nonzero * torch.log(nonzero * p.numel())).sum())
