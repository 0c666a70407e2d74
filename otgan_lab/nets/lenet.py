"""A small LeNet-style classifier for 28×28 grayscale digits (MNIST, Fashion-MNIST).

LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document recognition", Proc. IEEE 1998.

Used as the feature network of the classifier-feature FID and as the classifier of the class-coverage
metrics (see ``otgan_lab.metrics.features`` and ``otgan_lab.metrics.classifier``). The layout is
conv-conv-fc-fc: two 5×5 valid convolutions with batch norm and 2×2 max pooling, a 128-unit fully connected
layer (the *penultimate* layer whose activations are the FID features) and a 10-way linear head.

Batch norm makes training fast and stable on CPU; in eval mode it is a fixed affine map, so features do
not depend on the batch composition (FID stays invariant to the extraction batch size).
~94k parameters (≈ 370 KB in fp32), small enough to commit with the package.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LeNet(nn.Module):
    """Input (N, 1, 28, 28) in [-1, 1]; ``features`` → (N, feature_dim), ``forward`` → (N, n_classes)
    logits."""

    def __init__(self, n_classes: int = 10, feature_dim: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.conv_stack = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=5, bias=False),  # 28 -> 24
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 24 -> 12
            nn.Conv2d(32, 32, kernel_size=5, bias=False),  # 12 -> 8
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 8 -> 4
        )
        self.fc = nn.Linear(32 * 4 * 4, feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations (after ReLU), shape (N, feature_dim)."""
        if x.shape[-3:] != (1, 28, 28):
            raise ValueError(f"LeNet expects (N, 1, 28, 28) images, got {tuple(x.shape)}")
        h = self.conv_stack(x).flatten(1)
        return torch.relu(self.fc(h))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits, shape (N, n_classes)."""
        return self.head(self.dropout(self.features(x)))
