"""2-D Gaussian mixtures generated in code (no download): the mode-collapse benchmarks.

ring8: 8 modes on a circle of radius 2, std 0.02 (unrolled-GAN / VEEGAN ring; angles k*2pi/8, fixing the
notebook's duplicated 0 = 2pi mode). grid25: 5x5 grid with centres at {-4,-2,0,2,4}^2, std 0.05 (MD-GAN
grid). A fixed pool of points is drawn once from the seed; modes are chosen uniformly at random.
"""

from __future__ import annotations

import math

import torch

from otgan_lab.data.base import DeviceDataset


def ring_centres(n_modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    angles = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
    return torch.stack([radius * torch.cos(angles), radius * torch.sin(angles)], dim=1).float()


def grid_centres(side: int = 5, spacing: float = 2.0) -> torch.Tensor:
    ticks = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    gx, gy = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)


def GaussianMixture2D(
    name: str, centres: torch.Tensor, std: float, n_points: int, seed: int, device: str | torch.device
) -> DeviceDataset:
    """A pool of `n_points` samples, mode drawn uniformly, isotropic noise of `std`."""
    gen = torch.Generator().manual_seed(seed)
    modes = torch.randint(len(centres), (n_points,), generator=gen)
    points = centres[modes] + std * torch.randn(n_points, 2, generator=gen)
    return DeviceDataset(
        name=name,
        data=points.to(device),
        kind="points",
        labels=modes.to(device),
        meta={"centres": centres.clone(), "std": float(std), "num_classes": len(centres)},
        seed=seed,
    )


def ring8(n_points: int = 100_000, seed: int = 0, device: str = "cpu", radius: float = 2.0,
          std: float = 0.02):
    return GaussianMixture2D("ring8", ring_centres(8, radius), std, n_points, seed, device)


def grid25(n_points: int = 100_000, seed: int = 0, device: str = "cpu", spacing: float = 2.0,
           std: float = 0.05):
    return GaussianMixture2D("grid25", grid_centres(5, spacing), std, n_points, seed, device)
