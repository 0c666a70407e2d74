"""`otlab eval`: evaluate a finished run from its checkpoint (with its saved config, not today's YAML), with
any sampler and metrics; or measure the real-data floor of a dataset (test split vs train split).

A Hydra app (conf/eval.yaml): `otlab eval run=<dir> sampler=drs metrics=images eval.use_ema=true`. Results
are written into the run's result.json: one record per (sampler, protocol, EMA) in `evaluations`, and the
latest record per sampler in `samplers`, which `otlab table` reads.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from otgan_lab import build, records, runconfig
from otgan_lab.data.images import image_dataset
from otgan_lab.errors import ConfigError, OtlabError
from otgan_lab.paths import conf_dir
from otgan_lab.rundir import RunDir

APP_KEYS = ("run", "real")  # the app's own keys; everything else the user sets applies to the run's config


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
    same = lambda e: (e["sampler"], e["protocol"], e["use_ema"]) == (entry["sampler"], entry["protocol"], use_ema)  # noqa: E731
    result["evaluations"] = [e for e in result.get("evaluations", []) if not same(e)] + [entry]
    result.setdefault("samplers", {})[sampler.name] = {k: entry[k] for k in ("metrics", "protocol", "use_ema")}
    result["samplers"][sampler.name]["metric_specs"] = evaluator.metric_specs
    errors = [f"{name}: {e['error']}" for name, e in result["samplers"].items()
              if isinstance(e, dict) and "error" in e]  # an earlier failed evaluation of this sampler is redone
    if errors:
        result["eval_error"] = "; ".join(errors)
    else:
        result.pop("eval_error", None)
    records.write_result(run_dir, result)
    _print(f"{result['method']} on {result['dataset']} — sampler {sampler.name}{' (EMA)' if use_ema else ''}",
           metrics)
    return entry


def floor_config(app_cfg: DictConfig, dataset: str, argv: list[str]) -> DictConfig:
    """A config that measures `dataset`'s floor: its option, the chosen metrics, the run-level defaults."""
    base = OmegaConf.load(conf_dir() / "config.yaml")
    for key in ("defaults", "hydra"):
        base.pop(key, None)
    base.dataset = build.load_option("dataset", dataset)
    base.metrics = app_cfg.metrics
    base.batch_size = 1
    return runconfig.run_config(OmegaConf.to_container(base, resolve=False), app_cfg, argv, APP_KEYS)


def evaluate_real(dataset: str, cfg: DictConfig) -> dict[str, float]:
    """The floor: metrics of the test split against the reference (training) split."""
    device = build.resolve_device(cfg.device)
    data = build.build_dataset(cfg, 0, device)
    test = image_dataset(dataset, root=data.meta["root"], split="test", classes=data.meta.get("classes"),
                         download=False, device=device)
    n = min(int(cfg.eval.n_samples), len(test))
    evaluator = build.build_evaluator(cfg, data, None, Path("."), None)
    metrics = evaluator.suite_metrics(test.all(0, n))
    _print(f"real-data floor: {dataset} test ({n}) vs train", metrics)
    return metrics


_ARGV: list[str] = []  # the user's own arguments (without the run's group choices added for Hydra)


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="eval")
def hydra_main(app_cfg: DictConfig) -> None:
    try:
        if (app_cfg.run is None) == (app_cfg.real is None):
            raise ConfigError("give exactly one of run=<run dir> or real=<dataset> (otlab eval --help)")
        if app_cfg.run is not None:
            run_dir = Path(app_cfg.run)
            cfg = runconfig.run_config(runconfig.saved_config(run_dir), app_cfg, _ARGV, APP_KEYS)
            with RunDir(run_dir):  # one writer of result.json at a time: refused while a run trains here
                evaluate_run(run_dir, cfg)
        else:
            evaluate_real(str(app_cfg.real), floor_config(app_cfg, str(app_cfg.real), _ARGV))
    except OtlabError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]otlab eval:[/] {escape(str(exc))}")
        sys.exit(2)


def main() -> None:
    _ARGV[:] = sys.argv[1:]
    sys.argv[1:] = runconfig.app_argv(_ARGV)
    hydra_main()
