"""CelebA (Liu et al. 2015) at 64x64: the aligned JPEGs, centre-cropped to 108x108 and resized to 64x64 (the
crop of the DCGAN / WAE / BEGAN code bases), decoded once into a uint8 cache.

Files: torchvision's layout, `<root>/celeba/img_align_celeba/000001.jpg ... 202599.jpg` with
`<root>/celeba/list_eval_partition.txt` ("000001.jpg 0" per line: 0 train, 1 valid, 2 test); or any folder of
the aligned JPEGs given as `dataset.path` (the partition file is looked for beside it and inside it; without
one, 6-digit file names take the official ranges 1-162770 train, 162771-182637 valid, 182638-202599 test).
`split=all` takes every image.

The first run decodes every JPEG once into `<root>/otgan_lab_cache/celeba_64.npy` (plus `celeba_64.json`,
what was decoded), with a progress line; later runs memory-map it. 202,599 x 3 x 64 x 64 uint8 = 2.4 GB:
with `stream=auto` it goes to the device when it takes at most a quarter of the free memory, else batches
stream from the memmap through pinned memory (data/stream.py). Missing files are downloaded through
torchvision when `download=true` and the network allows (Google Drive; needs `gdown`); otherwise one error
names what is expected.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import torch

from otgan_lab.data.base import DeviceDataset
from otgan_lab.data.cache import CACHE_FOLDER, cached_images, fingerprint, list_images
from otgan_lab.data.stream import place_images
from otgan_lab.data.synthetic import synthetic_images
from otgan_lab.errors import DataError

FOLDER, IMAGES, PARTITION = "celeba", "img_align_celeba", "list_eval_partition.txt"
SPLITS = {"train": 0, "valid": 1, "test": 2, "all": None}
OFFICIAL_RANGES = {0: (1, 162770), 1: (162771, 182637), 2: (182638, 202599)}  # by the 6-digit file number
USUAL_CROP = 108


def _image_folder(root: Path, path: str | Path | None) -> Path:
    return Path(path).expanduser() if path else root / FOLDER / IMAGES


def _partition_file(folder: Path, root: Path, path: str | Path | None) -> Path | None:
    candidates = [folder.parent / PARTITION, folder / PARTITION] if path else [root / FOLDER / PARTITION]
    return next((p for p in candidates if p.is_file()), None)


def _missing_message(root: Path, folder: Path, path, error: Exception | None) -> str:
    reason = f" Download failed: {error}." if error else ""
    partition = folder.parent / PARTITION if path else root / FOLDER / PARTITION
    return (f"dataset 'celeba': no aligned CelebA JPEGs in {folder}.{reason}\nExpected files:\n"
            f"  {folder}/000001.jpg ... 202599.jpg (img_align_celeba.zip, extracted)\n"
            f"  {partition} (the train/valid/test split)\n"
            "Put torchvision's CelebA files in <root>/celeba/ and point dataset.root (or $OTLAB_DATA) at "
            "<root>, or give dataset.path=<folder of aligned JPEGs>.")


def _download(root: Path) -> None:
    import torchvision.datasets as tvd

    tvd.CelebA(root=str(root), split="all", target_type=[], download=True)


def split_rows(files: list[Path], split: str, partition: Path | None) -> np.ndarray | None:
    """Row indices (into the sorted `files`) of `split`; None for all."""
    wanted = SPLITS[split]
    if wanted is None:
        return None
    if partition is not None:
        assigned = {}
        for number, line in enumerate(partition.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise DataError(f"{partition}, line {number}: expected '<file name> <0|1|2>', got {line!r}")
            assigned[parts[0]] = int(parts[1])
        rows = [i for i, f in enumerate(files) if assigned.get(f.name) == wanted]
    else:
        low, high = OFFICIAL_RANGES[wanted]
        numbers = [int(f.stem) if f.stem.isdigit() and len(f.stem) == 6 else None for f in files]
        if any(n is None for n in numbers):
            raise DataError(f"dataset 'celeba': no {PARTITION} and the file names are not CelebA's 6-digit "
                            f"numbers, so split={split} is undefined; use dataset.split=all or add the file")
        rows = [i for i, n in enumerate(numbers) if low <= n <= high]
    if not rows:
        raise DataError(f"dataset 'celeba': the {split} split is empty ({len(files)} images, partition "
                        f"{partition or 'by file number'})")
    return np.asarray(rows, dtype=np.int64)


def celeba(root: str | Path | None = None, path: str | Path | None = None, split: str = "train",
           size: int = 64, crop: int | None = USUAL_CROP, stream: str | bool = "auto", download: bool = True,
           synthetic: int | None = None, seed: int = 0, device: str | torch.device = "cpu") -> DeviceDataset:
    """The split as uint8 (N, 3, size, size): on `device`, or streamed from the cache (see module doc)."""
    from otgan_lab.data.images import default_root

    if split not in SPLITS:
        raise DataError(f"dataset.split={split!r}: CelebA has splits {sorted(SPLITS)}")
    root = Path(root).expanduser() if root else default_root()
    reload = functools.partial(celeba, root=root, path=path, size=size, crop=crop, stream=stream,
                               download=False, synthetic=synthetic, device=device)
    meta = {"split": split, "root": str(root), "classes": None, "load_split": reload}
    if synthetic:
        array = synthetic_images(int(synthetic), 3, int(size), split)
        meta["reference"] = f"synthetic:{int(synthetic)}"
        return place_images("celeba", array, stream=stream, meta=meta, seed=seed, device=device)
    folder = _image_folder(root, path)
    files = list_images(folder) if folder.is_dir() else []
    if not files and download and not path:
        try:
            _download(root)
            error = None
        except Exception as exc:  # no network, no gdown, quota...: reported with what is expected
            error = exc
        files = list_images(folder) if folder.is_dir() else []
        if not files:
            raise DataError(_missing_message(root, folder, path, error))
    if not files:
        raise DataError(_missing_message(root, folder, path, None))
    rows = split_rows(files, split, _partition_file(folder, root, path))
    stem = f"celeba_{size}" + ("" if crop == USUAL_CROP else f"_crop{crop}")
    if path:  # a folder of one's own: its own cache file
        stem += "_" + hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]
        meta["reference"] = f"folder:{folder.resolve()}"
    record = {"source": str(folder.resolve()), "files": fingerprint(folder, files)}
    array = cached_images(root / CACHE_FOLDER / f"{stem}.npy", files, record, size=int(size), channels=3,
                          crop=crop)
    meta["cache"] = str(root / CACHE_FOLDER / f"{stem}.npy")
    return place_images("celeba", array, rows=rows, stream=stream, meta=meta, seed=seed, device=device)
