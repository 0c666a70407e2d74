"""The feature backbones of the image metrics, behind one front door: ``get_backbone(name, **kwargs)``.

- ``inception``: pytorch-fid's Inception-v3 pool3 features (inception_features.py), the FID network.
- ``lenet_mnist`` / ``lenet_fashion``: the shipped LeNet's penultimate features (lenet_features.py).
- ``<name>_logits`` (``inception_logits``, ``lenet_mnist_logits``...): the same network's class logits, for
  the Inception Score (``inception_logits``: the TF Inception's 1008 logits from the same weights file).
- ``random_conv`` / ``random_conv_logits``: a seeded random conv net, for wiring checks only
  (random_features.py; smoke budgets on generated data).
Every backbone returns a ``FeatureExtractor`` (extractor.py) whose ``cache_key`` names the features; the
families are not comparable. ``register_backbone`` adds another. A factory that needs a file says so with a
``check_weights(weights_path)`` attribute that raises FileNotFoundError; ``backbone_problem`` asks it before
any work (build.metric_problems).
"""

from __future__ import annotations

from collections.abc import Callable

from otgan_lab.metrics.extractor import FeatureExtractor
from otgan_lab.metrics.inception_features import (
    InceptionWeightsMissing,
    inception_backbone,
    inception_logits_backbone,
    inception_weights_path,
)
from otgan_lab.metrics.lenet_features import lenet_backbone, lenet_logits_backbone
from otgan_lab.metrics.random_features import random_conv_backbone

__all__ = [
    "FeatureExtractor",
    "InceptionWeightsMissing",
    "available_backbones",
    "backbone_problem",
    "get_backbone",
    "inception_weights_path",  # what `otlab` checks before training (build.py)
    "register_backbone",
]

_BACKBONES: dict[str, Callable[..., FeatureExtractor]] = {
    "lenet_mnist": lambda **kw: lenet_backbone("mnist", **kw),
    "lenet_fashion": lambda **kw: lenet_backbone("fashion_mnist", **kw),
    "inception": inception_backbone,
    "lenet_mnist_logits": lambda **kw: lenet_logits_backbone("mnist", **kw),
    "lenet_fashion_logits": lambda **kw: lenet_logits_backbone("fashion_mnist", **kw),
    "inception_logits": inception_logits_backbone,
    "random_conv": lambda **kw: random_conv_backbone(logits=False, **kw),
    "random_conv_logits": lambda **kw: random_conv_backbone(logits=True, **kw),
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


def backbone_problem(name: str, weights_path: str | None = None) -> str | None:
    """Why backbone `name` cannot be built here (unknown, or a weights file it needs is missing), else None.

    Cheap: asks the factory's ``check_weights`` (if it has one) without building the network."""
    if name not in _BACKBONES:
        return f"unknown backbone {name!r}; available: {available_backbones()}"
    check = getattr(_BACKBONES[name], "check_weights", None)
    if check is None:
        return None
    try:
        check(weights_path)
    except FileNotFoundError as exc:
        return str(exc)
    return None
