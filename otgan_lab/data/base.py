"""Device-resident datasets, batched by index with an epoch-wise permutation.

The whole dataset lives on the training device (images as uint8, points as float32). A batch is a gather
with indices from a permutation drawn by a seeded `torch.Generator`, then one vectorised conversion to
data space. The read position is a host-side int, so drawing a batch never syncs with the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class DeviceDataset:
    """In-memory data on `device`.

    data: uint8 (N, C, H, W) images or float32 (N, D) points.
    kind: "image" (data space [-1, 1]) or "points" (data space = stored values).
    labels: int64 (N,) class labels or None.
    meta: dataset-specific facts the metrics need (mixture centres and std, number of classes...).
    """

    name: str
    data: torch.Tensor
    kind: str
    labels: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("image", "points"):
            raise ValueError(f"dataset kind must be 'image' or 'points', got {self.kind!r}")
        self._generator = torch.Generator(device=self.index_device)
        self._generator.manual_seed(self.seed)
        self._perm: torch.Tensor | None = None
        self._pos = 0

    # -- facts ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.data.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one sample in data space."""
        return tuple(self.data.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def index_device(self) -> torch.device:
        """Where batch indices are drawn: the data's device (streamed datasets: the host, data.stream)."""
        return self.data.device

    # -- batching ------------------------------------------------------------------------------------
    def to_data_space(self, raw: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32 in [-1, 1]; points pass through."""
        if self.kind == "image":
            return raw.float().mul_(2.0 / 255.0).sub_(1.0)
        return raw

    def indices(self, n: int) -> torch.Tensor:
        """The next `n` indices of the current epoch's permutation (a fresh permutation when exhausted;
        the remainder of an epoch is dropped, as DataLoader(drop_last=True) does)."""
        if n > len(self):
            raise ValueError(f"batch of {n} is larger than dataset {self.name!r} ({len(self)} samples)")
        if self._perm is None or self._pos + n > len(self):
            self._perm = torch.randperm(len(self), device=self.index_device, generator=self._generator)
            self._pos = 0
        idx = self._perm[self._pos : self._pos + n]
        self._pos += n
        return idx

    def batch(self, n: int) -> torch.Tensor:
        """A batch of `n` real samples in data space, on the device."""
        return self.to_data_space(self.data[self.indices(n)])

    def all(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Samples [start, stop) in storage order, in data space (for encoders and reference statistics)."""
        return self.to_data_space(self.data[start:stop])

    # -- resume --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self._generator.get_state(),
            "perm": self._perm.cpu() if self._perm is not None else torch.empty(0, dtype=torch.long),
            "pos": self._pos,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._generator.set_state(state["generator"])
        perm = state["perm"]
        self._perm = perm.to(self.index_device) if perm.numel() else None
        self._pos = int(state["pos"])
