"""DCGAN-style convolutional nets (Radford et al. 2016) for 28x28, 32x32 and 64x64 images.

Generator: z -> (2^(k-1) w) x b x b -> k stride-2 transposed convs, halving the channels each time, the last
one to C channels -> tanh. Critic: the mirror, k stride-2 convs (w, 2w, ..., 2^(k-1) w channels) with
LeakyReLU(0.2) -> linear. `stages` k defaults to the number of halvings that take the side to a base b of
at least 4 without going odd: 28 -> 14 -> 7 (k = 2, the small MNIST nets), 32 -> 4 (k = 3, the DCGAN /
WGAN-GP CIFAR-10 nets), 64 -> 4 (k = 4, DCGAN's CelebA nets). BatchNorm in the generator by default; in
the critic only on request (never with a per-sample gradient penalty).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def _image_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ValueError(f"the conv nets take images shaped (C, H, W), not data of shape {tuple(shape)}; "
                         "for 2-D points use model=mlp2d")
    return tuple(int(s) for s in shape)


def default_stages(height: int, width: int) -> int:
    """Stride-2 stages from the image down to its base: halve while both sides stay even and >= 4 after."""
    stages = 0
    while height % 2 == 0 and width % 2 == 0 and height // 2 >= 4 and width // 2 >= 4:
        height, width, stages = height // 2, width // 2, stages + 1
    return stages


def _stages(height: int, width: int, stages: int | None, who: str) -> int:
    stages = default_stages(height, width) if stages is None else int(stages)
    if stages < 1 or height % 2**stages or width % 2**stages:
        raise ValueError(f"{who} needs image sides divisible by 2^stages; got {height}x{width} with "
                         f"stages={stages}")
    return stages


class ConvGenerator(nn.Module):
    def __init__(self, z_dim: int, out_shape: Sequence[int] = (1, 28, 28), width: int = 64,
                 batchnorm: bool = True, stages: int | None = None):
        super().__init__()
        channels, height, w_ = _image_shape(out_shape)
        k = _stages(height, w_, stages, "ConvGenerator")
        self.base = (2 ** (k - 1) * width, height // 2**k, w_ // 2**k)
        norm = (lambda c: nn.BatchNorm2d(c)) if batchnorm else (lambda c: nn.Identity())
        self.project = nn.Sequential(
            nn.Linear(z_dim, math.prod(self.base)),
            nn.BatchNorm1d(math.prod(self.base)) if batchnorm else nn.Identity(),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        for i in range(k - 1):  # 2^(k-1) w -> ... -> w channels, doubling the side each time
            c_in = 2 ** (k - 1 - i) * width
            layers += [nn.ConvTranspose2d(c_in, c_in // 2, 4, stride=2, padding=1), norm(c_in // 2),
                       nn.ReLU()]
        layers += [nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1), nn.Tanh()]
        self.upsample = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.project(z).view(z.shape[0], *self.base))


class ConvCritic(nn.Module):
    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), width: int = 64, out_dim: int = 1,
                 batchnorm: bool = False, stages: int | None = None):
        super().__init__()
        channels, height, w_ = _image_shape(in_shape)
        k = _stages(height, w_, stages, "ConvCritic")
        self.out_dim = out_dim
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        for i in range(1, k):  # w -> 2w -> ... -> 2^(k-1) w channels, halving the side each time
            c_in = 2 ** (i - 1) * width
            layers += [nn.Conv2d(c_in, 2 * c_in, 4, stride=2, padding=1),
                       nn.BatchNorm2d(2 * c_in) if batchnorm else nn.Identity(), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 ** (k - 1) * width * (height // 2**k) * (w_ // 2**k), out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x).flatten(1))
        return out.squeeze(1) if self.out_dim == 1 else out
