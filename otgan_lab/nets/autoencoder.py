"""Autoencoder nets for AE-OT, AE-OT-GAN and WAE: encoder x -> code (n, latent_dim), decoder code -> x.

Two families. Conv, for images with sides divisible by 4 (28x28): the encoder is two stride-2 convs with
LeakyReLU(0.2) and a linear map to the code; the decoder mirrors it (linear -> 2w x H/4 x W/4, two
stride-2 transposed convs) and ends in tanh, the [-1, 1] data space. MLP, for points: `depth` hidden ReLU
layers of `width` units; linear code and output. No BatchNorm anywhere: the encoder must be a per-sample
function (AE-OT encodes the training set once, in eval mode) and the decoder doubles as AE-OT-GAN's
generator. The builders `encoder`/`decoder`/`critic` pick the family from the data shape
(`family="auto"`: conv for (C, H, W), MLP otherwise) so that one model yaml serves every dataset.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from otgan_lab.nets.dcgan import ConvCritic
from otgan_lab.nets.mlp import MLPCritic

FAMILIES = ("auto", "conv", "mlp")


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _check_image_shape(shape: Sequence[int], who: str) -> tuple[int, int, int]:
    if len(shape) != 3 or shape[1] % 4 or shape[2] % 4:
        raise ValueError(
            f"{who} needs images (C, H, W) with H and W divisible by 4, got shape {list(shape)}; "
            "for 2-D points use the MLP family (model=ae_mlp, or model=ae which picks it from the shape)"
        )
    return int(shape[0]), int(shape[1]), int(shape[2])


class ConvEncoder(nn.Module):
    """(n, C, H, W) -> (n, latent_dim): conv(C->w, /2) -> conv(w->2w, /2) -> linear."""

    def __init__(self, in_shape: Sequence[int], latent_dim: int, width: int = 32) -> None:
        super().__init__()
        channels, height, w_ = _check_image_shape(in_shape, "ConvEncoder")
        self.latent_dim = int(latent_dim)
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        )
        self.head = nn.Linear(2 * width * (height // 4) * (w_ // 4), latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class ConvDecoder(nn.Module):
    """(n, latent_dim) -> (n, C, H, W) in [-1, 1]: linear -> 2w x H/4 x W/4 -> two x2 transposed convs."""

    def __init__(self, latent_dim: int, out_shape: Sequence[int], width: int = 32) -> None:
        super().__init__()
        channels, height, w_ = _check_image_shape(out_shape, "ConvDecoder")
        self.base = (2 * width, height // 4, w_ // 4)
        self.project = nn.Sequential(nn.Linear(latent_dim, math.prod(self.base)), nn.ReLU())
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.project(z).view(z.shape[0], *self.base))


class MLPEncoder(nn.Module):
    """(n, *in_shape) -> (n, latent_dim) through `depth` hidden ReLU layers of `width` units."""

    def __init__(self, in_shape: Sequence[int], latent_dim: int, width: int = 256, depth: int = 3) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.net = _mlp([math.prod(in_shape), *[width] * depth, latent_dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    """(n, latent_dim) -> (n, *out_shape); `out_act` tanh for images in [-1, 1], linear for points."""

    def __init__(self, latent_dim: int, out_shape: Sequence[int], width: int = 256, depth: int = 3,
                 out_act: str = "linear") -> None:
        super().__init__()
        if out_act not in ("linear", "tanh"):
            raise ValueError(f"out_act must be 'linear' or 'tanh', got {out_act!r}")
        self.out_shape = tuple(out_shape)
        self.net = _mlp([latent_dim, *[width] * depth, math.prod(self.out_shape)])
        self.out = nn.Tanh() if out_act == "tanh" else nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(z)).view(z.shape[0], *self.out_shape)


def resolve_family(family: str, data_shape: Sequence[int]) -> str:
    """'auto' -> 'conv' for (C, H, W) images, 'mlp' for anything else."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if family == "auto":
        return "conv" if len(data_shape) == 3 else "mlp"
    return family


def encoder(data_shape: Sequence[int], latent_dim: int, family: str = "auto", conv_width: int = 32,
            mlp_width: int = 256, mlp_depth: int = 3) -> nn.Module:
    if resolve_family(family, data_shape) == "conv":
        return ConvEncoder(data_shape, latent_dim, conv_width)
    return MLPEncoder(data_shape, latent_dim, mlp_width, mlp_depth)


def decoder(data_shape: Sequence[int], latent_dim: int, family: str = "auto", conv_width: int = 32,
            mlp_width: int = 256, mlp_depth: int = 3) -> nn.Module:
    if resolve_family(family, data_shape) == "conv":
        return ConvDecoder(latent_dim, data_shape, conv_width)
    # images through an MLP still live in [-1, 1]
    out_act = "tanh" if len(data_shape) == 3 else "linear"
    return MLPDecoder(latent_dim, data_shape, mlp_width, mlp_depth, out_act)


def critic(data_shape: Sequence[int], family: str = "auto", conv_width: int = 64, mlp_width: int = 256,
           mlp_depth: int = 3) -> nn.Module:
    """Data-space critic (AE-OT-GAN): the project's ConvCritic or MLPCritic, raw score (n,)."""
    if resolve_family(family, data_shape) == "conv":
        return ConvCritic(data_shape, conv_width)
    return MLPCritic(data_shape, [mlp_width] * mlp_depth, act="leaky_relu")


def latent_critic(latent_dim: int, width: int = 256, depth: int = 3) -> nn.Module:
    """Code-space critic (WAE-GAN): MLP on (n, latent_dim) -> logit (n,)."""
    return MLPCritic([latent_dim], [width] * depth, act="relu")
