"""Image metrics against independent oracles: pytorch-fid's functions and file pipeline, closed forms for
Gaussians, brute-force numpy/scipy definitions, and hand-computed classifier quantities."""

from __future__ import annotations

import hashlib
import math
import os
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from scipy.spatial.distance import cdist

from otgan_lab.metrics.classifier import (
    classifier_inception_score,
    classifier_metrics,
    predict_logits,
    stacked_mnist_metrics,
    stacked_mnist_mode_ids,
)
from otgan_lab.metrics.features import InceptionWeightsMissing, available_backbones, get_backbone
from otgan_lab.metrics.frechet import (
    fid_from_features,
    frechet_distance,
    gaussian_stats,
    load_gaussian_stats,
    save_gaussian_stats,
)
from otgan_lab.metrics.histogram import class_histogram, classes_covered, kl_to_uniform
from otgan_lab.metrics.inception_features import FID_WEIGHTS_FILE
from otgan_lab.metrics.kid import kid, mmd2_unbiased
from otgan_lab.metrics.lenet_features import LENET_ASSETS
from otgan_lab.metrics.prdc import knn_radii, prdc
from otgan_lab.nets.lenet import LeNet


def random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, 2 * d))
    return a @ a.T / (2 * d) + 0.1 * np.eye(d)


# ------------------------------------------------------------------------------------------- Fréchet
@pytest.mark.parametrize("d", [2, 5, 64])  # d=1: scipy 1.17's sqrtm(disp=False) returns no tuple for 1×1
@pytest.mark.parametrize("seed", [0, 1])
def test_frechet_distance_matches_pytorch_fid(d: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    expected = calculate_frechet_distance(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_matches_pytorch_fid_on_sample_stats() -> None:
    # Sample covariances of correlated features, like real FID inputs (d=32 from 500 samples).
    rng = np.random.default_rng(3)
    mix = rng.standard_normal((32, 32))
    f1 = rng.standard_normal((500, 32)) @ mix
    f2 = rng.standard_normal((400, 32)) @ mix * 1.3 + 0.2
    mu1, s1 = np.mean(f1, 0), np.cov(f1, rowvar=False)
    mu2, s2 = np.mean(f2, 0), np.cov(f2, rowvar=False)
    assert fid_from_features(f1, f2) == pytest.approx(calculate_frechet_distance(mu1, s1, mu2, s2), rel=1e-6)


def test_frechet_closed_form_1d() -> None:
    # W2² between N(m1, s1²) and N(m2, s2²) is (m1 - m2)² + (s1 - s2)².
    got = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-0.5]), np.array([[0.25]]))
    assert got == pytest.approx(1.5**2 + (2.0 - 0.5) ** 2, rel=1e-12)


def test_frechet_closed_form_commuting_covariances() -> None:
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T (non-diagonal, commuting): trace term = Σ (√a - √b)².
    rng = np.random.default_rng(4)
    d = 20
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-8)


def test_gaussian_stats_match_numpy_with_chunking() -> None:
    rng = np.random.default_rng(5)
    f = (rng.standard_normal((1003, 7)) * 3 + 100).astype(np.float32)  # large mean: tests centring
    mu, sigma = gaussian_stats(torch.from_numpy(f), chunk_size=100)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, f.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(f.astype(np.float64), rowvar=False), rtol=1e-9, atol=1e-12)


def test_fid_self_zero_shift_symmetric() -> None:
    rng = np.random.default_rng(6)
    f = rng.standard_normal((2000, 16)) @ rng.standard_normal((16, 16))
    g = rng.standard_normal((1500, 16)) * 0.7
    mu, sigma = gaussian_stats(f)
    assert abs(fid_from_features(f, f)) < 1e-8 * np.trace(sigma)
    # A pure translation leaves the covariance unchanged: FID = ||shift||² exactly.
    shift = np.linspace(-1.0, 1.0, 16)
    assert fid_from_features(f, f + shift) == pytest.approx(float(shift @ shift), rel=1e-6)
    assert fid_from_features(f, g) > 1.0
    assert fid_from_features(f, g) == pytest.approx(fid_from_features(g, f), rel=1e-9)


def test_stats_cache_roundtrip_and_key(tmp_path: Path) -> None:
    mu, sigma = np.arange(3.0), np.eye(3)
    save_gaussian_stats(tmp_path / "ref.npz", mu, sigma, key="lenet_mnist|abc|train", n=10)
    loaded = load_gaussian_stats(tmp_path / "ref.npz", key="lenet_mnist|abc|train")
    assert loaded is not None
    np.testing.assert_array_equal(loaded[0], mu)
    np.testing.assert_array_equal(loaded[1], sigma)
    assert load_gaussian_stats(tmp_path / "ref.npz", key="inception|6726825d|train") is None
    assert load_gaussian_stats(tmp_path / "absent.npz") is None


# ------------------------------------------------------------------------------------------------ KID
def test_mmd2_unbiased_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((12, 4)), rng.standard_normal((9, 4)) + 0.3

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (a @ b / 4 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(12) for j in range(12) if i != j) / (12 * 11)
    yy = sum(k(y[i], y[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    xy = sum(k(x[i], y[j]) for i in range(12) for j in range(9)) / (12 * 9)
    got = float(mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y)))
    assert got == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_kid_unbiased_and_detects_shift() -> None:
    gen = torch.Generator().manual_seed(8)
    unbiased, biased = [], []
    for _ in range(400):  # independent same-distribution draws: the unbiased estimate averages to 0
        x, y = torch.randn(50, 8, generator=gen).double(), torch.randn(50, 8, generator=gen).double()
        unbiased.append(kid(x, y, n_subsets=1)[0])
        kernel = [((a @ b.T) / 8 + 1) ** 3 for a, b in ((x, x), (y, y), (x, y))]
        biased.append(float(kernel[0].mean() + kernel[1].mean() - 2 * kernel[2].mean()))  # V-statistic
    for values, should_be_zero in ((torch.tensor(unbiased), True), (torch.tensor(biased), False)):
        standard_error = values.std() / math.sqrt(len(values))
        assert (abs(values.mean()) < 3 * standard_error) == should_be_zero  # biased one fails: test has power

    x, y = torch.randn(500, 8, generator=gen), torch.randn(500, 8, generator=gen) + 0.5
    mean, std = kid(x, y, n_subsets=20, subset_size=200)
    assert mean > 0 and mean > 3 * std
    same_mean, _ = kid(x, torch.randn(500, 8, generator=gen), n_subsets=20, subset_size=200)
    assert same_mean < mean / 10


# ------------------------------------------------------------------------------------------------ PRDC
def brute_force_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Definitions of Kynkäänniemi et al. and Naeem et al., written directly with scipy distances."""
    d_rr, d_ff, d_rf = cdist(real, real), cdist(fake, fake), cdist(real, fake)
    r_real = np.sort(d_rr, axis=1)[:, k]  # column 0 is the point itself
    r_fake = np.sort(d_ff, axis=1)[:, k]
    inside_real_ball = d_rf <= r_real[:, None]  # (real i, fake j): fake j in ball of real i
    return {
        "precision": inside_real_ball.any(0).mean(),
        "recall": (d_rf <= r_fake[None, :]).any(1).mean(),
        "density": inside_real_ball.sum() / (k * len(fake)),
        "coverage": (d_rf.min(1) <= r_real).mean(),
    }


def test_prdc_matches_brute_force_with_chunking() -> None:
    rng = np.random.default_rng(9)
    real = rng.standard_normal((300, 3))
    fake = rng.standard_normal((250, 3)) * 1.5 + 0.5
    expected = brute_force_prdc(real, fake, k=5)
    got = prdc(real, fake, k=5, chunk_size=37)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name
    np.testing.assert_allclose(knn_radii(real, 5, 64).numpy(), np.sort(cdist(real, real), 1)[:, 5], rtol=1e-9)


def test_prdc_identical_disjoint_and_same_distribution() -> None:
    rng = np.random.default_rng(10)
    real = rng.standard_normal((1000, 4))
    k = 5
    same = prdc(real, real.copy(), k=k)
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    # Each real ball holds its centre plus its k neighbours: density = (k + 1) / k exactly (no ties).
    assert same["density"] == pytest.approx((k + 1) / k, abs=2e-3)
    far = prdc(real, rng.standard_normal((1000, 4)) + 100.0, k=k)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    fresh = prdc(real, rng.standard_normal((1000, 4)), k=k)
    assert fresh["precision"] > 0.85 and fresh["recall"] > 0.85 and fresh["coverage"] > 0.85
    assert fresh["density"] == pytest.approx(1.0, abs=0.15)
    collapsed = prdc(real, rng.standard_normal((1000, 4)) * 0.2, k=k)  # mode-collapsed generator
    assert collapsed["precision"] > 0.95 and collapsed["recall"] < 0.5 and collapsed["coverage"] < 0.5


# ------------------------------------------------------------------------------------------ classifier
def test_classifier_metrics_on_hand_made_logits() -> None:
    one_hot = torch.full((100, 10), -50.0)
    one_hot[torch.arange(100), torch.arange(100) % 10] = 50.0  # 10 per class, confident
    metrics = classifier_metrics(one_hot, n_splits=1)
    assert metrics["class_histogram"] == [10] * 10 and metrics["classes_covered"] == 10
    assert metrics["kl_to_uniform"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["classifier_is"] == pytest.approx(10.0, rel=1e-9)

    collapsed = torch.zeros(40, 10)
    collapsed[:, 3] = 100.0
    metrics = classifier_metrics(collapsed, n_splits=4)
    assert metrics["classes_covered"] == 1 and metrics["kl_to_uniform"] == pytest.approx(math.log(10))
    assert metrics["classifier_is"] == pytest.approx(1.0) and metrics["classifier_is_std"] == pytest.approx(0)

    assert classifier_inception_score(torch.zeros(30, 10), n_splits=3)[0] == pytest.approx(1.0, abs=1e-12)
    # Two classes, p(y|x) = (0.9, 0.1) and (0.1, 0.9): p(y) = (1/2, 1/2), KL = 0.9 ln 1.8 + 0.1 ln 0.2.
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.1, 0.9]], dtype=torch.float64))
    expected = math.exp(0.9 * math.log(1.8) + 0.1 * math.log(0.2))
    assert classifier_inception_score(logits, n_splits=1)[0] == pytest.approx(expected, rel=1e-12)


def test_histogram_coverage_threshold_and_kl() -> None:
    counts = class_histogram(torch.tensor([0, 0, 0, 0, 0, 1, 2, 2]), n_classes=4)
    assert counts.tolist() == [5, 1, 2, 0]
    assert classes_covered(counts) == 3 and classes_covered(counts, min_count=2) == 2
    p = np.array([5, 1, 2]) / 8
    assert kl_to_uniform(counts) == pytest.approx(float(np.sum(p * np.log(p * 4))), rel=1e-12)


class IntensityDigitClassifier(torch.nn.Module):
    """Says digit d when an image's mean intensity is closest to -1 + 2d/9 (a hand-made oracle)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = -1.0 + 2.0 * torch.arange(10.0) / 9.0
        return -((x.mean((1, 2, 3))[:, None] - levels[None, :]) ** 2)


def test_stacked_mnist_mode_ids_and_metrics() -> None:
    digits = torch.tensor([[1, 2, 3], [9, 0, 7], [0, 0, 0], [1, 2, 3]])
    images = (-1.0 + 2.0 * digits.float() / 9.0)[:, :, None, None].expand(-1, -1, 28, 28)
    ids = stacked_mnist_mode_ids(images, classifier=IntensityDigitClassifier())
    assert ids.tolist() == [123, 907, 0, 123]
    metrics = stacked_mnist_metrics(ids)
    assert metrics["modes_covered"] == 3 and metrics["n_modes"] == 1000
    assert stacked_mnist_metrics(ids, min_count=2)["modes_covered"] == 1
    p = np.array([2, 1, 1]) / 4
    assert metrics["kl_to_uniform"] == pytest.approx(float(np.sum(p * np.log(p * 1000))), rel=1e-12)


# -------------------------------------------------------------------------------------- LeNet backbone
def asset_bytes(dataset: str) -> bytes:
    return (resources.files("otgan_lab") / "assets" / LENET_ASSETS[dataset]).read_bytes()


@pytest.mark.parametrize("dataset", sorted(LENET_ASSETS))
def test_lenet_weights_load_weights_only(dataset: str, tmp_path: Path) -> None:
    data = asset_bytes(dataset)
    assert len(data) < 500_000
    path = tmp_path / "w.pt"
    path.write_bytes(data)
    state = torch.load(path, weights_only=True)
    assert set(state) == set(LeNet().state_dict())
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    readme = Path(str(resources.files("otgan_lab") / "assets" / "README.md"))
    if readme.is_file():  # source checkout: the recorded hash must be this file's
        assert hashlib.sha256(data).hexdigest() in readme.read_text()


def test_registry_and_lenet_backbone_metadata() -> None:
    assert {"inception", "lenet_mnist", "lenet_fashion"} <= set(available_backbones())
    with pytest.raises(KeyError, match="lenet_mnist"):
        get_backbone("no_such_net")
    mnist, fashion = get_backbone("lenet_mnist"), get_backbone("lenet_fashion")
    assert mnist.dim == 128 and mnist.name == "lenet_mnist" and fashion.name == "lenet_fashion"
    assert mnist.weights_hash == hashlib.sha256(asset_bytes("mnist")).hexdigest()[:8]
    assert mnist.preprocessing and mnist.cache_key != fashion.cache_key


def test_lenet_features_invariant_to_batch_size_autocast_and_dtype() -> None:
    gen = torch.Generator().manual_seed(11)
    u8 = torch.randint(0, 256, (90, 1, 28, 28), dtype=torch.uint8, generator=gen)
    images = u8.float() / 127.5 - 1.0
    other = (torch.rand(70, 1, 28, 28, generator=gen) * 2 - 1).clamp(-1, 1)
    small, large = get_backbone("lenet_mnist", batch_size=7), get_backbone("lenet_mnist", batch_size=1000)
    f_small, f_large = small(images), large(images)
    assert f_small.shape == (90, 128) and f_small.dtype == torch.float32
    torch.testing.assert_close(f_small, f_large, rtol=1e-5, atol=1e-5)
    fid_small, fid_large = fid_from_features(f_small, small(other)), fid_from_features(f_large, large(other))
    assert fid_small == pytest.approx(fid_large, rel=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        f_autocast = large(images)
    assert f_autocast.dtype == torch.float32
    torch.testing.assert_close(f_autocast, f_large, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(large(u8), f_large, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(large([images[:40], images[40:]]), f_large, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------ Inception wiring
@pytest.fixture
def empty_hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.delenv("OTLAB_INCEPTION_WEIGHTS", raising=False)
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)


def test_missing_inception_weights_give_clear_error(empty_hub_dir: Path) -> None:
    with pytest.raises(InceptionWeightsMissing) as info:
        get_backbone("inception")
    message = str(info.value)
    for fragment in (FID_WEIGHTS_FILE, "6726825d", str(empty_hub_dir / "checkpoints"), "lenet_mnist"):
        assert fragment in message
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(InceptionWeightsMissing, match="elsewhere.pth"):  # a configured path is authoritative
        get_backbone("inception", weights_path=str(empty_hub_dir / "elsewhere.pth"))


def test_inception_weights_with_wrong_hash_are_rejected(empty_hub_dir: Path) -> None:
    path = empty_hub_dir / "checkpoints" / FID_WEIGHTS_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not the FID weights")
    with pytest.raises(ValueError, match="6726825d"):
        get_backbone("inception")


def test_inception_random_weights_run_pytorch_fid_pipeline(empty_hub_dir: Path, tmp_path: Path) -> None:
    """Random-weight InceptionV3 from pytorch-fid's own code; features equal pytorch-fid's PNG pipeline."""
    from pytorch_fid.fid_score import get_activations
    from pytorch_fid.inception import FIDInceptionA, InceptionV3
    from torchvision.utils import save_image

    extractor = get_backbone("inception", allow_random_weights=True, batch_size=2)
    assert extractor.weights_hash == "random0" and extractor.dim == 2048
    inception = extractor.network.inception
    assert isinstance(inception, InceptionV3) and inception.resize_input and inception.normalize_input
    assert isinstance(inception.blocks[2][0], FIDInceptionA)  # the FID variant, not torchvision's

    gen = torch.Generator().manual_seed(12)
    images = torch.rand(2, 1, 28, 28, generator=gen) * 2 - 1
    features = extractor(images)
    assert features.shape == (2, 2048) and torch.isfinite(features).all()

    files = []
    for i, image in enumerate(images):
        files.append(tmp_path / f"{i}.png")
        save_image(image * 0.5 + 0.5, files[-1])
    reference = get_activations(files, inception, batch_size=2, dims=2048, device="cpu", num_workers=0)
    assert np.abs(reference).max() > 0.1  # non-degenerate random features, so the comparison has teeth
    np.testing.assert_allclose(features.numpy(), reference, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------- real datasets
def load_test_split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    import torchvision

    root = os.environ.get("OTLAB_DATA")
    folder = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}[name]
    if not root or not (Path(root) / folder / "raw" / "t10k-images-idx3-ubyte").is_file():
        pytest.skip(f"OTLAB_DATA does not hold {folder}")
    cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.FashionMNIST
    ds = cls(root=root, train=False, download=False)
    return ds.data.unsqueeze(1), ds.targets


@pytest.mark.parametrize(("dataset", "target"), [("mnist", 0.992), ("fashion_mnist", 0.91)])
def test_lenet_test_accuracy(dataset: str, target: float) -> None:
    images, labels = load_test_split(dataset)
    logits = predict_logits(images.float() / 127.5 - 1.0, dataset=dataset)
    assert (logits.argmax(1) == labels).double().mean() >= target


def test_stacked_mnist_with_real_digits() -> None:
    images, labels = load_test_split("mnist")
    gen = torch.Generator().manual_seed(13)
    picks = torch.randint(0, len(labels), (500, 3), generator=gen)
    stacked = images[picks, 0].float() / 127.5 - 1.0  # (500, 3, 28, 28): channel c holds digit picks[:, c]
    truth = labels[picks[:, 0]] * 100 + labels[picks[:, 1]] * 10 + labels[picks[:, 2]]
    assert (stacked_mnist_mode_ids(stacked) == truth).double().mean() > 0.95  # ≈ 0.995³ expected
