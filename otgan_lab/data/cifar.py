"""CIFAR-10 (Krizhevsky 2009) from torchvision's files, held on the device as uint8 (50,000 x 3 x 32 x 32 =
150 MB: it always fits).

Files: `<root>/cifar-10-batches-py/data_batch_1..5` (train), `test_batch` (test), `batches.meta` (class
names): the python pickles that torchvision downloads and extracts. Each batch is a dict with `data`, a
uint8 (n, 3072) array of rows in channel-major order (1024 red, 1024 green, 1024 blue, row by row), and
`labels`, n ints in 0..9; keys may be bytes (the original Python 2 pickles read with encoding='bytes') or
str. They are read here directly (torchvision's class would reject any file whose md5 is not the
official one) with an unpickler that only builds numpy arrays and builtins. Missing files are downloaded
through torchvision when `download=true` and the network allows; otherwise one error names the files.
"""

from __future__ import annotations

import functools
import io
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from otgan_lab.data.base import DeviceDataset
from otgan_lab.data.stream import place_images
from otgan_lab.data.synthetic import synthetic_images
from otgan_lab.errors import DataError

FOLDER = "cifar-10-batches-py"
SPLIT_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
META_FILE = "batches.meta"
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# what a CIFAR pickle may build: numpy arrays (protocol 2 and 5 paths) and bytes from latin-1 text
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (a CIFAR batch holds arrays "
                                         "only)")
        return super().find_class(module, name)


def expected_files(root: str | Path, split: str) -> list[Path]:
    return [Path(root) / FOLDER / f for f in SPLIT_FILES[split]]


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, 3, 32, 32), labels int64 (n,)) of one pickled batch; DataError naming the file."""
    try:
        raw = _ArraysOnly(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as exc:
        raise DataError(f"CIFAR-10 file {path} is unreadable ({exc.__class__.__name__}: {exc}). Replace it "
                        "with torchvision's (delete it and run with dataset.download=true where the network "
                        "allows).") from None
    batch = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in dict(raw).items()} \
        if isinstance(raw, dict) else {}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"CIFAR-10 file {path} is not a CIFAR batch: expected a dict with 'data' (uint8, "
                        f"n x 3072) and 'labels', found keys {sorted(map(str, batch))}")
    labels = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"CIFAR-10 file {path}: 'data' is {data.dtype} {data.shape} with {len(labels)} "
                        "labels; expected uint8 (n, 3072) and one label per row")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"CIFAR-10 file {path}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def check_available(root: Path, split: str, download: bool) -> None:
    missing = [p for p in expected_files(root, split) if not p.is_file()]
    if not missing:
        return
    error = None
    if download:
        try:
            import torchvision.datasets as tvd

            tvd.CIFAR10(root=str(root), train=(split == "train"), download=True)
            missing = [p for p in expected_files(root, split) if not p.is_file()]
        except Exception as exc:  # no network, proxy, checksum...: reported with the file list
            error = exc
    if missing:
        reason = f" Download failed: {error}." if error else ""
        listing = "\n  ".join(str(p) for p in missing)
        raise DataError(
            f"dataset 'cifar10' ({split} split) is not in {root / FOLDER}.{reason}\n"
            f"Missing files:\n  {listing}\n"
            f"Put torchvision's CIFAR-10 python files there (cifar-10-python.tar.gz extracted: {FOLDER}/"
            "data_batch_1..5, test_batch, batches.meta), or point dataset.root (or $OTLAB_DATA) at the "
            f"folder that holds {FOLDER}/."
        )


def cifar10(root: str | Path | None = None, split: str = "train", classes: Sequence[int] | None = None,
            download: bool = True, synthetic: int | None = None, seed: int = 0,
            device: str | torch.device = "cpu") -> DeviceDataset:
    """The split as uint8 (N, 3, 32, 32) on `device`, optionally only `classes`; `synthetic=N`: N generated
    images in CIFAR's shape instead of the files (smoke budgets)."""
    from otgan_lab.data.images import default_root

    if split not in SPLIT_FILES:
        raise DataError(f"dataset.split={split!r}: CIFAR-10 has splits {sorted(SPLIT_FILES)}")
    root = Path(root).expanduser() if root else default_root()
    reload = functools.partial(cifar10, root=root, classes=classes, download=False, synthetic=synthetic,
                               device=device)
    meta = {"num_classes": 10, "class_names": CLASS_NAMES, "split": split, "root": str(root),
            "classes": [int(c) for c in classes] if classes else None, "load_split": reload}
    if synthetic:
        images = synthetic_images(int(synthetic), 3, 32, split)
        labels = np.arange(len(images)) % 10
        meta["reference"] = f"synthetic:{int(synthetic)}"
    else:
        check_available(root, split, download)
        parts = [read_batch(p) for p in expected_files(root, split)]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
    if classes:
        bad = [c for c in classes if not 0 <= int(c) < 10]
        if bad:
            raise ValueError(f"dataset.classes {bad} out of range 0..9 for cifar10")
        keep = np.isin(labels, [int(c) for c in classes])
        images, labels = images[keep], labels[keep]
    return place_images("cifar10", images, stream=False, labels=torch.from_numpy(labels), meta=meta,
                        seed=seed, device=device)
