"""Small DCGAN-style convolutional nets for 28x28 images (Radford et al. 2016, scaled down).

Generator: z -> 128*7*7 -> up to 14x14 (64 ch) -> up to 28x28 -> tanh. Critic: two stride-2 convs with
LeakyReLU(0.2) -> linear. BatchNorm in the generator by default; in the critic only on request (never with
a per-sample gradient penalty).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _image_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ValueError(f"the conv nets take images shaped (C, H, W), not data of shape {tuple(shape)}; "
                         "for 2-D points use model=mlp2d")
    return tuple(int(s) for s in shape)


class ConvGenerator(nn.Module):
    def __init__(self, z_dim: int, out_shape: Sequence[int] = (1, 28, 28), width: int = 64,
                 batchnorm: bool = True):
        super().__init__()
        channels, height, w_ = _image_shape(out_shape)
        if height % 4 or w_ % 4:
            raise ValueError(f"ConvGenerator needs image sides divisible by 4, got {height}x{w_}")
        self.base = (2 * width, height // 4, w_ // 4)
        norm = (lambda c: nn.BatchNorm2d(c)) if batchnorm else (lambda c: nn.Identity())
        self.project = nn.Sequential(
            nn.Linear(z_dim, 2 * width * self.base[1] * self.base[2]),
            nn.BatchNorm1d(2 * width * self.base[1] * self.base[2]) if batchnorm else nn.Identity(),
            nn.ReLU(),
        )
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            norm(width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.project(z).view(z.shape[0], *self.base))


class ConvCritic(nn.Module):
    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), width: int = 64, out_dim: int = 1,
                 batchnorm: bool = False):
        super().__init__()
        channels, height, w_ = _image_shape(in_shape)
        self.out_dim = out_dim
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.BatchNorm2d(2 * width) if batchnorm else nn.Identity(),
            nn.LeakyReLU(0.2),
        )
        self.head = nn.Linear(2 * width * (height // 4) * (w_ // 4), out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x).flatten(1))
        return out.squeeze(1) if self.out_dim == 1 else out
