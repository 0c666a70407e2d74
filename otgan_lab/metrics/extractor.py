"""The feature-extractor interface every metric backbone implements (FID, KID, precision/recall).

A ``FeatureExtractor`` is a frozen network plus the metadata that identifies its features (``name``,
``weights_hash``, ``preprocessing``): reference statistics are reused only when its ``cache_key`` matches.
Images follow the project convention: float tensors in [-1, 1], shape (N, C, H, W); uint8 tensors are read
as pixel values in [0, 255] (convenient for reference datasets held as uint8). Extraction runs in fp32 with
autocast disabled, in eval mode, without gradients, ``batch_size`` images at a time, so the result does not
depend on the caller's AMP setting or batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

HASH_PREFIX_LEN = 8  # same length as torch.hub's file-name hash convention


class FeatureExtractor:
    """A frozen network mapping images to feature vectors, with the metadata that identifies it.

    ``__call__(images)`` returns float32 features of shape (N, dim) on the extractor's device.
    ``images`` is one tensor (N, C, H, W) or an iterable of such batches (e.g. produced by a sampler);
    either way work is done ``batch_size`` images at a time.
    """

    def __init__(
        self,
        name: str,
        network: nn.Module,
        dim: int,
        weights_hash: str,
        preprocessing: str,
        prepare: Callable[[Tensor], Tensor],
        batch_size: int = 256,
        device: str | torch.device = "cpu",
    ) -> None:
        self.name = name
        self.dim = dim
        self.weights_hash = weights_hash
        self.preprocessing = preprocessing
        self.batch_size = batch_size
        self._prepare = prepare
        self.device = torch.device(device)
        self.network = network.to(self.device).float().eval().requires_grad_(False)

    @property
    def cache_key(self) -> str:
        """Identifies the features: reference statistics are reusable only when this string matches."""
        return f"{self.name}|{self.weights_hash}|{self.preprocessing}"

    def to(self, device: str | torch.device) -> FeatureExtractor:
        self.device = torch.device(device)
        self.network.to(self.device)
        return self

    def _batches(self, images: Tensor | Iterable[Tensor]) -> Iterator[Tensor]:
        chunks = [images] if isinstance(images, Tensor) else images
        for chunk in chunks:
            for start in range(0, chunk.shape[0], self.batch_size):
                yield chunk[start : start + self.batch_size]

    @torch.no_grad()
    def __call__(self, images: Tensor | Iterable[Tensor]) -> Tensor:
        self.network.eval()  # in case someone toggled train mode: BN/dropout must be frozen
        outputs = []
        # Metric features are defined in fp32: an enclosing bf16/fp16 autocast region must not leak in.
        with torch.autocast(device_type=self.device.type, enabled=False):
            for batch in self._batches(images):
                x = self._prepare(batch.to(self.device, non_blocking=True))
                outputs.append(self.network(x).float())
        if not outputs:
            return torch.empty(0, self.dim, device=self.device)
        return torch.cat(outputs)

    def __repr__(self) -> str:
        return f"FeatureExtractor({self.cache_key!r}, dim={self.dim}, device={self.device})"

