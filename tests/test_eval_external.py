"""`otlab eval samples=PATH real=...`: samples made anywhere (PNG folders, pytorch-fid / torch-fidelity .npz,
.pt tensors) scored with the metrics, protocol and reference cache of otlab's own runs, on generated data.

The MNIST cases check the strongest property there is: the test split written out as files and read back
scores exactly what `otlab eval real=mnist` (the floor) scores on the same images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from otgan_lab.data.images import image_dataset
from otgan_lab.evaluation import Evaluator
from otgan_lab.paths import conf_dir
from otgan_lab.table import load_measurements
from tests.test_datasets_rgb import otlab, tiny_inception, write_cifar, write_png_folder  # noqa: F401
from tests.test_run_records import fake_mnist

N = 40
SMALL = ("metrics.fid.prdc_k=3", "metrics.fid.kid_subset_size=20", "metrics.fid.kid_subsets=5")


@pytest.fixture
def mnist_root(tmp_path, monkeypatch):
    monkeypatch.setenv("OTLAB_CACHE", str(tmp_path / "stats"))
    monkeypatch.setenv("OTLAB_DATA", str(tmp_path / "data"))
    return fake_mnist(tmp_path / "data", n=64)


def write_formats(images: np.ndarray, folder: Path) -> dict[str, Path]:
    """uint8 (N, 1, H, W) images as a gray PNG folder, an RGB PNG folder (save_image style), an NHWC npz and
    a float [-1, 1] .pt."""
    paths = {"png": folder / "png", "rgb_png": folder / "rgb_png", "npz": folder / "s.npz",
             "pt": folder / "s.pt"}
    paths["png"].mkdir(parents=True)
    paths["rgb_png"].mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image[0]).save(paths["png"] / f"{i:04d}.png")
        Image.fromarray(image[0]).convert("RGB").save(paths["rgb_png"] / f"{i:04d}.png")
    np.savez(paths["npz"], arr_0=images.transpose(0, 2, 3, 1))
    torch.save(torch.from_numpy(images).float().mul_(2 / 255).sub_(1), paths["pt"])  # otlab's data space
    return paths


def floor_metrics(root: Path, n: int) -> dict[str, float]:
    """What `otlab eval real=mnist eval.n_samples=n` computes: the test split's first n against train."""
    suites = OmegaConf.to_container(OmegaConf.load(conf_dir() / "metrics" / "images.yaml"), resolve=False)
    suites = {k: v for k, v in suites.items() if k not in ("primary", "n_samples")}
    suites["fid"].update(prdc_k=3, kid_subset_size=20, kid_subsets=5, cache_dir=None)
    train = image_dataset("mnist", root=root, download=False)
    test = image_dataset("mnist", root=root, split="test", download=False)
    return Evaluator(train, None, n_samples=n, suites=suites, out_dir=root).suite_metrics(test.all(0, n))


def test_mnist_samples_in_every_format_score_exactly_the_floor(mnist_root, tmp_path):
    test = image_dataset("mnist", root=mnist_root, split="test", download=False)
    paths = write_formats(test.data[:N].numpy(), tmp_path / "samples")
    expected = floor_metrics(mnist_root, N)
    for kind, path in paths.items():
        code, out, err = otlab("eval", f"samples={path}", "real=mnist", *SMALL)
        assert code == 0, (kind, out, err)
        record = json.loads(path.with_name(path.name + ".otlab.json").read_text())
        assert record["status"] == "completed" and record["method"] == "external" and record["n_samples"] == N
        for key, value in expected.items():
            assert record["metrics"][key] == pytest.approx(value, rel=1e-6, abs=1e-9), (kind, key)
        protocol = record["protocol"]
        assert protocol["sampler"] == "external" and protocol["n_samples"] == N
        assert protocol["suites"]["fid"]["backbone"] == "lenet_mnist" and "samples_transform" not in protocol
        assert record["metric_specs"]["fid"]["goal"] == "min"
    rows = load_measurements([paths["png"].with_name("png.otlab.json")])
    assert [(m.status, m.method, m.dataset) for m in rows] == [("completed", "external", "mnist")]


def test_wrong_shapes_are_refused_unless_resize(mnist_root, tmp_path):
    folder = write_png_folder(tmp_path / "rgb", n=12, size=32)  # 3x32x32 and wider images
    code, out, err = otlab("eval", f"samples={folder}", "real=mnist", *SMALL)
    assert code == 2 and "different sizes" in err and "resize=true" in err
    same = tmp_path / "rgb32"
    same.mkdir()
    for i in range(12):
        pixels = np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(same / f"{i}.png")
    code, out, err = otlab("eval", f"samples={same}", "real=mnist", *SMALL)
    assert code == 2 and "[3, 32, 32]" in err and "[1, 28, 28]" in err and "Traceback" not in err
    assert not same.with_name("rgb32.otlab.json").exists()
    for samples in (same, folder):  # one size, or several: each file resized
        out_file = tmp_path / f"{samples.name}_resized.json"
        code, out, err = otlab("eval", f"samples={samples}", "real=mnist", "resize=true", f"out={out_file}",
                               *SMALL)
        assert code == 0, err
        record = json.loads(out_file.read_text())
        assert "[1, 28, 28]" in record["protocol"]["samples_transform"] and record["config"]["resize"] is True


def test_unreadable_samples_are_one_message(mnist_root, tmp_path):
    bad_pt = tmp_path / "bad.pt"
    torch.save(torch.rand(5, 1, 28, 28) * 3, bad_pt)  # floats outside [-1, 1]
    float_npz = tmp_path / "f.npz"
    np.savez(float_npz, images=np.random.rand(5, 28, 28, 1))
    for path, words in [(bad_pt, "expected otlab's data space [-1, 1]"), (float_npz, "expected uint8"),
                        (tmp_path / "missing.npz", "no such file")]:
        code, out, err = otlab("eval", f"samples={path}", "real=mnist")
        assert code == 2 and words in err and "Traceback" not in err, err
    code, out, err = otlab("eval", f"samples={bad_pt}")
    assert code == 2 and "real=" in err


@pytest.mark.usefixtures("tiny_inception")
def test_rgb_samples_against_cifar10_and_a_folder_with_the_injected_inception(tmp_path, monkeypatch):
    written = write_cifar(tmp_path / "data")
    monkeypatch.setenv("OTLAB_DATA", str(tmp_path / "data"))
    rgb = written["test_batch"].reshape(-1, 3, 32, 32)
    npz = tmp_path / "fidelity.npz"
    np.savez(npz, arr_0=rgb.transpose(0, 2, 3, 1))  # torch-fidelity / pytorch-fid: NHWC uint8
    record_file = tmp_path / "records" / "result.json"
    args = ("metrics.fid.prdc_k=3", "metrics.fid.kid_subset_size=6", "metrics.inception_score.n_splits=2")
    code, out, err = otlab("eval", f"samples={npz}", "real=cifar10", f"out={record_file}", *args)
    assert code == 0, err
    record = json.loads(record_file.read_text())
    assert record["dataset"] == "cifar10" and 1 <= record["metrics"]["is"] <= 10
    assert record["protocol"]["suites"]["fid"]["backbone"] == "inception"
    assert record["protocol"]["suites"]["inception_score"]["backbone"] == "inception_logits"
    assert record["metric_specs"]["is"]["goal"] == "max"
    assert [m.method for m in load_measurements([tmp_path / "records"])] == ["external"]  # found by the glob
    code, out, err = otlab("eval", "real=cifar10", "eval.n_samples=12", *args)  # the CIFAR-10 floor
    assert code == 0 and "real-data floor: cifar10" in out and "test (12)" in out, err
    # a folder as the reference: sized like the samples; PNGs of the npz's images score like the npz
    reference = tmp_path / "reference"
    reference.mkdir()
    for i, image in enumerate(written["data_batch_1"].reshape(-1, 3, 32, 32)):
        Image.fromarray(image.transpose(1, 2, 0)).save(reference / f"{i}.png")
    code, out, err = otlab("eval", f"samples={npz}", f"real={reference}", *args)
    assert code == 0, err
    by_folder = json.loads(npz.with_name("fidelity.npz.otlab.json").read_text())
    assert by_folder["dataset"] == "image_folder" and by_folder["protocol"]["suites"]["fid"]["reference"]
