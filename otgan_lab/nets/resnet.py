"""ResNet generator and critic of WGAN-GP (Gulrajani et al. 2017, appendix F) and SNGAN (Miyato et al. 2018,
appendix B), for 32x32 and 64x64 images (and any side = base * 2^k, e.g. 28 = 7 * 4).

Generator: z -> linear -> (c_0, b, b) -> k up-blocks [BN, ReLU, 2x nearest upsample, conv3x3, BN, ReLU,
conv3x3; shortcut: upsample, conv1x1] -> BN, ReLU, conv3x3 to C -> tanh. The base side b comes from halving
the image side while it stays even and >= 4 (32 -> 4 with k = 3; 64 -> 4 with k = 4).
Critic: an optimized first block [conv3x3, ReLU, conv3x3, 2x2 mean pool; shortcut: pool, conv1x1], more
down-blocks [ReLU, conv3x3, ReLU, conv3x3, mean pool; shortcut: conv1x1, pool], `extra_blocks` blocks at
the last resolution, ReLU, global mean pool, linear. Spectral normalisation of every critic weight
(`spectral_norm=true`, SNGAN) through torch's parametrization; no normalisation layer otherwise, so the
WGAN-GP per-sample gradient penalty holds.

Channels: `channels=constant` keeps `width` everywhere (the CIFAR-10 nets: 128 in WGAN-GP, G 256 / D 128 in
SNGAN); `channels=halving` starts the generator at 8w and halves per block down to w (8w, 8w, 4w, 2w, w at
64x64: WGAN-GP's 64x64 ResNet), and the critic mirrors it (w, 2w, 4w, 8w, 8w).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from otgan_lab.nets.dcgan import _image_shape, default_stages

CHANNELS = ("constant", "halving")


def _generator_channels(width: int, blocks: int, channels: str) -> list[int]:
    """[c_0 (base), c_1 ... c_blocks] (each up-block's output)."""
    if channels == "constant":
        return [width] * (blocks + 1)
    top = width * min(8, 2 ** (blocks - 1))
    return [top] + [max(width, top // 2**i) for i in range(blocks)]


class UpBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, batchnorm: bool = True) -> None:
        super().__init__()
        norm = nn.BatchNorm2d if batchnorm else (lambda c: nn.Identity())
        self.main = nn.Sequential(
            norm(c_in), nn.ReLU(), nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c_in, c_out, 3, padding=1), norm(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.shortcut = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)


class ResNetGenerator(nn.Module):
    """z (n, z_dim) -> images (n, C, H, W) in [-1, 1]."""

    def __init__(self, z_dim: int, out_shape: Sequence[int] = (3, 32, 32), width: int = 128,
                 channels: str = "constant", batchnorm: bool = True) -> None:
        super().__init__()
        if channels not in CHANNELS:
            raise ValueError(f"channels must be one of {CHANNELS}, got {channels!r}")
        c, height, w_ = _image_shape(out_shape)
        blocks = default_stages(height, w_)
        if blocks < 1:
            raise ValueError(f"ResNetGenerator needs sides of base * 2^k with base >= 4, got {height}x{w_}")
        widths = _generator_channels(width, blocks, channels)
        self.base = (widths[0], height // 2**blocks, w_ // 2**blocks)
        self.project = nn.Linear(z_dim, widths[0] * self.base[1] * self.base[2])
        self.blocks = nn.Sequential(*[UpBlock(a, b, batchnorm) for a, b in zip(widths[:-1], widths[1:])])
        self.out = nn.Sequential(nn.BatchNorm2d(widths[-1]) if batchnorm else nn.Identity(), nn.ReLU(),
                                 nn.Conv2d(widths[-1], c, 3, padding=1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.project(z).view(z.shape[0], *self.base)))


class DownBlock(nn.Module):
    """Pre-activation residual block; `first` is SNGAN's optimized block (no ReLU before the first conv,
    pool before the shortcut's conv); `down=False` keeps the resolution."""

    def __init__(self, c_in: int, c_out: int, down: bool = True, first: bool = False) -> None:
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if (down or c_in != c_out) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x if self.first else F.relu(x))
        h = self.conv2(F.relu(h))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.first:
            return h + self.shortcut(F.avg_pool2d(x, 2))
        s = self.shortcut(x)
        return h + (F.avg_pool2d(s, 2) if self.down else s)


class ResNetCritic(nn.Module):
    """x (n, C, H, W) -> score (n,), or (n, out_dim) features when out_dim > 1."""

    def __init__(self, in_shape: Sequence[int] = (3, 32, 32), width: int = 128, out_dim: int = 1,
                 down_blocks: int = 2, extra_blocks: int = 2, channels: str = "constant",
                 spectral_norm: bool = False) -> None:
        super().__init__()
        if channels not in CHANNELS:
            raise ValueError(f"channels must be one of {CHANNELS}, got {channels!r}")
        c, height, w_ = _image_shape(in_shape)
        if down_blocks < 1 or min(height, w_) < 2**down_blocks:
            raise ValueError(f"ResNetCritic: {down_blocks} down-blocks do not fit {height}x{w_} images")
        if channels == "constant":
            widths = [width] * (down_blocks + 1)
        else:
            widths = [width] + [width * min(8, 2**i) for i in range(down_blocks)]
        layers = [DownBlock(c, widths[1], first=True)]
        layers += [DownBlock(a, b) for a, b in zip(widths[1:-1], widths[2:])]
        layers += [DownBlock(widths[-1], widths[-1], down=False) for _ in range(extra_blocks)]
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], out_dim)
        self.out_dim = out_dim
        if spectral_norm:
            for module in list(self.modules()):
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    _spectral_norm(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x)).mean(dim=(2, 3))
        out = self.head(h)
        return out.squeeze(1) if self.out_dim == 1 else out
