"""The ``lenet_mnist`` / ``lenet_fashion`` backbones: penultimate (128-d) activations of the small LeNet
classifier shipped in ``otgan_lab/assets`` (LeCun et al. 1998).

On MNIST-like data a classifier-feature FID is more meaningful than Inception-FID (METHODS.md §1); the two
are **not comparable**, which the extractor's ``name`` and ``weights_hash`` record. The classifier metrics
read the same network and preprocessing.
"""

from __future__ import annotations

import hashlib
import io
from importlib import resources

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otgan_lab.metrics.extractor import HASH_PREFIX_LEN, FeatureExtractor
from otgan_lab.nets.lenet import LeNet

LENET_ASSETS = {"mnist": "lenet_mnist.pt", "fashion_mnist": "lenet_fashion_mnist.pt"}


def _to_unit_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] or float [-1, 1] -> float32 [-1, 1]."""
    if images.dtype == torch.uint8:
        return images.float() / 127.5 - 1.0
    return images.float()


def pretrained_lenet(dataset: str = "mnist", device: str | torch.device = "cpu") -> tuple[LeNet, str]:
    """The committed LeNet for ``dataset`` ('mnist' or 'fashion_mnist') in eval mode, and its file sha256."""
    if dataset not in LENET_ASSETS:
        raise KeyError(f"no LeNet weights for {dataset!r}; available: {sorted(LENET_ASSETS)}")
    resource = resources.files("otgan_lab") / "assets" / LENET_ASSETS[dataset]
    data = resource.read_bytes()
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    model = LeNet()
    model.load_state_dict(state)
    return model.to(device).eval().requires_grad_(False), hashlib.sha256(data).hexdigest()


class _LeNetFeatures(nn.Module):
    def __init__(self, lenet: LeNet) -> None:
        super().__init__()
        self.lenet = lenet

    def forward(self, x: Tensor) -> Tensor:
        return self.lenet.features(x)


def prepare_for_lenet(images: Tensor) -> Tensor:
    """float [-1, 1] (or uint8) (N, 1, H, W) -> (N, 1, 28, 28); resizes e.g. 32×32 MNIST variants back."""
    x = _to_unit_float(images)
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"LeNet features need grayscale (N, 1, H, W) images, got {tuple(x.shape)}")
    if x.shape[-2:] != (28, 28):
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False, antialias=True)
    return x


LENET_PREPROCESSING = "float[-1,1] 1x28x28 (uint8 input: x/127.5-1; other sizes: bilinear antialias resize)"


def lenet_backbone(
    dataset: str, batch_size: int = 1000, device: str | torch.device = "cpu"
) -> FeatureExtractor:
    lenet, digest = pretrained_lenet(dataset)
    short = "lenet_fashion" if dataset == "fashion_mnist" else f"lenet_{dataset}"
    return FeatureExtractor(
        name=short,
        network=_LeNetFeatures(lenet),
        dim=lenet.feature_dim,
        weights_hash=digest[:HASH_PREFIX_LEN],
        preprocessing=LENET_PREPROCESSING,
        prepare=prepare_for_lenet,
        batch_size=batch_size,
        device=device,
    )


def lenet_logits_backbone(
    dataset: str, batch_size: int = 1000, device: str | torch.device = "cpu"
) -> FeatureExtractor:
    """The same LeNet's 10 class logits (the Inception Score suite on MNIST-like data: the classifier IS)."""
    lenet, digest = pretrained_lenet(dataset)
    short = "lenet_fashion" if dataset == "fashion_mnist" else f"lenet_{dataset}"
    return FeatureExtractor(
        name=f"{short}_logits",
        network=lenet,
        dim=10,
        weights_hash=digest[:HASH_PREFIX_LEN],
        preprocessing=LENET_PREPROCESSING,
        prepare=prepare_for_lenet,
        batch_size=batch_size,
        device=device,
    )
