"""The ``random_conv`` / ``random_conv_logits`` backbones: a small conv net with fixed, seeded random weights.

For wiring checks only: smoke budgets on generated data, on machines without the Inception weights. Its
numbers mean nothing about sample quality and are never comparable with Inception or LeNet numbers (the
backbone's name is in every protocol and cache key). Takes (N, 1|3, H, W) images of any size (gray is
repeated to RGB; adaptive pooling at the end); ``random_conv`` gives 64 features, ``random_conv_logits``
10 "class" logits from the same trunk (for the Inception Score's wiring).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from otgan_lab.metrics.extractor import FeatureExtractor


def _trunk() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
    )


def prepare_rgb(images: Tensor) -> Tensor:
    """uint8 or float [-1, 1] (N, 1|3, H, W) -> float [-1, 1] (N, 3, H, W)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"random_conv features need (N, 1|3, H, W) images, got {tuple(images.shape)}")
    x = images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float()
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def random_conv_backbone(logits: bool = False, seed: int = 0, batch_size: int = 500,
                         device: str | torch.device = "cpu", **_) -> FeatureExtractor:
    """The seeded random net; `logits=True` adds a random linear head to 10 outputs."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = _trunk()
        if logits:
            network.append(nn.Linear(64, 10))
        for module in network.modules():  # He init: O(1) features and logits, not shrinking ones
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return FeatureExtractor(
        name="random_conv_logits" if logits else "random_conv",
        network=network,
        dim=10 if logits else 64,
        weights_hash=f"seed{seed}",
        preprocessing="float[-1,1], gray repeated to RGB, any size (adaptive average pool)",
        prepare=prepare_rgb,
        batch_size=batch_size,
        device=device,
    )
