"""Where a uint8 image array lives while training: on the device when it fits, else streamed from the host.

The default (`stream=auto`) keeps the whole (N, C, H, W) uint8 array on the training device, like MNIST, when
it takes at most `DEVICE_SHARE` of the device's free memory (CUDA: `torch.cuda.mem_get_info`; CPU: the
kernel's MemAvailable). Otherwise (or with `stream=true`) the array stays in a memory-mapped `.npy` file on
the host: a batch is a sorted gather of its rows from the memmap (page cache after the first epoch), copied
into pinned memory and sent to the device with `non_blocking=True`. CelebA at 64x64 (202,599 x 12 KB = 2.4
GB) streams on a small GPU and fits on a large one; CIFAR-10 (150 MB) always fits.

`StreamedDataset` is a `DeviceDataset` whose `data` is a `HostImages`: indexing it with a tensor of indices
(on any device), a slice or an int gathers on the host and returns a uint8 tensor on the device, so the code
that indexes `data.data` (DRS calibration, AE-OT's encoding pass, reference statistics) works unchanged.
Batch indices are drawn on the host (`index_device`), so drawing a batch never waits for the device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from otgan_lab.data.base import DeviceDataset
from otgan_lab.errors import ConfigError

DEVICE_SHARE = 0.25  # at most this share of the device's free memory goes to a resident dataset
STREAM_CHOICES = ("auto", True, False)


class HostImages:
    """uint8 images (N, C, H, W) in host memory (typically a memmap), read as if they were on `device`.

    `rows` (optional) selects a subset of the array's rows (a split), in order."""

    dtype = torch.uint8

    def __init__(self, array: np.ndarray, device: str | torch.device, rows: np.ndarray | None = None) -> None:
        if array.ndim != 4 or array.dtype != np.uint8:
            raise ValueError(f"HostImages needs a uint8 (N, C, H, W) array, got {array.dtype} {array.shape}")
        self.array = array
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self._device = torch.device(device)

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def shape(self) -> torch.Size:
        n = len(self.array) if self.rows is None else len(self.rows)
        return torch.Size((n, *self.array.shape[1:]))

    def __len__(self) -> int:
        return self.shape[0]

    def _positions(self, index) -> np.ndarray | slice:
        if isinstance(index, slice):
            if self.rows is None:
                return slice(*index.indices(len(self)))
            return self.rows[index]
        if isinstance(index, torch.Tensor):
            index = index.detach().cpu().numpy()
        index = np.asarray(index, dtype=np.int64)
        return index if self.rows is None else self.rows[index]

    def __getitem__(self, index) -> torch.Tensor:
        positions = self._positions(index)
        if isinstance(positions, slice):
            block = np.array(self.array[positions])  # a copy: never a view of the (read-only) memmap
        else:
            scalar = positions.ndim == 0
            positions = positions.reshape(-1)
            order = np.argsort(positions, kind="stable")  # read the file front to back, then restore order
            block = np.empty((len(positions), *self.array.shape[1:]), dtype=np.uint8)
            block[order] = self.array[positions[order]]
            block = block[0] if scalar else block
        out = torch.from_numpy(block)
        if self._device.type == "cuda":
            return out.pin_memory().to(self._device, non_blocking=True)
        return out.to(self._device)

    def __repr__(self) -> str:
        return f"HostImages({tuple(self.shape)}, uint8, host -> {self._device})"


@dataclass
class StreamedDataset(DeviceDataset):
    """A DeviceDataset whose images stay on the host (`data` is a HostImages); batches go to `data.device`."""

    @property
    def index_device(self) -> torch.device:
        return torch.device("cpu")


def free_memory(device: torch.device) -> int:
    """Bytes free on `device` now (CUDA: the driver's count; CPU: MemAvailable, else total RAM)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def should_stream(nbytes: int, device: torch.device, stream: str | bool = "auto") -> bool:
    """`stream=auto`: stream when the array would take more than DEVICE_SHARE of the free memory."""
    if stream not in STREAM_CHOICES:
        raise ConfigError(f"dataset.stream must be auto, true or false (got {stream!r})")
    if stream == "auto":
        return nbytes > DEVICE_SHARE * free_memory(device)
    return bool(stream)


def place_images(name: str, array: np.ndarray, *, rows: np.ndarray | None = None, stream: str | bool = "auto",
                 labels: torch.Tensor | None = None, meta: dict | None = None, seed: int = 0,
                 device: str | torch.device = "cpu") -> DeviceDataset:
    """A dataset of the uint8 (N, C, H, W) `array` (rows `rows` of it): on `device`, or streamed from host.

    `meta["placement"]` says which ("device" or "stream"), for the run's log."""
    device = torch.device(device)
    n = len(array) if rows is None else len(rows)
    nbytes = n * int(np.prod(array.shape[1:]))
    meta = dict(meta or {})
    if should_stream(nbytes, device, stream):
        meta["placement"] = "stream"
        return StreamedDataset(name=name, data=HostImages(array, device, rows), kind="image",
                               labels=None if labels is None else labels.to(device), meta=meta, seed=seed)
    meta["placement"] = "device"
    if rows is not None:
        selected = array[np.asarray(rows, dtype=np.int64)]  # a gather: a copy in RAM
    else:  # a memmap is copied into RAM (never a tensor over the read-only file)
        selected = np.array(array) if isinstance(array, np.memmap) else np.ascontiguousarray(array)
    data = torch.from_numpy(selected).to(device)
    labels = None if labels is None else labels.to(device)
    return DeviceDataset(name=name, data=data, kind="image", labels=labels, meta=meta, seed=seed)
