"""MNIST-like image datasets through torchvision, held on the device as uint8.

Root directory: `dataset.root`, else $OTLAB_DATA, else a user cache dir. Files are torchvision's raw layout
(`<root>/MNIST/raw/train-images-idx3-ubyte`, ...). When they are missing, torchvision downloads them if the
network allows; otherwise one clear error names the directory and the files, before any model is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from otgan_lab.data.base import DeviceDataset
from otgan_lab.errors import DataError

# dataset name -> (torchvision class name, class names)
_IMAGE_DATASETS = {
    "mnist": ("MNIST", [str(i) for i in range(10)]),
    "fashion_mnist": (
        "FashionMNIST",
        ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"],
    ),
}
_RAW_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DatasetMissingError(DataError):
    """The dataset files are not on disk and could not be downloaded."""


def default_root() -> Path:
    from otgan_lab.paths import cache_root  # the user cache root, shared with the metrics' statistics

    return cache_root("OTLAB_DATA", "data")


def expected_files(name: str, root: str | Path, split: str) -> list[Path]:
    folder, _ = _IMAGE_DATASETS[name]
    return [Path(root) / folder / "raw" / f for f in _RAW_FILES[split]]


def check_available(name: str, root: str | Path | None, split: str = "train", download: bool = True) -> Path:
    """Make sure the raw files exist (downloading if allowed); return the resolved root.

    Cheap: called during config validation, before any network is built."""
    if name not in _IMAGE_DATASETS:
        raise ValueError(f"unknown image dataset {name!r}; choose one of {sorted(_IMAGE_DATASETS)}")
    root = Path(root).expanduser() if root else default_root()
    missing = [p for p in expected_files(name, root, split) if not p.exists()]
    if not missing:
        return root
    error = None
    if download:
        try:
            _torchvision_dataset(name, root, split, download=True)
            missing = [p for p in expected_files(name, root, split) if not p.exists()]
        except Exception as exc:  # no network, proxy, checksum...: report below with the file list
            error = exc
    if missing:
        folder, _ = _IMAGE_DATASETS[name]
        listing = "\n  ".join(str(p) for p in missing)
        reason = f" Download failed: {error}." if error else ""
        raise DatasetMissingError(
            f"dataset {name!r} ({split} split) is not in {root / folder / 'raw'}.{reason}\n"
            f"Missing files:\n  {listing}\n"
            f"Put torchvision's raw {folder} files there, or point dataset.root (or $OTLAB_DATA) at a folder "
            f"that holds {folder}/raw/."
        )
    return root


def idx_problem(path: Path) -> str | None:
    """Why `path` is not a whole uint8 idx file (the raw MNIST format), or None when it is one: magic
    0x0000_08_NN (NN dimensions), NN big-endian int32 sizes, then exactly prod(sizes) bytes."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4)
        if len(head) < 4:
            return f"empty or truncated ({size} bytes)"
        if head[0] != 0 or head[1] != 0 or head[2] != 0x08 or head[3] not in (1, 3):
            return f"not a uint8 idx file (magic bytes {head.hex()}, expected 000008 then 01 or 03)"
        dims_raw = fh.read(4 * head[3])
    if len(dims_raw) < 4 * head[3]:
        return f"truncated in its header ({size} bytes)"
    dims = [int.from_bytes(dims_raw[i:i + 4], "big") for i in range(0, len(dims_raw), 4)]
    expected = 4 + 4 * len(dims) + math.prod(dims)
    if size != expected:
        shape = " x ".join(map(str, dims))
        return f"{size} bytes, but its header ({shape}) needs {expected}: truncated or corrupt"
    return None


def _check_files(name: str, root: Path, split: str) -> None:
    for path in expected_files(name, root, split):
        problem = idx_problem(path)
        if problem is not None:
            raise DataError(f"dataset {name!r}: {path} is unreadable: {problem}. Replace it with "
                            "torchvision's raw file (or delete it and run with dataset.download=true where "
                            "the network allows).")


def _torchvision_dataset(name: str, root: Path, split: str, download: bool):
    import torchvision.datasets as tvd

    folder, _ = _IMAGE_DATASETS[name]
    return getattr(tvd, folder)(root=str(root), train=(split == "train"), download=download)


def image_dataset(
    name: str,
    root: str | Path | None = None,
    split: str = "train",
    classes: Sequence[int] | None = None,
    download: bool = True,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> DeviceDataset:
    """Load the split as a uint8 (N, 1, 28, 28) tensor on `device`, optionally keeping only `classes`."""
    root = check_available(name, root, split, download)
    _check_files(name, root, split)
    tv = _torchvision_dataset(name, root, split, download=False)
    images, labels = tv.data.unsqueeze(1).contiguous(), tv.targets.long()
    if len(images) != len(labels) or images.shape[-2:] != (28, 28):
        files = ", ".join(str(p) for p in expected_files(name, root, split))
        raise DataError(f"dataset {name!r}: {files} do not match: {len(images)} images of shape "
                        f"{tuple(images.shape[-2:])} and {len(labels)} labels (expected 28 x 28, one label "
                        "each)")
    class_names = _IMAGE_DATASETS[name][1]
    if classes is not None and len(classes) > 0:
        bad = [c for c in classes if not 0 <= int(c) < len(class_names)]
        if bad:
            raise ValueError(f"dataset.classes {bad} out of range 0..{len(class_names) - 1} for {name}")
        keep = torch.isin(labels, torch.tensor([int(c) for c in classes]))
        images, labels = images[keep], labels[keep]
    return DeviceDataset(
        name=name,
        data=images.to(device),
        kind="image",
        labels=labels.to(device),
        meta={"num_classes": len(class_names), "class_names": class_names, "split": split, "root": str(root),
              "classes": [int(c) for c in classes] if classes else None},
        seed=seed,
    )


def mnist(**kw) -> DeviceDataset:
    return image_dataset("mnist", **kw)


def fashion_mnist(**kw) -> DeviceDataset:
    return image_dataset("fashion_mnist", **kw)


def stacked_mnist(
    root: str | Path | None = None,
    n_samples: int = 100_000,
    split: str = "train",
    download: bool = True,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> DeviceDataset:
    """Stacked MNIST (Metz et al. 2017; Srivastava et al. 2017): three MNIST digits drawn independently
    and stacked as the channels of one 3x28x28 image, 1000 modes; label = 100*d0 + 10*d1 + d2.

    A fixed pool of `n_samples` triples is drawn from `seed` (one gather, no per-sample Python)."""
    base = image_dataset("mnist", root=root, split=split, download=download, device="cpu")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(base), (n_samples, 3), generator=gen)
    images = base.data[idx, 0]  # (n, 3, 28, 28): channel c holds digit idx[:, c]
    digits = base.labels[idx]
    labels = digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]
    return DeviceDataset(
        name="stacked_mnist",
        data=images.contiguous().to(device),
        kind="image",
        labels=labels.to(device),
        meta={"num_classes": 1000, "split": split, "root": base.meta["root"], "classes": None},
        seed=seed,
    )
