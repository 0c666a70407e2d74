"""CIFAR-10, CelebA and image folders on data generated in the real formats (never a download); the 32x32 /
64x64 conv and ResNet nets; the RGB metrics with a small backbone injected in the Inception's place.

Generated formats: CIFAR-10's python pickles (`cifar-10-batches-py/data_batch_1..5`, `test_batch`,
`batches.meta`, dicts with bytes keys as the original Python 2 pickles read with encoding='bytes'),
torchvision's CelebA layout (`celeba/img_align_celeba/NNNNNN.jpg` 178x218 JPEGs + `list_eval_partition.txt`),
folder trees of PNG/JPEG files of mixed sizes and modes.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from otgan_lab import build
from otgan_lab.data.celeba import celeba
from otgan_lab.data.cifar import cifar10
from otgan_lab.data.folder import image_folder
from otgan_lab.data.stream import HostImages, StreamedDataset
from otgan_lab.errors import DataError
from otgan_lab.metrics import features
from otgan_lab.metrics import images as image_metrics_module
from otgan_lab.metrics.classifier import classifier_inception_score
from otgan_lab.metrics.extractor import FeatureExtractor
from otgan_lab.nets.dcgan import ConvCritic, ConvGenerator
from otgan_lab.nets.resnet import ResNetCritic, ResNetGenerator
from tests.helpers import compose_cfg, otlab

CIFAR_BATCH = 12  # images per generated batch file (the real ones hold 10,000)


# --------------------------------------------------------------------------------------- generated formats
def write_cifar(root: Path, per_batch: int = CIFAR_BATCH, seed: int = 0) -> dict[str, np.ndarray]:
    """CIFAR-10's python layout under root/cifar-10-batches-py; returns the rows written per file."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(per_batch)]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img_{j}.png".encode() for j in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        written[name] = data
    meta = {b"label_names": [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog",
                                                   "frog", "horse", "ship", "truck")], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return written


def face(rng: np.random.Generator, width: int = 178, height: int = 218) -> Image.Image:
    """A smooth random RGB picture of CelebA's aligned size."""
    coarse = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((width, height), Image.BILINEAR)


def write_celeba(root: Path, numbers=(1, 2, 3, 162771, 182638, 182639), partition: bool = True) -> Path:
    """torchvision's CelebA layout: root/celeba/img_align_celeba/NNNNNN.jpg (+ list_eval_partition.txt)."""
    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for n in numbers:
        face(rng).save(folder / f"{n:06d}.jpg", quality=95)
    if partition:
        split = {n: 0 if n <= 162770 else 1 if n <= 182637 else 2 for n in numbers}
        (root / "celeba" / "list_eval_partition.txt").write_text(
            "".join(f"{n:06d}.jpg {split[n]}\n" for n in numbers))
    return folder


def write_png_folder(folder: Path, n: int = 6, size: int = 40, mode: str = "RGB", seed: int = 2) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        face(rng, size + 8 * (i % 3), size).convert(mode).save(sub / f"{i}.png")
    return folder


def tiny_backbone(name: str, dim: int):
    """A small conv net standing in for the Inception (features, or `dim` logits), seeded."""
    def factory(batch_size: int = 100, device="cpu", **_) -> FeatureExtractor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(7)
            net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(),
                                      torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(1),
                                      torch.nn.Linear(32, dim))

        def prepare(x):
            x = x.float() / 127.5 - 1 if x.dtype == torch.uint8 else x.float()
            return x.expand(-1, 3, -1, -1)

        return FeatureExtractor(name, net, dim, "tiny", "test", prepare, batch_size, device)
    return factory


@pytest.fixture
def tiny_inception(monkeypatch, tmp_path):
    """'inception' and 'inception_logits' replaced by a tiny net; caches isolated."""
    monkeypatch.setitem(features._BACKBONES, "inception", tiny_backbone("inception", 16))
    monkeypatch.setitem(features._BACKBONES, "inception_logits", tiny_backbone("inception_logits", 10))
    monkeypatch.setattr(image_metrics_module, "_EXTRACTORS", {})
    monkeypatch.setattr(image_metrics_module, "_REFERENCE", {})
    monkeypatch.setenv("OTLAB_CACHE", str(tmp_path / "stats"))


# -------------------------------------------------------------------------------------------------- CIFAR-10
def test_cifar10_reads_the_pickled_batches_exactly(tmp_path):
    written = write_cifar(tmp_path)
    data = cifar10(root=tmp_path, download=False)
    assert data.data.shape == (5 * CIFAR_BATCH, 3, 32, 32) and data.data.dtype == torch.uint8
    first = written["data_batch_1"][0]  # channel-major rows: 1024 red, 1024 green, 1024 blue
    assert torch.equal(data.data[0, 0], torch.from_numpy(first[:1024].reshape(32, 32)))
    assert torch.equal(data.data[0, 2], torch.from_numpy(first[2048:].reshape(32, 32)))
    assert data.labels[:3].tolist() == [0, 1, 2] and data.meta["placement"] == "device"
    test = cifar10(root=tmp_path, split="test", download=False)
    assert torch.equal(test.data.flatten(1), torch.from_numpy(written["test_batch"]))
    cats = cifar10(root=tmp_path, classes=[3], download=False)
    expected_cats = sum((i + j) % 10 == 3 for i in range(5) for j in range(CIFAR_BATCH))
    assert len(cats) == expected_cats and set(cats.labels.tolist()) == {3}
    cfg = compose_cfg("dataset=cifar10", f"dataset.root={tmp_path}", "dataset.download=false", "batch_size=8")
    assert cfg.model.name == "dcgan" and cfg.metrics.inception_score.n_splits == 10
    batch = build.build_dataset(cfg, 0, torch.device("cpu")).batch(8)
    assert batch.shape == (8, 3, 32, 32) and -1 <= batch.min() and batch.max() <= 1


def test_cifar10_missing_or_damaged_files_are_named(tmp_path):
    with pytest.raises(DataError) as info:
        cifar10(root=tmp_path, download=False)
    assert "data_batch_1" in str(info.value) and "cifar-10-batches-py" in str(info.value)
    write_cifar(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(DataError, match="data_batch_3 is unreadable"):
        cifar10(root=tmp_path, download=False)
    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"expected uint8 \(n, 3072\)"):
        cifar10(root=tmp_path, download=False)

    class Exploit:  # a pickle that would run code is refused, not executed
        def __reduce__(self):
            return (print, ("pwned",))

    bad.write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        cifar10(root=tmp_path, download=False)


# ---------------------------------------------------------------------------------------------------- CelebA
def test_celeba_cache_crop_splits_and_streaming(tmp_path, capsys):
    write_celeba(tmp_path)
    data = celeba(root=tmp_path, download=False, stream=False)
    cache = tmp_path / "otgan_lab_cache" / "celeba_64.npy"
    assert cache.is_file() and "decoding 6 images once" in capsys.readouterr().err
    assert data.data.shape == (3, 3, 64, 64) and data.meta["placement"] == "device"  # 000001-000003: train
    # the usual crop: the centred 108x108 square of the 178x218 image, then a bilinear resize to 64x64
    image = Image.open(tmp_path / "celeba" / "img_align_celeba" / "000002.jpg").convert("RGB")
    expected = np.asarray(image.crop((35, 55, 143, 163)).resize((64, 64), Image.BILINEAR)).transpose(2, 0, 1)
    assert torch.equal(data.data[1], torch.from_numpy(expected.copy()))
    assert len(celeba(root=tmp_path, split="test", download=False)) == 2
    assert len(celeba(root=tmp_path, split="all", download=False)) == 6
    assert capsys.readouterr().err == ""  # the cache is reused: nothing decoded again
    streamed = celeba(root=tmp_path, download=False, stream=True, seed=5)
    resident = celeba(root=tmp_path, download=False, stream=False, seed=5)
    assert isinstance(streamed, StreamedDataset) and isinstance(streamed.data, HostImages)
    assert streamed.meta["placement"] == "stream" and streamed.index_device.type == "cpu"
    for _ in range(3):  # the same batches, across an epoch boundary
        assert torch.equal(streamed.batch(2), resident.batch(2))
    state = streamed.state_dict()
    after = streamed.batch(2)
    streamed.load_state_dict(state)
    assert torch.equal(streamed.batch(2), after)
    assert torch.equal(streamed.all(0, 2), resident.all(0, 2))
    assert torch.equal(streamed.data[torch.tensor([2, 0])], resident.data[torch.tensor([2, 0])])
    from otgan_lab.evaluation import random_real

    assert random_real(streamed, 4).shape == (4, 3, 64, 64)


def test_stream_auto_keeps_on_the_device_what_fits():
    from otgan_lab.data.stream import DEVICE_SHARE, free_memory, should_stream
    from otgan_lab.errors import ConfigError

    cpu = torch.device("cpu")
    free = free_memory(cpu)
    assert not should_stream(int(0.5 * DEVICE_SHARE * free), cpu) and should_stream(int(2 * free), cpu)
    assert should_stream(1, cpu, True) and not should_stream(10 * free, cpu, False)
    with pytest.raises(ConfigError, match="dataset.stream must be auto, true or false"):
        should_stream(1, cpu, "sometimes")


def test_celeba_folder_without_partition_uses_the_official_ranges(tmp_path):
    folder = write_celeba(tmp_path / "src", numbers=(5, 162770, 162771, 182638), partition=False)
    own = tmp_path / "faces"
    folder.rename(own)
    assert len(celeba(root=tmp_path, path=own, download=False, size=32)) == 2
    assert len(celeba(root=tmp_path, path=own, split="valid", download=False, size=32)) == 1
    with pytest.raises(DataError) as info:
        celeba(root=tmp_path / "nothing", download=False)
    message = str(info.value)
    assert "img_align_celeba" in message and "000001.jpg" in message and "list_eval_partition.txt" in message


# ------------------------------------------------------------------------------------------- image folders
def test_image_folder_decodes_once_resizes_and_follows_changes(tmp_path, capsys):
    folder = write_png_folder(tmp_path / "pics")
    data = image_folder(path=folder, size=16, channels=3, root=tmp_path)
    assert data.data.shape == (6, 3, 16, 16) and "decoding 6 images" in capsys.readouterr().err
    gray = image_folder(path=folder, size=16, channels=1, root=tmp_path)
    assert gray.data.shape == (6, 1, 16, 16) and "decoding 6 images" in capsys.readouterr().err
    image_folder(path=folder, size=16, channels=3, root=tmp_path)
    assert "decoding" not in capsys.readouterr().err  # cached
    face(np.random.default_rng(9), 20, 20).save(folder / "b" / "new.jpg")
    assert len(image_folder(path=folder, size=16, channels=3, root=tmp_path)) == 7  # rebuilt
    (folder / "b" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png is not a readable image"):
        image_folder(path=folder, size=16, root=tmp_path)
    with pytest.raises(DataError, match="holds no image files"):
        (tmp_path / "empty").mkdir()
        image_folder(path=tmp_path / "empty", root=tmp_path)
    cfg = compose_cfg("dataset=image_folder", f"dataset.path={tmp_path / 'pics2'}", "dataset.size=8",
                      "dataset.channels=1", f"dataset.root={tmp_path}", "batch_size=4")
    write_png_folder(tmp_path / "pics2", n=4, mode="L")
    assert list(cfg.dataset.shape) == [1, 8, 8]
    assert build.build_dataset(cfg, 0, torch.device("cpu")).batch(4).shape == (4, 1, 8, 8)


# ------------------------------------------------------------------------------------------------------ nets
@pytest.mark.parametrize("shape", [(3, 32, 32), (3, 64, 64), (1, 28, 28)])
def test_conv_and_resnet_nets_make_and_score_images_of_the_data_shape(shape):
    z = torch.randn(3, 16)
    for generator, critic in [
        (ConvGenerator(16, shape, width=4), ConvCritic(shape, width=4)),
        (ResNetGenerator(16, shape, width=8), ResNetCritic(shape, width=8)),
        (ResNetGenerator(16, shape, width=4, channels="halving"),
         ResNetCritic(shape, width=4, channels="halving", down_blocks=4 if shape[1] == 64 else 2,
                      extra_blocks=1)),
    ]:
        x = generator(z)
        assert x.shape == (3, *shape) and x.abs().max() <= 1
        assert critic(x).shape == (3,)
    assert ResNetCritic(shape, width=8, out_dim=5)(x).shape == (3, 5)


def test_resnet_critic_spectral_norm_bounds_each_layer():
    critic = ResNetCritic((3, 32, 32), width=8, spectral_norm=True).train()
    for _ in range(30):  # power iterations run in training mode
        critic(torch.randn(2, 3, 32, 32))
    critic.eval()
    for module in critic.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            sigma = torch.linalg.matrix_norm(module.weight.detach().flatten(1), ord=2)
            assert sigma == pytest.approx(1.0, abs=0.05)


def test_resnet_trains_on_generated_cifar_through_otlab(tmp_path, monkeypatch, tiny_inception):
    write_cifar(tmp_path / "data", per_batch=8)
    run_dir = tmp_path / "run"
    code, out, err = otlab("train", "dataset=cifar10", f"dataset.root={tmp_path / 'data'}",
                           "dataset.download=false", "model=resnet32", "model.nets.generator.width=8",
                           "model.nets.critic.width=8", "model.nets.critic.spectral_norm=true", "method=gan",
                           "batch_size=8", "trainer.steps=2",
                           "eval.n_samples=20", "metrics.fid.prdc_k=3", "metrics.inception_score.n_splits=2",
                           "logger=none", "trainer.progress=false", "device=cpu", f"hydra.run.dir={run_dir}")
    assert code == 0, (out, err)
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "completed" and record["model"] == "resnet32"
    metrics = record["samplers"]["standard"]["metrics"] if "samplers" in record else record["metrics"]
    assert math.isfinite(metrics["fid"]) and 1 <= metrics["is"] <= 10
    assert record["metric_specs"]["is"]["goal"] == "max"


# ------------------------------------------------------------------------------------------------ metrics
def test_inception_score_formula_against_closed_forms():
    k = 7
    one_hot = torch.full((70, k), -50.0)
    one_hot[torch.arange(70), torch.arange(70) % k] = 50.0  # confident, classes balanced: IS = K
    assert classifier_inception_score(one_hot, n_splits=2)[0] == pytest.approx(k, rel=1e-9)
    same = torch.randn(1, k).expand(40, k)  # every image the same prediction: IS = 1
    assert classifier_inception_score(same, n_splits=4) == (pytest.approx(1.0), pytest.approx(0.0, abs=1e-12))
    # two classes, p(y|x) = (p, 1 - p) for half, (1 - p, p) for the other half: IS = exp(log 2 - H(p))
    p = 0.8
    logits = torch.tensor([[math.log(p), math.log(1 - p)], [math.log(1 - p), math.log(p)]]).repeat(10, 1)
    entropy = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert classifier_inception_score(logits, n_splits=1)[0] == pytest.approx(math.exp(math.log(2) - entropy))


def test_rgb_metrics_with_the_injected_inception(tmp_path, tiny_inception):
    from otgan_lab.evaluation import Evaluator

    write_cifar(tmp_path)
    data = cifar10(root=tmp_path, download=False)
    suites = {"fid": {"prdc_k": 3, "kid_subset_size": 10}, "inception_score": {"n_splits": 2}}
    evaluator = Evaluator(data, None, n_samples=20, suites=suites, out_dir=tmp_path)
    real = evaluator.suite_metrics(data.all(0, 20))
    noise = evaluator.suite_metrics(torch.rand(20, 3, 32, 32) * 2 - 1)
    assert real["fid"] < noise["fid"] and 1 <= real["is"] <= 10
    assert evaluator.protocol["suites"]["fid"]["backbone"] == "inception"
    assert evaluator.protocol["suites"]["inception_score"]["backbone"] == "inception_logits"
    assert evaluator.declared_specs["is"].goal == "max" and evaluator.declared_specs["fid"].goal == "min"
    assert list((tmp_path / "stats").glob("*.npz"))  # the reference statistics cache


def test_rgb_metrics_refuse_to_start_without_the_inception_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("OTLAB_INCEPTION_WEIGHTS", raising=False)
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        write_cifar(tmp_path / "data")
        code, out, err = otlab("train", "dataset=cifar10", f"dataset.root={tmp_path / 'data'}",
                               "dataset.download=false", "trainer.steps=2", "logger=none", "batch_size=8",
                               f"hydra.run.dir={tmp_path / 'run'}")
    finally:
        torch.hub.set_dir(previous)
    assert code == 2 and "Traceback" not in err
    assert "metrics.fid.backbone=inception" in err
    assert "metrics.inception_score.backbone=inception_logits" in err
    assert err.count("pt_inception-2015-12-05-6726825d.pth") >= 2
    assert not (tmp_path / "run").exists()


def test_inception_logits_are_pool3_times_the_classifier_weights(tmp_path):
    """pytorch-fid's network to pool3, then the 1008-way classifier's weights without the bias (random
    weights: the real file is not here)."""
    from pytorch_fid.inception import InceptionV3

    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        logits = features.get_backbone("inception_logits", allow_random_weights=True, batch_size=2)
    finally:
        torch.hub.set_dir(previous)
    assert isinstance(logits.network.pool3.inception, InceptionV3) and logits.dim == 1008
    assert logits.network.fc_weight.shape == (1008, 2048) and logits.weights_hash == "random0"
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        pool3 = logits.network.pool3(logits._prepare(x))
    torch.testing.assert_close(logits(x), pool3 @ logits.network.fc_weight.T, rtol=1e-4, atol=1e-5)
