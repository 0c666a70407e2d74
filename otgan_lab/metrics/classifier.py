"""Metrics from a pretrained classifier on labelled data (MNIST / Fashion-MNIST / stacked MNIST).

- Class histogram of generated samples, number of classes covered and KL(histogram || uniform): the mode
  counting protocol of Metz et al., "Unrolled generative adversarial networks", ICLR 2017, and
  Srivastava et al., "VEEGAN", NeurIPS 2017; Lin et al., "PacGAN", NeurIPS 2018 (stacked MNIST, 1000 modes).
- Classifier Inception Score exp(E_x KL(p(y|x) || p(y))): Salimans et al., "Improved techniques for
  training GANs", NeurIPS 2016, with the MNIST LeNet in place of Inception (as e.g. in Lucic et al. 2018's
  MNIST experiments). Max value = number of classes; computed on ``n_splits`` contiguous splits,
  reported as mean and std (ddof=0), like the original code.

**Coverage rule.** A class (mode) counts as covered when at least ``min_count`` generated samples are
assigned to it (default 1, as in the stacked-MNIST papers, which used 26,000 samples for 1000 modes; pass a
larger ``min_count`` to ignore stray misclassifications). Always report ``min_count`` and the sample count.

Histogram, coverage and KL(p || uniform) (in nats) are metrics/histogram.py's, shared with the 2-D metrics.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otgan_lab.metrics.histogram import class_histogram, classes_covered, kl_to_uniform
from otgan_lab.metrics.lenet_features import prepare_for_lenet, pretrained_lenet
from otgan_lab.metrics.spec import MetricSpec, declares

STACKED_MNIST_MODES = 1000


@torch.no_grad()
def predict_logits(
    images: Tensor,
    classifier: nn.Module | None = None,
    dataset: str = "mnist",
    batch_size: int = 1000,
    device: str | torch.device | None = None,
) -> Tensor:
    """Logits (N, K) of grayscale images (N, 1, H, W) in [-1, 1] (or uint8), fp32, eval mode, on CPU.

    ``classifier`` defaults to the committed LeNet for ``dataset``; inputs go through the same
    preprocessing as the LeNet feature backbone (resized to 28×28 when needed).
    """
    if classifier is None:
        classifier, _ = pretrained_lenet(dataset)
    if device is None:
        first_param = next(classifier.parameters(), None)
        device = first_param.device if first_param is not None else torch.device("cpu")
    device = torch.device(device)
    classifier = classifier.to(device).eval()
    logits = []
    with torch.autocast(device_type=device.type, enabled=False):  # classifier metrics are fp32
        for start in range(0, images.shape[0], batch_size):
            x = prepare_for_lenet(images[start : start + batch_size].to(device))
            logits.append(classifier(x).float().cpu())
    return torch.cat(logits) if logits else torch.empty(0, 10)


def classifier_inception_score(logits: Tensor, n_splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) per split (p(y) = split mean of p(y|x)); returns (mean, std)."""
    log_p = F.log_softmax(torch.as_tensor(logits, dtype=torch.float64), dim=1)
    scores = []
    for part in torch.tensor_split(log_p, n_splits):
        log_marginal = torch.logsumexp(part, dim=0) - math.log(part.shape[0])  # log mean_x p(y|x)
        kl = (part.exp() * (part - log_marginal)).sum(1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))


@declares({
    "class_histogram": MetricSpec("class histogram", None),
    "classes_covered": MetricSpec("classes covered", "max"),
    "n_classes": MetricSpec("classes", None),
    "coverage_min_count": MetricSpec("coverage min count", None),
    "kl_to_uniform": MetricSpec("KL(class histogram || uniform)", "min"),
    "classifier_is": MetricSpec("classifier IS", "max"),
    "classifier_is_std": MetricSpec("classifier IS std", None),
    "n_samples": MetricSpec("samples", None),
})
def classifier_metrics(
    logits: Tensor, min_count: int = 1, n_splits: int = 10
) -> dict[str, float | int | list[int]]:
    """Histogram, classes covered (>= min_count samples), KL to uniform and classifier IS from logits."""
    counts = class_histogram(logits, logits.shape[1])
    is_mean, is_std = classifier_inception_score(logits, n_splits)
    return {
        "class_histogram": counts.tolist(),
        "classes_covered": classes_covered(counts, min_count),
        "n_classes": int(logits.shape[1]),
        "coverage_min_count": min_count,
        "kl_to_uniform": kl_to_uniform(counts),
        "classifier_is": is_mean,
        "classifier_is_std": is_std,
        "n_samples": int(logits.shape[0]),
    }


# ------------------------------------------------------------------------------------------ stacked MNIST
def stacked_mnist_mode_ids(
    images: Tensor, classifier: nn.Module | None = None, batch_size: int = 1000
) -> Tensor:
    """Mode id 100·d0 + 10·d1 + d2 in 0..999 of 3-channel images whose channel c holds digit d_c, (N,).

    Each channel is classified independently by the MNIST LeNet (channels as a batch of grayscale images).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"stacked MNIST images must be (N, 3, H, W), got {tuple(images.shape)}")
    n, _, h, w = images.shape
    logits = predict_logits(images.reshape(n * 3, 1, h, w), classifier, "mnist", batch_size)
    digits = logits.argmax(1).reshape(n, 3)
    return digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]


@declares({
    "modes_covered": MetricSpec("modes covered", "max"),
    "n_modes": MetricSpec("modes", None),
    "coverage_min_count": MetricSpec("coverage min count", None),
    "kl_to_uniform": MetricSpec("KL(mode histogram || uniform)", "min"),
    "n_samples": MetricSpec("samples", None),
})
def stacked_mnist_metrics(mode_ids: Tensor, min_count: int = 1) -> dict[str, float | int]:
    """Modes covered out of 1000 (>= min_count samples) and KL(mode histogram || uniform over 1000)."""
    counts = class_histogram(mode_ids, STACKED_MNIST_MODES)
    return {
        "modes_covered": classes_covered(counts, min_count),
        "n_modes": STACKED_MNIST_MODES,
        "coverage_min_count": min_count,
        "kl_to_uniform": kl_to_uniform(counts),
        "n_samples": int(torch.as_tensor(mode_ids).numel()),
    }
