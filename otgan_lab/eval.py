"""`otlab eval`: evaluate a finished run from its checkpoint (with its saved config, not today's YAML), with
any sampler and metrics; or measure the real-data floor of a dataset (train vs test split).

    otlab eval run=outputs/runs/<dir> [sampler=drs] [metrics=images] [eval.use_ema=true] [eval.n_samples=N]
               [sampler.percentile=95] [metrics.fid.backbone=inception] [device=cpu]
    otlab eval real=mnist [metrics=images] [eval.n_samples=10000]

Results are written into the run's result.json: one record per (sampler, protocol, EMA) in `evaluations`,
and the latest record per sampler in `samplers`, which `otlab table` reads.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from otgan_lab import build, checkpoint, records
from otgan_lab.data.images import image_dataset
from otgan_lab.errors import OtlabError
from otgan_lab.rundir import RunDir

USAGE = __doc__.split("\n\n")[1]
_GROUPS = ("sampler", "metrics")


def split_key_values(argv: list[str], special_keys: tuple[str, ...], usage: str) -> tuple[dict[str, str], list[str]]:
    """key=value arguments of a non-Hydra command: `special_keys` apart, dotted overrides kept in order.
    -h/--help or no argument prints `usage` and exits."""
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(usage)
        sys.exit(0)
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise build.ConfigError(f"arguments must be key=value, got {bad}\n{usage}")
    special, dotted = {}, []
    for arg in argv:
        key, value = arg.split("=", 1)
        if key in special_keys:
            special[key] = value
        else:
            dotted.append(arg)
    return special, dotted


def parse_args(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """key=value arguments: `run`/`real` and group choices apart, dotted overrides kept in order."""
    special, dotted = split_key_values(argv, ("run", "real", "device", *_GROUPS), USAGE)
    if ("run" in special) == ("real" in special):
        raise build.ConfigError(f"give exactly one of run=<run dir> or real=<dataset>\n{USAGE}")
    return special, dotted


def compose(base: DictConfig, special: dict[str, str], dotted: list[str]) -> DictConfig:
    cfg = OmegaConf.create(OmegaConf.to_container(base, resolve=False))
    for group in _GROUPS:
        if group in special:
            cfg[group] = build.load_option(group, special[group])
    if "device" in special:
        cfg.device = special["device"]
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotted)) if dotted else cfg


def _print(title: str, metrics: dict[str, float]) -> None:
    table = Table(title=escape(title))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(escape(k), escape(f"{v:.5g}" if isinstance(v, float) else str(v)))
    Console().print(table)


def load_run(run_dir: Path, special: dict[str, str], dotted: list[str]):
    """(result, cfg, data, method with the last checkpoint's weights, checkpoint state, checkpoint path)."""
    result = records.read_result(run_dir)
    cfg = compose(OmegaConf.create(result["config"]), special, dotted)
    found = checkpoint.list_checkpoints(run_dir / "checkpoints")
    if not found:
        raise build.ConfigError(f"{run_dir / 'checkpoints'} holds no checkpoint to load")
    device = build.resolve_device(cfg.device)
    build.seed_everything(cfg.seed, cfg.get("num_threads"))
    data = build.build_dataset(cfg, cfg.seed, device)
    method = build.build_method(cfg, device)
    state = checkpoint.load(found[-1], map_location=device)
    method.load_state_dict(state["method"])
    if cfg.eval.use_ema:
        if state.get("ema") is None:
            raise build.ConfigError(f"eval.use_ema=true but {found[-1].name} holds no EMA weights (trained without EMA)")
        method.ema_module.load_state_dict(state["ema"])
    return result, cfg, data, method, state, found[-1]


def evaluate_run(run_dir: Path, special: dict[str, str], dotted: list[str]) -> dict[str, Any]:
    result, cfg, data, method, state, ckpt = load_run(run_dir, special, dotted)
    use_ema = bool(cfg.eval.use_ema)
    sampler = build.build_sampler(cfg.sampler)
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


def evaluate_real(dataset: str, special: dict[str, str], dotted: list[str]) -> dict[str, float]:
    """The floor: metrics of the test split against the reference (training) split."""
    from otgan_lab.paths import conf_dir

    base = OmegaConf.load(conf_dir() / "config.yaml")
    base.pop("defaults", None)
    base.pop("hydra", None)
    base.dataset = build.load_option("dataset", dataset)
    base.metrics = build.load_option("metrics", special.get("metrics", "images"))
    base.batch_size = 1
    cfg = compose(base, {k: v for k, v in special.items() if k != "metrics"}, dotted)
    device = build.resolve_device(cfg.device)
    data = build.build_dataset(cfg, 0, device)
    test = image_dataset(dataset, root=data.meta["root"], split="test", classes=data.meta.get("classes"),
                         download=False, device=device)
    n = min(int(cfg.eval.n_samples), len(test))
    evaluator = build.build_evaluator(cfg, data, None, Path("."), None)
    metrics = evaluator.suite_metrics(test.all(0, n))
    _print(f"real-data floor: {dataset} test ({n}) vs train", metrics)
    return metrics


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        special, dotted = parse_args(argv)
        if "run" in special:
            run_dir = Path(special["run"])
            if not (run_dir / records.RESULT_FILE).is_file():
                raise build.ConfigError(f"{run_dir} is not a run directory (no result.json)")
            with RunDir(run_dir):  # one writer of result.json at a time: refused while a run trains here
                evaluate_run(run_dir, special, dotted)
        else:
            evaluate_real(special["real"], special, dotted)
    except OtlabError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]otlab eval:[/] {escape(str(exc))}")
        sys.exit(2)
