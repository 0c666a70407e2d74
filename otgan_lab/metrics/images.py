"""The image-metrics front door: FID (pluggable backbone), KID, precision/recall, density/coverage and
classifier metrics of generated images against a dataset's reference split.

Reference features are computed once and cached on disk, keyed by everything that changes them: dataset,
split, class filter, image count, backbone name, weights hash, preprocessing and the otgan_lab version. The
same key goes into each result's protocol so `otlab table` only compares like with like.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from otgan_lab import __version__
from otgan_lab.metrics.classifier import (
    classifier_inception_score,
    classifier_metrics,
    predict_logits,
    stacked_mnist_metrics,
    stacked_mnist_mode_ids,
)
from otgan_lab.metrics.features import FeatureExtractor, get_backbone
from otgan_lab.metrics.frechet import (
    frechet_distance,
    gaussian_stats,
    load_gaussian_stats,
    save_gaussian_stats,
)
from otgan_lab.metrics.kid import kid
from otgan_lab.metrics.lenet_features import LENET_ASSETS
from otgan_lab.metrics.prdc import prdc
from otgan_lab.metrics.spec import MetricSpec, declares, specs_of
from otgan_lab.paths import cache_root

DOMAIN_BACKBONES = {"mnist": "lenet_mnist", "fashion_mnist": "lenet_fashion"}
REFERENCE_CHUNK = 5000  # reference images moved to the feature net at a time
_EXTRACTORS: dict[tuple[str, str], FeatureExtractor] = {}
_REFERENCE: dict[str, tuple[np.ndarray, np.ndarray, torch.Tensor]] = {}


def resolve_backbone(name: str, dataset: str) -> str:
    if name != "auto":
        return name
    return DOMAIN_BACKBONES.get(dataset, "inception")


def extractor(name: str, device: torch.device, **kw) -> FeatureExtractor:
    key = (name, str(device))
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = get_backbone(name, device=device, **kw)
    return _EXTRACTORS[key]


def reference_images(data: Any, split: str):
    """The dataset's images of `split` (uint8 on the data's device, or host-streamed), class filter kept."""
    from otgan_lab.data.splits import load_split

    return load_split(data, split).data


def reference_key(data: Any, split: str, n: int, fx: FeatureExtractor) -> str:
    classes = data.meta.get("classes")
    # which images, beyond the dataset's name: a folder, a generated stand-in... (absent for the named files)
    source = f"|reference={data.meta['reference']}" if data.meta.get("reference") else ""
    return f"{data.name}|{split}|classes={classes}|n={n}{source}|{fx.cache_key}|otgan_lab={__version__}"


def reference_statistics(data: Any, fx: FeatureExtractor, split: str = "train", n: int | None = None,
                         n_features: int = 10_000, cache_dir: str | Path | None = None):
    """(mu, sigma, features[:n_features]) of the reference images; from memory, disk cache or computed."""
    images = reference_images(data, split)
    n = len(images) if n is None else min(int(n), len(images))
    key = reference_key(data, split, n, fx)
    if key in _REFERENCE:
        return (*_REFERENCE[key], key)
    folder = Path(cache_dir or cache_root("OTLAB_CACHE", "stats"))
    path = folder / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    feats_path = path.with_suffix(".features.npy")
    cached = load_gaussian_stats(path, key)
    if cached is not None and feats_path.is_file():
        mu, sigma = cached
        features = torch.from_numpy(np.load(feats_path))
    else:
        # uint8 accepted by the backbones; read in chunks (a host-streamed dataset is never loaded whole)
        step = REFERENCE_CHUNK
        all_features = fx(images[start:min(n, start + step)] for start in range(0, n, step))
        mu, sigma = gaussian_stats(all_features.cpu().numpy())
        features = all_features[:n_features].cpu()
        save_gaussian_stats(path, mu, sigma, key, n)
        np.save(feats_path, features.numpy())
    _REFERENCE[key] = (mu, sigma, features)
    return mu, sigma, features, key


@declares({
    "fid": MetricSpec("FID", "min"),
    "kid": MetricSpec("KID", "min"),
    "kid_std": MetricSpec("KID std over subsets", None),
    **specs_of(prdc),
})
def image_metrics(fake: torch.Tensor, data: Any, *, backbone: str = "auto", reference_split: str = "train",
                  n_reference: int | None = None, kid_subsets: int = 50, kid_subset_size: int = 1000,
                  prdc_k: int = 5, prdc_samples: int = 5000, batch_size: int = 500,
                  weights_path: str | None = None, cache_dir: str | None = None) -> dict[str, float]:
    """FID, KID and PRDC of `fake` (N, C, H, W) in [-1, 1] against the reference split."""
    name = resolve_backbone(backbone, data.name)
    kw = {"batch_size": batch_size}
    if weights_path and name == "inception":
        kw["weights_path"] = weights_path
    fx = extractor(name, fake.device, **kw)
    mu_r, sigma_r, feats_r, _ = reference_statistics(data, fx, reference_split, n_reference,
                                                     cache_dir=cache_dir)
    feats_f = fx(fake.float())
    finite = torch.isfinite(feats_f).all()
    if not finite:
        return {"fid": float("inf")}
    mu_f, sigma_f = gaussian_stats(feats_f.cpu().numpy())
    out = {"fid": float(frechet_distance(mu_f, sigma_f, mu_r, sigma_r))}
    if kid_subsets:
        out["kid"], out["kid_std"] = kid(feats_f.cpu(), feats_r, n_subsets=kid_subsets,
                                         subset_size=kid_subset_size)
    if prdc_k:
        m = min(prdc_samples, len(feats_f), len(feats_r))
        out.update(prdc(feats_r[:m], feats_f[:m].cpu(), k=prdc_k))
    return out


def image_protocol(data: Any, *, backbone: str = "auto", reference_split: str = "train",
                   n_reference: int | None = None, **_) -> dict[str, Any]:
    name = resolve_backbone(backbone, data.name)
    n = n_reference or "all"
    protocol = {"backbone": name, "reference_split": reference_split, "n_reference": n,
                "classes": data.meta.get("classes")}
    if data.meta.get("reference"):  # a folder or generated stand-in: not the dataset's named files
        protocol["reference"] = data.meta["reference"]
    return protocol


def resolve_logits_backbone(name: str, dataset: str) -> str:
    """The Inception Score's classifier: `auto` -> the dataset's feature backbone; a family name (inception,
    lenet_mnist, random_conv) -> its `_logits` network."""
    base = resolve_backbone(name, dataset)
    return base if base.endswith("_logits") else f"{base}_logits"


@declares({
    "is": MetricSpec("Inception Score", "max"),
    "is_std": MetricSpec("Inception Score std over splits", None),
})
def inception_score(fake: torch.Tensor, data: Any, *, backbone: str = "auto", n_splits: int = 10,
                    batch_size: int = 100, weights_path: str | None = None) -> dict[str, float]:
    """Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) on `n_splits` consecutive splits of
    `fake`, mean and std over splits. p(y|x) = softmax of the backbone's logits: for RGB data the TF
    Inception's 1008 logits from pytorch-fid's weights file, without the bias, as the original code."""
    name = resolve_logits_backbone(backbone, data.name)
    kw: dict[str, Any] = {"batch_size": batch_size}
    if weights_path and name == "inception_logits":
        kw["weights_path"] = weights_path
    logits = extractor(name, fake.device, **kw)(fake.float())
    mean, std = classifier_inception_score(logits.cpu(), n_splits)
    return {"is": mean, "is_std": std}


def inception_score_protocol(data: Any, *, backbone: str = "auto", n_splits: int = 10, **_) -> dict[str, Any]:
    return {"backbone": resolve_logits_backbone(backbone, data.name), "n_splits": n_splits}


# the suite keeps the numbers only (no histogram list)
@declares({k: v for k, v in specs_of(classifier_metrics).items() if k != "class_histogram"})
def class_metrics(fake: torch.Tensor, data: Any, *, min_count: int = 1,
                  n_splits: int = 10) -> dict[str, float]:
    """Classes covered, KL(class histogram || uniform), classifier IS from the dataset's LeNet."""
    if data.name not in LENET_ASSETS:
        raise ValueError(f"no classifier for dataset {data.name!r}; classifier metrics need one of "
                         f"{sorted(LENET_ASSETS)}")
    logits = predict_logits(fake.float(), dataset=data.name, device=fake.device)
    stats = classifier_metrics(logits, min_count=min_count, n_splits=n_splits)
    return {k: float(v) for k, v in stats.items() if isinstance(v, (int, float))}


@declares(specs_of(stacked_mnist_metrics))
def stacked_modes(fake: torch.Tensor, data: Any, *, min_count: int = 1) -> dict[str, float]:
    """Stacked MNIST: modes covered out of 1000 and KL to uniform, each channel read by the MNIST LeNet."""
    stats = stacked_mnist_metrics(stacked_mnist_mode_ids(fake.float()), min_count=min_count)
    return {k: float(v) for k, v in stats.items()}
