"""Generated stand-ins for image datasets, for smoke budgets and wiring checks (`dataset.synthetic=N`).

Smooth random images: a random 4x4 colour field upsampled bilinearly to the dataset's size, plus a little
pixel noise, so that conv nets have structure to fit. Drawn from a fixed seed per split (the same pool for
every run seed), so reference statistics are cached once. Numbers measured on them mean nothing about the
real dataset: the record keeps `dataset.synthetic` in its config and `reference` in its protocol.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SPLIT_SEEDS = {"train": 1, "valid": 2, "test": 3, "all": 1}


def synthetic_images(n: int, channels: int, size: int, split: str = "train") -> np.ndarray:
    """uint8 (n, channels, size, size) smooth random images; the same for the same arguments."""
    if int(n) < 1:
        raise ValueError(f"dataset.synthetic must be a positive image count, got {n}")
    gen = torch.Generator().manual_seed(1000 + SPLIT_SEEDS.get(split, 9))
    coarse = torch.rand(int(n), channels, 4, 4, generator=gen)
    images = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    images = images + 0.05 * torch.randn(images.shape, generator=gen)
    return images.clamp_(0, 1).mul_(255).round_().to(torch.uint8).numpy()
