"""Benchmark the FID pipeline (Heusel et al., NeurIPS 2017) with the LeNet backbone, optionally Inception.

    python scripts/bench_fid.py --root $OTLAB_DATA                 # CPU: LeNet-FID timings
    python scripts/bench_fid.py --root $OTLAB_DATA --device cuda   # plus Inception images/s in fp32

Times (1) the first computation of the reference statistics of the 60,000 MNIST training images
(features + mean/covariance + writing the cache; target < 60 s on a 2-core CPU) and (2) the LeNet-FID of
10,000 generated-like samples against the cached statistics (load cache + features + statistics +
Fréchet distance; target < 10 s). "Generated-like" = test images with Gaussian pixel noise, clamped.
With ``--device cuda`` it also reports pytorch-fid Inception pool3 throughput in fp32 (real weights when
found, otherwise random weights with ``--allow-random-weights``: same network, same cost).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import torchvision

from otgan_lab.metrics.features import InceptionWeightsMissing, get_backbone
from otgan_lab.metrics.frechet import (
    frechet_distance,
    gaussian_stats,
    load_gaussian_stats,
    save_gaussian_stats,
)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_lenet(root: str, device: torch.device, n_fake: int, cache: Path) -> None:
    train = torchvision.datasets.MNIST(root=root, train=True, download=False).data.unsqueeze(1)
    test = torchvision.datasets.MNIST(root=root, train=False, download=False).data.unsqueeze(1)
    extractor = get_backbone("lenet_mnist", device=device)
    key = f"{extractor.cache_key}|mnist-train-{len(train)}"
    cache.unlink(missing_ok=True)

    synchronize(device)
    started = time.perf_counter()
    mu_ref, sigma_ref = gaussian_stats(extractor(train))  # uint8 images go in as they are stored
    save_gaussian_stats(cache, mu_ref, sigma_ref, key=key, n=len(train))
    synchronize(device)
    reference_s = time.perf_counter() - started
    print(f"reference stats, {len(train)} images (first computation): {reference_s:.2f} s  [target < 60 s]")

    gen = torch.Generator().manual_seed(0)
    picks = torch.randint(0, len(test), (n_fake,), generator=gen)
    fake = (test[picks].float() / 127.5 - 1 + 0.2 * torch.randn(n_fake, 1, 28, 28, generator=gen)).clamp(
        -1, 1
    )

    synchronize(device)
    started = time.perf_counter()
    cached = load_gaussian_stats(cache, key=key)
    assert cached is not None, "cache miss right after writing it"
    fid = frechet_distance(*gaussian_stats(extractor(fake)), *cached)
    fid_s = time.perf_counter() - started
    print(f"LeNet-FID of {n_fake} samples vs cached stats: {fid_s:.2f} s  [target < 10 s]  (FID {fid:.3f})")


def bench_inception(device: torch.device, allow_random: bool, n_images: int, batch_size: int) -> None:
    try:
        extractor = get_backbone(
            "inception", device=device, batch_size=batch_size, allow_random_weights=allow_random
        )
    except InceptionWeightsMissing as error:
        print(f"inception: skipped ({error})")
        return
    images = torch.rand(n_images, 1, 28, 28, device=device) * 2 - 1
    extractor(images[:batch_size])  # warm-up: cuDNN autotuning, lazy allocations
    synchronize(device)
    started = time.perf_counter()
    features = extractor(images)
    synchronize(device)
    elapsed = time.perf_counter() - started
    print(
        f"inception pool3 fp32 ({extractor.weights_hash}), batch {batch_size}: "
        f"{n_images / elapsed:.0f} images/s on {device} ({tuple(features.shape)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.environ.get("OTLAB_DATA"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-fake", type=int, default=10_000)
    parser.add_argument("--cache", type=Path, default=None, help="reference-stats file (default: temp dir)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--allow-random-weights", action="store_true", help="inception throughput only")
    parser.add_argument("--inception-images", type=int, default=2000)
    parser.add_argument("--inception-batch", type=int, default=200)
    args = parser.parse_args()
    if args.root is None:
        parser.error("--root not given and OTLAB_DATA is not set")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")

    with tempfile.TemporaryDirectory() as tmp:
        bench_lenet(args.root, device, args.n_fake, args.cache or Path(tmp) / "mnist_train_lenet.npz")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        bench_inception(device, args.allow_random_weights, args.inception_images, args.inception_batch)


if __name__ == "__main__":
    main()
