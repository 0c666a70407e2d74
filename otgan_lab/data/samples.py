"""Generated samples from anywhere, read for scoring (`otlab eval samples=PATH real=...`).

PATH is one of:
- a folder of image files (png, jpg... recursively, sorted): grayscale files give 1 channel, colour files 3
  (RGBA and palette images are converted to RGB); all must have one size (else `resize=true`);
- an `.npz` (pytorch-fid / torch-fidelity / guided-diffusion style): the array `arr_0`, else `images`, else
  the only array; uint8, NHWC (the convention) or NCHW, or NHW for grayscale;
- an `.npy` with the same array;
- a `.pt` / `.pth`: a tensor (or a dict holding one under `samples`/`images`), uint8 [0, 255] or float in
  [-1, 1] (what `otlab sample` writes), NCHW (NHWC accepted when unambiguous).

`match_reference` compares with the reference dataset's (C, H, W): a colour image whose three channels are
equal is read as grayscale (torchvision's `save_image` writes gray images as RGB PNGs); any other mismatch is
refused with a message naming both shapes, unless `resize=true` (bilinear antialiased resize; RGB -> gray by
ITU-R 601 luma as PIL's convert('L'); gray -> RGB by repetition), which is recorded with the numbers.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from otgan_lab.data.cache import IMAGE_EXTENSIONS, list_images
from otgan_lab.errors import DataError

ARRAY_KEYS = ("arr_0", "images", "samples")
GRAY_MODES = ("1", "L", "I", "I;16", "F")


class MixedSizesError(DataError):
    """A folder of samples holds images of several sizes (read again with `size` to resize each)."""


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode == "LA":
                image = image.convert("L")
            gray = image.mode in GRAY_MODES
            if image.mode not in ("L", "RGB"):
                image = image.convert("L" if gray else "RGB")
            array = np.array(image, dtype=np.uint8)  # a writable copy
    except Exception as exc:
        raise DataError(f"{path} is not a readable image: {exc.__class__.__name__}: {exc}") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _read_folder(folder: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    files = list_images(folder)
    if not files:
        raise DataError(f"samples={folder} holds no image files (looked recursively for "
                        f"{', '.join(IMAGE_EXTENSIONS)})")
    with ThreadPoolExecutor(max_workers=8) as pool:
        arrays = list(pool.map(_read_image, files))
    if len({a.shape[0] for a in arrays}) > 1:  # gray and colour files mixed: gray repeated to RGB (lossless)
        arrays = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in arrays]
    sizes = sorted({a.shape[1:] for a in arrays})
    if len(sizes) > 1 and size is not None:  # resize=true: each to the reference's size, then as one array
        resized = [F.interpolate(torch.from_numpy(a)[None].float(), size=size, mode="bilinear",
                                 align_corners=False, antialias=True) for a in arrays]
        return torch.cat(resized).round_().clamp_(0, 255).to(torch.uint8)
    if len(sizes) > 1:
        raise MixedSizesError(f"samples={folder}: the images have {len(sizes)} different sizes "
                              f"({sizes[:4]}...); give one size, or resize=true to resize each to the "
                              "reference")
    return torch.from_numpy(np.stack(arrays))


def _from_array(array: Any, path: Path, allow_float: bool) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(array)) if not isinstance(array, torch.Tensor) else array.detach().cpu()
    if x.ndim == 3:
        x = x.unsqueeze(1)  # NHW: grayscale
    if x.ndim != 4 or x.shape[0] == 0:
        raise DataError(f"samples={path}: an array of shape {tuple(x.shape)}; expected N > 0 images, NHWC "
                        "or NCHW")
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)  # NHWC, the npz convention
    elif x.shape[1] not in (1, 3):
        raise DataError(f"samples={path}: shape {tuple(x.shape)} has no 1- or 3-channel axis (NHWC or NCHW)")
    if x.dtype == torch.uint8:
        return x.contiguous()
    if not allow_float or not x.is_floating_point():
        raise DataError(f"samples={path}: {x.dtype} values; expected uint8 in [0, 255]"
                        + (" or float in [-1, 1]" if allow_float else " (pytorch-fid / torch-fidelity npz)"))
    low, high = float(x.min()), float(x.max())
    if low < -1.001 or high > 1.001 or not np.isfinite([low, high]).all():
        raise DataError(f"samples={path}: float values span [{low:.4g}, {high:.4g}]; expected otlab's data "
                        "space [-1, 1] (as `otlab sample` writes); save uint8 [0, 255] or rescale")
    return x.float().clamp(-1, 1).contiguous()


def read_samples(path: str | Path, size: tuple[int, int] | None = None) -> tuple[torch.Tensor, str]:
    """(images (N, C, H, W) on the CPU: uint8, or float in [-1, 1] from a .pt; a word for the format).
    `size`: resize a folder's images of several sizes to this (H, W) (resize=true)."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _read_folder(path, size), "image folder"
    if not path.is_file():
        raise DataError(f"samples={path}: no such file or folder")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.keys())
                key = next((k for k in ARRAY_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise DataError(f"samples={path}: arrays {keys}; expected one of {list(ARRAY_KEYS)}")
                return _from_array(archive[key], path, allow_float=False), f"npz ({key})"
        if suffix == ".npy":
            return _from_array(np.load(path, allow_pickle=False), path, allow_float=False), "npy"
        if suffix in (".pt", ".pth"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict):
                obj = next((obj[k] for k in ("samples", "images") if k in obj), None)
            if not isinstance(obj, torch.Tensor):
                raise DataError(f"samples={path}: holds no tensor (or a dict with 'samples' / 'images')")
            return _from_array(obj, path, allow_float=True), "torch tensor"
    except DataError:
        raise
    except Exception as exc:  # a damaged archive, a pickle we refuse...
        raise DataError(f"samples={path} is unreadable: {exc.__class__.__name__}: {exc}") from None
    raise DataError(f"samples={path}: a folder of images, an .npz, .npy or .pt file is expected")


def _to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float [-1, 1] by the very ops of DeviceDataset.to_data_space (bit-identical to real data)."""
    return images.float().mul_(2.0 / 255.0).sub_(1.0) if images.dtype == torch.uint8 else images.float()


def match_reference(images: torch.Tensor, shape: tuple[int, int, int], resize: bool,
                    path: str | Path) -> tuple[torch.Tensor, str | None]:
    """`images` in the reference's (C, H, W) as float [-1, 1], and what was changed (None: nothing that
    alters pixel values). A mismatch without `resize` is a DataError naming both shapes."""
    c, h, w = (int(s) for s in shape)
    have = tuple(images.shape[1:])
    if have[0] == 3 and c == 1 and torch.equal(images[:, :1].expand_as(images), images):
        images, have = images[:, :1], (1, *have[1:])  # gray saved as RGB: lossless
    if have == (c, h, w):
        return _to_float(images), None
    if not resize:
        raise DataError(f"samples={path} are {len(images)} images of shape {list(have)}, the reference data "
                        f"is {[c, h, w]}: refused. Give samples of the reference's shape, or add resize=true "
                        "(bilinear resize; RGB <-> gray) and the numbers are recorded as resized.")
    x = _to_float(images)
    if have[0] == 3 and c == 1:
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif have[0] == 1 and c == 3:
        x = x.expand(-1, 3, -1, -1)
    if have[1:] != (h, w):
        x = torch.cat([F.interpolate(x[i:i + 1000], size=(h, w), mode="bilinear", align_corners=False,
                                     antialias=True) for i in range(0, len(x), 1000)])
    return x.clamp_(-1, 1), f"resized {list(have)} -> {[c, h, w]} (bilinear antialiased; RGB -> gray: luma)"
