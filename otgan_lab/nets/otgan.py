"""OT-GAN networks for 28x28 images, after report R2 (scaled-down Salimans et al. 2018, Appendix B).

Generator: z -> one linear layer -> GLU -> (4w, 7, 7); then 4 conv layers: [2x nearest upsample, conv, GLU]
to (2w, 14, 14), [2x upsample, conv, GLU] to (w, 28, 28), [conv, GLU] at (w, 28, 28), [conv to C] + tanh.
Critic: a 2-layer fully connected embedding x -> hidden -> CReLU -> out_dim (the cosine cost's features;
the L2 normalisation happens in the loss). No batch norm anywhere (the paper uses weight normalisation
with data-dependent init, omitted here: the report's nets have no normalisation layers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class CReLU(nn.Module):
    """Concatenated ReLU (Shang et al. 2016): x -> [relu(x), relu(-x)] along ``dim``, doubling the width."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.relu(x), torch.relu(-x)], dim=self.dim)


def _conv_glu(c_in: int, c_out: int, kernel: int, upsample: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest")] if upsample else []
    layers += [nn.Conv2d(c_in, 2 * c_out, kernel, padding=kernel // 2), nn.GLU(dim=1)]
    return nn.Sequential(*layers)


class OTGANGenerator(nn.Module):
    """z (n, z_dim) -> images (n, C, H, W) in [-1, 1]; H and W divisible by 4."""

    def __init__(self, z_dim: int, out_shape: Sequence[int] = (1, 28, 28), width: int = 32, kernel: int = 5):
        super().__init__()
        channels, height, w_ = out_shape
        if height % 4 or w_ % 4:
            raise ValueError(f"OTGANGenerator needs image sides divisible by 4, got {height}x{w_}")
        self.base = (4 * width, height // 4, w_ // 4)
        self.project = nn.Sequential(nn.Linear(z_dim, 2 * math.prod(self.base)), nn.GLU(dim=1))
        self.convs = nn.Sequential(
            _conv_glu(4 * width, 2 * width, kernel, upsample=True),
            _conv_glu(2 * width, width, kernel, upsample=True),
            _conv_glu(width, width, kernel, upsample=False),
            nn.Conv2d(width, channels, kernel, padding=kernel // 2),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.convs(self.project(z).view(z.shape[0], *self.base))


class OTGANCritic(nn.Module):
    """x (n, *in_shape) -> embedding (n, out_dim): linear -> CReLU -> linear. out_dim == 1 gives (n,)."""

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), hidden: int = 512, out_dim: int = 256):
        super().__init__()
        self.out_dim = out_dim
        self.embed = nn.Sequential(
            nn.Flatten(1), nn.Linear(math.prod(in_shape), hidden), CReLU(dim=1),
            nn.Linear(2 * hidden, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.embed(x)
        return out.squeeze(1) if self.out_dim == 1 else out
