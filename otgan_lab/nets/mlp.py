"""Fully connected generators and critics (the assignment-style MNIST MLP and the 2-D toy nets).

`model=mlp` stands in for the reports' course-assignment networks (exact architecture unknown):
generator z(100) -> 256 -> 512 -> 1024 -> 784 with LeakyReLU(0.2) and tanh; critic 784 -> 1024 -> 512 ->
256 -> 1. `model=mlp2d` uses the same classes with toy sizes and a linear output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

_ACTIVATIONS = {
    "relu": lambda: nn.ReLU(),
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "tanh": lambda: nn.Tanh(),
    "silu": lambda: nn.SiLU(),
}
_OUTPUTS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "linear": nn.Identity}


def activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def _stack(sizes: Sequence[int], act: str, batchnorm: bool, layernorm: bool = False, *,
           batchnorm_first: bool = True, bn_eps: float = 1e-5) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if batchnorm and (i > 0 or batchnorm_first):
            layers.append(nn.BatchNorm1d(fan_out, eps=bn_eps))
        if layernorm:
            layers.append(nn.LayerNorm(fan_out))
        layers.append(activation(act))
    return layers


class MLPGenerator(nn.Module):
    """z (n, z_dim) -> samples (n, *out_shape)."""

    def __init__(
        self,
        z_dim: int,
        out_shape: Sequence[int] = (2,),
        hidden: Sequence[int] = (256, 256, 256),
        act: str = "relu",
        out_act: str = "linear",
        batchnorm: bool = False,
        batchnorm_first: bool = True,
        bn_eps: float = 1e-5,
    ) -> None:
        """batchnorm_first=False: no BatchNorm after the first hidden layer (the PyTorch-GAN scripts' nets,
        which also pass 0.8 where BatchNorm1d takes eps: model=mlp_bn keeps both)."""
        super().__init__()
        self.out_shape = tuple(out_shape)
        sizes = [z_dim, *hidden]
        self.body = nn.Sequential(*_stack(sizes, act, batchnorm, batchnorm_first=batchnorm_first,
                                          bn_eps=bn_eps))
        self.head = nn.Linear(sizes[-1], math.prod(self.out_shape))
        self.out = _OUTPUTS[out_act]()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.body(z.flatten(1))
        return self.out(self.head(h)).view(z.shape[0], *self.out_shape)


class MLPCritic(nn.Module):
    """x (n, *in_shape) -> score (n,) when out_dim == 1, else an embedding (n, out_dim)."""

    def __init__(
        self,
        in_shape: Sequence[int] = (2,),
        hidden: Sequence[int] = (256, 256, 256),
        act: str = "relu",
        out_dim: int = 1,
        batchnorm: bool = False,
        layernorm: bool = False,
    ) -> None:
        super().__init__()
        sizes = [math.prod(in_shape), *hidden]
        self.body = nn.Sequential(*_stack(sizes, act, batchnorm, layernorm))
        self.head = nn.Linear(sizes[-1], out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.body(x.flatten(1)))
        return out.squeeze(1) if self.out_dim == 1 else out
