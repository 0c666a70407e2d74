"""Every option of every config group composes, and the objects it names instantiate."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from otgan_lab import build
from tests.conftest import shared_data_root
from tests.helpers import CONF, compose_cfg, options

IMAGE_DATASETS = {"mnist", "fashion_mnist", "stacked_mnist"}  # need $OTLAB_DATA


def test_every_group_has_options():
    for group in ("dataset", "method", "model", "sampler", "metrics", "logger", "trainer"):
        assert options(group), f"conf/{group} is empty"


@pytest.mark.parametrize("group", ["dataset", "method", "model", "sampler", "metrics", "logger", "trainer"])
def test_every_option_composes_and_resolves(group):
    for option in options(group):
        cfg = compose_cfg(f"{group}={option}")
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
        assert cfg[group] is not None


def test_dataset_chooses_its_default_model_and_metrics_but_command_line_wins():
    assert compose_cfg().model.name == "mlp2d"
    assert compose_cfg("dataset=mnist").model.name == "mlp"
    assert compose_cfg("dataset=mnist").metrics.n_samples == compose_cfg("metrics=images").metrics.n_samples
    assert compose_cfg("dataset=mnist", "model=dcgan").model.name == "dcgan"


def test_shapes_flow_from_the_dataset():
    cfg = compose_cfg("dataset=mnist", "model=dcgan")
    assert list(cfg.model.nets.generator.out_shape) == [1, 28, 28]
    assert cfg.method.prior.dim == cfg.model.z_dim


# datasets whose files no test machine holds: generated stand-ins here (tests/test_datasets_rgb.py reads
# generated files in their real formats)
GENERATED = {"cifar10": ["dataset.synthetic=64"], "celeba": ["dataset.synthetic=64"]}


@pytest.mark.parametrize("dataset", options("dataset"))
def test_datasets_instantiate(dataset, tmp_path):
    if dataset in IMAGE_DATASETS and shared_data_root() is None:
        pytest.skip("OTLAB_DATA with MNIST/Fashion-MNIST not available")
    extra = GENERATED.get(dataset, [])
    if dataset == "image_folder":
        from PIL import Image

        for i in range(8):
            Image.new("RGB", (40, 30), (30 * i, 0, 0)).save(tmp_path / f"{i}.png")
        extra = [f"dataset.path={tmp_path}", f"dataset.root={tmp_path}", "batch_size=8"]
    cfg = compose_cfg(f"dataset={dataset}", *extra)
    data = build.build_dataset(cfg, 0, torch.device("cpu"))
    assert tuple(data.shape) == tuple(cfg.dataset.shape)
    batch = data.batch(8)
    assert batch.shape == (8, *cfg.dataset.shape) and batch.dtype == torch.float32


@pytest.mark.parametrize("model", options("model"))
def test_models_instantiate_and_run(model):
    dataset = "ring8" if "2d" in model or model.endswith("_mlp") else "mnist"
    cfg = compose_cfg(f"dataset={dataset}", f"model={model}")
    for name, net_cfg in cfg.model.nets.items():
        net = instantiate(net_cfg)
        assert sum(p.numel() for p in net.parameters()) > 0, name


@pytest.mark.parametrize("method", options("method"))
def test_methods_instantiate_on_every_dataset(method):
    for dataset in ("ring8", "mnist"):
        cfg = compose_cfg(f"method={method}", f"dataset={dataset}")
        m = build.build_method(cfg, torch.device("cpu"))
        assert m.name == method
        assert set(m.required_nets) <= set(m.nets)


@pytest.mark.parametrize("sampler", options("sampler"))
def test_samplers_instantiate(sampler):
    cfg = compose_cfg(f"sampler={sampler}")
    built = build.build_sampler(cfg.sampler)
    assert built.name == sampler and cfg.sampler.name == sampler


def test_unknown_choice_lists_the_options():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as err:
        compose_cfg("method=nosuchmethod")
    assert "wgan_gp" in str(err.value)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("method.optim.critic.lr=-1", "method.optim.critic.lr must be a positive learning rate"),
        ("method.n_critic=0", "method.n_critic must be an integer >= 1"),
        ("precision=fp17", "unknown precision"),
        ("trainer.steps=0", "trainer.steps must be >= 1"),
        ("trainer.ema.enabled=true", None),
    ],
)
def test_bad_values_are_rejected_with_a_clear_message(override, fragment):
    cfg = compose_cfg(override)
    if fragment is None:
        build.check_config(cfg)
        return
    with pytest.raises(build.ConfigError, match=fragment.replace(".", r"\.")):
        build.check_config(cfg)


def test_fp16_on_cpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(build.ConfigError, match="fp16.*needs a CUDA device.*bf16"):
        build.check_config(compose_cfg("precision=fp16", "device=cpu"))


def test_batch_larger_than_dataset_is_rejected():
    cfg = compose_cfg("dataset.n_points=100", "batch_size=256")
    with pytest.raises(build.ConfigError, match="larger than dataset"):
        build.build_dataset(cfg, 0, torch.device("cpu"))


def test_wgan_gp_refuses_batchnorm_in_the_critic():
    cfg = compose_cfg("dataset=mnist", "model=dcgan", "model.nets.critic.batchnorm=true")
    with pytest.raises(build.ConfigError, match="BatchNorm"):
        build.build_method(cfg, torch.device("cpu"))


def test_conf_dir_is_the_repository_tree_in_editable_installs():
    assert (CONF / "config.yaml").is_file()


def test_eval_sampler_entries_take_options_and_labels():
    cfg = build.sampler_config(OmegaConf.create({"option": "drs", "calibrate_steps": 7, "name": "drs_cal"}))
    assert cfg.name == "drs_cal" and cfg.calibrate_steps == 7 and cfg.percentile == 80.0  # the rest: drs.yaml
    sampler = build.build_sampler(cfg)
    assert sampler.name == "drs_cal" and sampler.calibration.steps == 7
    assert build.sampler_config("mh").name == "mh"
    build.check_config(compose_cfg("eval.samplers=[drs,{option:drs,name:drs_cal,calibrate_steps:5}]"))


@pytest.mark.parametrize("entries, message", [
    ("[{option:drs,calibrat_steps:5}]", "unknown keys \\['calibrat_steps'\\]"),
    ("[{calibrate_steps:5}]", "needs `option: <sampler option>`"),
    ("[nosuch]", "no sampler option 'nosuch'"),
    ("[drs,{option:drs,percentile:90}]", "would overwrite each other"),
])
def test_bad_eval_sampler_entries_are_refused_before_training(entries, message):
    with pytest.raises(build.ConfigError, match=message):
        build.check_config(compose_cfg(f"eval.samplers={entries}"))
