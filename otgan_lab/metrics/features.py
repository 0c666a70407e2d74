"""The feature backbones of the image metrics, behind one front door: ``get_backbone(name, **kwargs)``.

- ``inception``: pytorch-fid's Inception-v3 pool3 features (inception_features.py), the FID network.
- ``lenet_mnist`` / ``lenet_fashion``: the shipped LeNet's penultimate features (lenet_features.py).
Every backbone returns a ``FeatureExtractor`` (extractor.py) whose ``cache_key`` names the features; the
two families are not comparable. ``register_backbone`` adds another.
"""

from __future__ import annotations

from collections.abc import Callable

from otgan_lab.metrics.extractor import FeatureExtractor
from otgan_lab.metrics.inception_features import (
    InceptionWeightsMissing,
    inception_backbone,
    inception_weights_path,
)
from otgan_lab.metrics.lenet_features import lenet_backbone

__all__ = [
    "FeatureExtractor",
    "InceptionWeightsMissing",
    "available_backbones",
    "get_backbone",
    "inception_weights_path",  # what `otlab` checks before training (build.py)
    "register_backbone",
]

_BACKBONES: dict[str, Callable[..., FeatureExtractor]] = {
    "lenet_mnist": lambda **kw: lenet_backbone("mnist", **kw),
    "lenet_fashion": lambda **kw: lenet_backbone("fashion_mnist", **kw),
    "inception": inception_backbone,
}


def register_backbone(name: str, factory: Callable[..., FeatureExtractor]) -> None:
    if name in _BACKBONES:
        raise KeyError(f"backbone {name!r} already registered")
    _BACKBONES[name] = factory


def available_backbones() -> list[str]:
    return sorted(_BACKBONES)


def get_backbone(name: str, **kwargs) -> FeatureExtractor:
    """Build a backbone by name; kwargs go to its factory (batch_size, device, weights_path, ...)."""
    if name not in _BACKBONES:
        raise KeyError(f"unknown feature backbone {name!r}; available: {available_backbones()}")
    return _BACKBONES[name](**kwargs)
