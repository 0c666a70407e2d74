"""Decode image files once into a uint8 `.npy` cache (N, C, S, S), reused by every later run.

Image files (CelebA's JPEGs, any folder of images) are decoded with PIL once, centre-cropped, resized and
written into `<data root>/otgan_lab_cache/<name>.npy`, with a `<name>.json` beside it that records what
was decoded (the source folder, a fingerprint of the file names and sizes, crop, size, channels, count). A
cache whose record does not match the files is rebuilt; a run never decodes an image per step. The array is
written to a temp file and renamed when whole, so an interrupted build leaves no half cache behind.
Decoding runs in a thread pool (PIL releases the GIL while decoding and resizing); a plain progress line is
printed every few seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from otgan_lab.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
CACHE_FOLDER = "otgan_lab_cache"
CACHE_VERSION = 1  # bump when decoding changes: old caches are rebuilt
CHUNK = 2048  # images decoded per batch of thread-pool tasks


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively, hidden folders skipped), sorted by relative path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if f.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def fingerprint(folder: Path, files: Sequence[Path], with_mtime: bool = False) -> str:
    """sha256 of the relative names and byte sizes (and mtimes) of `files`: changes when the data does."""
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        stamp = f":{stat.st_mtime_ns}" if with_mtime else ""
        digest.update(f"{path.relative_to(folder).as_posix()}:{stat.st_size}{stamp}\n".encode())
    return digest.hexdigest()


def decode(path: Path, size: int, channels: int, crop: int | None = None):
    """One image file -> uint8 (channels, size, size): a centred square crop (side `crop`, or the shorter
    side when None), then a bilinear (antialiased) resize to `size` by PIL."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
    except Exception as exc:  # PIL raises many types for a damaged or non-image file
        raise DataError(f"{path} is not a readable image: {exc.__class__.__name__}: {exc}") from None
    width, height = image.size
    side = min(width, height) if crop is None else int(crop)
    if side > min(width, height):
        raise DataError(f"{path} is {width}x{height}, smaller than the {side}-pixel centre crop")
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), Image.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _progress(label: str) -> Callable[[int, int], None]:
    start = last = time.monotonic()

    def report(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done == total or now - last >= 5.0:
            last = now
            print(f"{label}: {done}/{total} images ({100 * done / max(total, 1):.0f}%, {now - start:.0f} s)",
                  file=sys.stderr, flush=True)

    return report


def cached_images(cache_file: Path, files: Sequence[Path], record: dict[str, Any], *, size: int,
                  channels: int, crop: int | None = None, workers: int | None = None) -> np.ndarray:
    """The uint8 (len(files), channels, size, size) array of `files`, memory-mapped read-only from
    `cache_file`; built first when the file is missing or its `.json` record differs from `record`."""
    cache_file = Path(cache_file)
    meta_file = cache_file.with_suffix(".json")
    expected = {**record, "version": CACHE_VERSION, "count": len(files), "size": size, "channels": channels,
                "crop": crop}
    if cache_file.is_file() and meta_file.is_file():
        try:
            if json.loads(meta_file.read_text()) == expected:
                array = np.load(cache_file, mmap_mode="r")
                if array.shape == (len(files), channels, size, size) and array.dtype == np.uint8:
                    return array
        except (OSError, ValueError):
            pass  # unreadable: rebuilt below
    if not files:
        raise DataError(f"no images to cache for {cache_file.name}")
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f".{cache_file.stem}.tmp-{os.getpid()}.npy")
    report = _progress(f"otlab: decoding {len(files)} images once into {cache_file}")
    try:
        shape = (len(files), channels, size, size)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for start in range(0, len(files), CHUNK):  # bounded: a chunk of futures at a time
                chunk = files[start:start + CHUNK]
                for i, array in enumerate(pool.map(lambda p: decode(p, size, channels, crop), chunk)):
                    out[start + i] = array
                report(start + len(chunk), len(files))
        out.flush()
        del out
        os.replace(tmp, cache_file)
    finally:
        tmp.unlink(missing_ok=True)
    meta_file.write_text(json.dumps(expected, indent=1) + "\n")
    return np.load(cache_file, mmap_mode="r")
