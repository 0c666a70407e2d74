"""`otlab eval`: evaluate a finished run from its checkpoint (with its saved config, not today's YAML), with
any sampler and metrics; measure the real-data floor of a dataset (test split vs train split); or score
anyone's samples (a folder of images, an .npz, a .pt) against a dataset or a folder.

A Hydra app (conf/eval.yaml): `otlab eval run=<dir> sampler=drs metrics=images eval.use_ema=true`. Results
are written into the run's result.json: one record per (sampler, protocol, EMA) in `evaluations`, and the
latest record per sampler in `samplers`, which `otlab table` reads. `otlab eval samples=PATH real=cifar10`
writes a record of its own (method "external") to `<PATH>.otlab.json` or `out=`; `otlab table` reads it.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from otgan_lab import __version__, build, records, runconfig
from otgan_lab.data.samples import MixedSizesError, match_reference, read_samples
from otgan_lab.data.splits import load_split
from otgan_lab.errors import ConfigError
from otgan_lab.paths import conf_dir
from otgan_lab.rundir import RunDir

# the app's own keys; everything else the user sets applies to the run's config
APP_KEYS = ("run", "real", "samples", "out", "resize")


def _print(title: str, metrics: dict[str, float]) -> None:
    table = Table(title=escape(title))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(escape(k), escape(f"{v:.5g}" if isinstance(v, float) else str(v)))
    Console().print(table)


def evaluate_run(run_dir: Path, cfg: DictConfig) -> dict[str, Any]:
    result, data, method, state, ckpt = runconfig.load_run(run_dir, cfg)
    use_ema = bool(cfg.eval.use_ema)
    sampler = build.build_sampler(cfg.sampler)
    build.check_samplers(method, [sampler])
    build.check_metrics(cfg, data)
    evaluator = build.build_evaluator(cfg, data, sampler, run_dir, None, primary=False)
    method.eval()
    torch.manual_seed(cfg.eval.seed)
    metrics = evaluator(method, int(state["step"]))
    entry = {"sampler": sampler.name, "metrics": metrics, "protocol": evaluator.protocol, "use_ema": use_ema,
             "step": int(state["step"]), "checkpoint": str(ckpt),
             "evaluated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    same = lambda e: (  # noqa: E731
        (e["sampler"], e["protocol"], e["use_ema"]) == (entry["sampler"], entry["protocol"], use_ema))
    result["evaluations"] = [e for e in result.get("evaluations", []) if not same(e)] + [entry]
    result.setdefault("samplers", {})[sampler.name] = {
        k: entry[k] for k in ("metrics", "protocol", "use_ema")}
    result["samplers"][sampler.name]["metric_specs"] = evaluator.metric_specs
    # an earlier failed evaluation of this sampler is redone
    errors = [f"{name}: {e['error']}" for name, e in result["samplers"].items()
              if isinstance(e, dict) and "error" in e]
    if errors:
        result["eval_error"] = "; ".join(errors)
    else:
        result.pop("eval_error", None)
    records.write_result(run_dir, result)
    _print(f"{result['method']} on {result['dataset']} — sampler {sampler.name}{' (EMA)' if use_ema else ''}",
           metrics)
    return entry


def reference_dataset(real: str, shape: tuple[int, ...] | None = None) -> tuple[str, DictConfig]:
    """(dataset option, its config) for `real=`: a dataset option's name, or a folder of images (the
    image_folder option, sized like the samples `shape` unless dataset.size / dataset.channels say)."""
    options = sorted(p.stem for p in (conf_dir() / "dataset").glob("*.yaml"))
    if real in options:
        return real, build.load_option("dataset", real)
    if Path(real).expanduser().is_dir():
        node = build.load_option("dataset", "image_folder")
        node.path = str(Path(real).expanduser().resolve())
        if shape is not None:
            node.channels, node.size = int(shape[0]), int(shape[-1])
        return "image_folder", node
    raise ConfigError(f"real={real}: neither a dataset ({', '.join(options)}) nor a folder of images")


def floor_config(app_cfg: DictConfig, real: str, argv: list[str],
                 shape: tuple[int, ...] | None = None) -> DictConfig:
    """A config that scores against `real` (a dataset or a folder): its dataset option, the metrics the app
    composed (the user's choice, else the dataset's own: runconfig.app_argv), the run-level defaults."""
    base = OmegaConf.load(conf_dir() / "config.yaml")
    for key in ("defaults", "hydra"):
        base.pop(key, None)
    _, base.dataset = reference_dataset(real, shape)
    base.metrics = app_cfg.metrics
    base.batch_size = 1
    return runconfig.run_config(OmegaConf.to_container(base, resolve=False), app_cfg, argv, APP_KEYS)


def evaluate_real(dataset: str, cfg: DictConfig) -> dict[str, float]:
    """The floor: metrics of the test split against the reference (training) split."""
    device = build.resolve_device(cfg.device)
    data = build.build_dataset(cfg, 0, device)
    test = load_split(data, "test")
    n = min(int(cfg.eval.n_samples), len(test))
    build.check_metrics(cfg, data)
    evaluator = build.build_evaluator(cfg, data, None, Path("."), None)
    metrics = evaluator.suite_metrics(test.all(0, n))
    _print(f"real-data floor: {dataset} test ({n}) vs train", metrics)
    return metrics


class _ExternalSamples:
    """Stands in for a sampler in the protocol: the samples came from outside otlab."""

    name = "external"
    stat_specs: dict = {}


def default_record_path(samples: Path) -> Path:
    return samples.with_name(samples.name + ".otlab.json")


def evaluate_samples(samples: Path, images: torch.Tensor, samples_format: str, real: str, cfg: DictConfig,
                     out: str | None, resize: bool) -> dict[str, Any]:
    """Score `images` (read from `samples`) against `real` with the configured metric suites, protocol and
    reference cache of otlab's own runs; write a record that `otlab table` reads."""
    start = time.perf_counter()
    device = build.resolve_device(cfg.device)
    data = build.build_dataset(cfg, 0, device)
    fake, change = match_reference(images, tuple(data.shape), resize, samples)
    cfg.eval.n_samples = len(fake)  # every sample is scored
    build.check_metrics(cfg, data)
    evaluator = build.build_evaluator(cfg, data, _ExternalSamples(), Path("."), None)
    metrics = evaluator.suite_metrics(fake.to(device))
    protocol = evaluator.protocol
    if change:
        protocol["samples_transform"] = change
    path = Path(out).expanduser() if out else default_record_path(samples)
    config = {"samples": str(samples.resolve()), "real": real, "resize": bool(resize),
              "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
              "metrics": OmegaConf.to_container(cfg.metrics, resolve=True)}
    record = {"status": "completed", "method": "external", "sampler": "external", "model": "external",
              "dataset": data.name, "seed": None, "samples": config["samples"],
              "samples_format": samples_format,
              "n_samples": len(fake), "metrics": metrics, "metric_specs": evaluator.metric_specs,
              "protocol": protocol, "primary_metric": cfg.metrics.get("primary"), "config": config,
              "wall_time": time.perf_counter() - start, "otgan_lab_version": __version__,
              "evaluated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    records.write_json_atomic(path, record)
    note = f", {change}" if change else ""
    _print(f"{len(fake)} samples from {samples} ({samples_format}{note}) vs {real}", metrics)
    print(f"record: {path}")
    return record


_ARGV: list[str] = []  # the user's own arguments (without the run's group choices added for Hydra)


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="eval")
def hydra_main(app_cfg: DictConfig) -> None:
    with runconfig.user_errors("eval"):
        if app_cfg.samples is not None:
            if app_cfg.real is None or app_cfg.run is not None:
                raise ConfigError("samples=<path> is scored against real=<dataset or folder>, not a run "
                                  "(otlab eval --help)")
            if not isinstance(app_cfg.resize, bool):
                raise ConfigError(f"resize must be true or false, got {app_cfg.resize!r}")
            samples = Path(str(app_cfg.samples)).expanduser()
            try:
                images, samples_format = read_samples(samples)
            except MixedSizesError:  # resize=true: each file to the reference's size
                if not app_cfg.resize:
                    raise
                images = None
            shape = None if images is None else tuple(images.shape[1:])
            cfg = floor_config(app_cfg, str(app_cfg.real), _ARGV, shape)
            if images is None:
                images, samples_format = read_samples(samples, size=tuple(cfg.dataset.shape)[1:])
            evaluate_samples(samples, images, samples_format, str(app_cfg.real), cfg, app_cfg.out,
                             app_cfg.resize)
            return
        if (app_cfg.run is None) == (app_cfg.real is None):
            raise ConfigError("give exactly one of run=<run dir> or real=<dataset> (otlab eval --help)")
        if app_cfg.run is not None:
            run_dir = Path(app_cfg.run)
            cfg = runconfig.run_config(runconfig.saved_config(run_dir), app_cfg, _ARGV, APP_KEYS)
            with RunDir(run_dir):  # one writer of result.json at a time: refused while a run trains here
                evaluate_run(run_dir, cfg)
        else:
            evaluate_real(str(app_cfg.real), floor_config(app_cfg, str(app_cfg.real), _ARGV))


def main() -> None:
    runconfig.launch(hydra_main, _ARGV)
