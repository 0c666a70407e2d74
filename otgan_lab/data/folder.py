"""Any folder tree of images as a dataset: `dataset=image_folder dataset.path=DIR dataset.size=N`.

Every image file under DIR (png, jpg, jpeg, bmp, gif, webp, tif, ppm, pgm; hidden folders skipped) is decoded
once with PIL, converted to RGB (`channels=3`) or grayscale (`channels=1`), centre-cropped to a square (the
shorter side, or `crop` pixels) and resized to size x size (bilinear, antialiased), into a uint8 cache in
`<root>/otgan_lab_cache/folder_<hash>_<C>x<size>.npy` (root: dataset.root, else $OTLAB_DATA, else the user
cache). The cache is rebuilt when a file is added, removed or changed (names, sizes and mtimes). The data goes
to the device when it fits, else streams from the cache (data/stream.py), as CelebA does.

A folder is one split: its images are both the training data and the metrics' reference (`split=train`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from otgan_lab.data.base import DeviceDataset
from otgan_lab.data.cache import CACHE_FOLDER, IMAGE_EXTENSIONS, cached_images, fingerprint, list_images
from otgan_lab.data.stream import place_images
from otgan_lab.errors import DataError


def _only_split(path: Path):
    def load_split(split: str) -> DeviceDataset:
        raise DataError(f"dataset image_folder ({path}) has one split, 'train' (the whole folder); it has no "
                        f"{split!r} split: use metrics.fid.reference_split=train, or score against another "
                        "folder with `otlab eval samples=... real=<folder>`")

    return load_split


def image_folder(path: str | Path | None = None, size: int = 64, channels: int = 3, crop: int | None = None,
                 root: str | Path | None = None, split: str = "train", stream: str | bool = "auto",
                 name: str = "image_folder", seed: int = 0,
                 device: str | torch.device = "cpu") -> DeviceDataset:
    """The images under `path` as uint8 (N, channels, size, size) (see module doc)."""
    from otgan_lab.data.images import default_root

    if not path:
        raise DataError("dataset=image_folder needs dataset.path=<folder of images>")
    if channels not in (1, 3):
        raise DataError(f"dataset.channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    if split != "train":
        raise DataError(f"dataset image_folder has one split, 'train' (the whole folder), not {split!r}")
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise DataError(f"dataset.path={path}: not a folder")
    files = list_images(folder)
    if not files:
        raise DataError(f"dataset.path={folder} holds no image files (looked recursively for "
                        f"{', '.join(IMAGE_EXTENSIONS)})")
    root = Path(root).expanduser() if root else default_root()
    tag = hashlib.sha256(str(folder).encode()).hexdigest()[:8]
    crop_tag = "" if crop is None else f"_crop{crop}"
    cache = root / CACHE_FOLDER / f"folder_{tag}_{channels}x{size}{crop_tag}.npy"
    record = {"source": str(folder), "files": fingerprint(folder, files, with_mtime=True)}
    array = cached_images(cache, files, record, size=int(size), channels=int(channels), crop=crop)
    meta = {"split": "train", "root": str(root), "classes": None, "path": str(folder), "cache": str(cache),
            "reference": f"folder:{folder}:{record['files'][:12]}", "load_split": _only_split(folder)}
    return place_images(name, array, stream=stream, meta=meta, seed=seed, device=device)
