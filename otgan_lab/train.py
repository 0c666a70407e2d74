"""`otlab train`: the Hydra app. `run(cfg, out_dir)` does the work and holds no Hydra globals."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from otgan_lab import __version__, build, checkpoint, records
from otgan_lab.amp import resolve_precision
from otgan_lab.paths import conf_dir


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _plain_config(cfg: DictConfig) -> dict[str, Any]:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # a broken interpolation is reported by the checks below; keep the raw form here
        return OmegaConf.to_container(cfg, resolve=False)


def _resume_path(cfg: DictConfig, ckpt_dir: Path) -> Path | None:
    found = checkpoint.list_checkpoints(ckpt_dir)
    if cfg.trainer.resume is True and not found:
        raise build.ConfigError(f"trainer.resume=true but {ckpt_dir} holds no checkpoint (step_*.pt)")
    if cfg.trainer.resume is False and found:
        raise build.ConfigError(
            f"{ckpt_dir.parent} already holds checkpoints; resume with trainer.resume=auto or choose a new "
            "hydra.run.dir"
        )
    return found[-1] if found else None


def run(cfg: DictConfig, out_dir: str | Path, *, group: str | None = None, overrides: list[str] | None = None,
        primary_metric: str | None = None) -> dict[str, Any]:
    """Train one configuration into `out_dir`; returns (and writes) the result record."""
    from otgan_lab.trainer import Trainer

    out_dir = Path(out_dir)
    started, t0 = _now(), time.perf_counter()
    record: dict[str, Any] = {
        "status": "running", "method": cfg.method.name, "dataset": cfg.dataset.name, "model": cfg.model.name,
        "sampler": getattr(cfg.sampler, "name", None) or cfg.sampler._target_.rsplit(".", 1)[-1],
        "seed": cfg.seed, "precision": cfg.precision, "overrides": list(overrides or []),
        "version": __version__, "run_dir": str(out_dir), "started": started,
        "config": _plain_config(cfg),
    }
    records.write_result(out_dir, record)
    try:
        build.check_config(cfg)
        device = build.resolve_device(cfg.device)
        precision = resolve_precision(cfg.precision, device)
        record.update(device=str(device), precision=precision.name)
        build.seed_everything(cfg.seed, cfg.num_threads)
        data = build.build_dataset(cfg, cfg.seed, device)  # missing files fail here, before any network
        method = build.build_method(cfg, device)
        sampler = build.build_sampler(cfg.sampler)
        record["sampler"] = sampler.name
        resume_from = _resume_path(cfg, out_dir / "checkpoints")
        logger = build.build_logger(cfg, out_dir, group=group)
        evaluator = build.build_evaluator(cfg, data, sampler, out_dir, logger)
        record["protocol"] = evaluator.protocol
        t = cfg.trainer
        trainer = Trainer(
            method, data, precision, out_dir, logger, steps=t.steps, log_every=t.log_every,
            eval_every=cfg.eval.every, checkpoint_every=t.checkpoint_every, keep_checkpoints=t.keep_checkpoints,
            grad_clip=t.grad_clip, optimizer_impl=t.optimizer_impl, lr_schedule=OmegaConf.to_container(t.lr_schedule, resolve=True) if t.lr_schedule else None,
            ema=OmegaConf.to_container(t.ema, resolve=True), eval_use_ema=cfg.eval.use_ema,
            eval_seed=cfg.eval.seed, evaluate=evaluator, config=OmegaConf.to_container(cfg, resolve=True),
            progress=t.progress,
        )
        if resume_from is not None:
            trainer.resume(resume_from)
            record["resumed_from"] = str(resume_from)
        with _graceful_stop(trainer):
            outcome = trainer.fit()
        record.update(
            status=outcome.status, steps=outcome.step, steps_per_sec=outcome.steps_per_sec,
            train_time=outcome.wall_time, final_losses=outcome.last_scalars, metrics=outcome.metrics,
            checkpoint=outcome.checkpoint,
        )
        record["samplers"] = {record["sampler"]: {"metrics": outcome.metrics, "protocol": evaluator.protocol,
                                                   "use_ema": bool(trainer.eval_use_ema)}}
        if outcome.status == "completed":
            for entry in cfg.eval.samplers:  # post-hoc samplers on the final weights, one record each
                sampler_cfg = build.sampler_config(entry)
                name = sampler_cfg.name
                if name == record["sampler"]:
                    continue
                extra = build.build_evaluator(cfg, data, build.build_sampler(sampler_cfg), out_dir, logger,
                                              primary=False)
                metrics = trainer.run_evaluation(extra)
                record["samplers"][name] = {"metrics": metrics, "protocol": extra.protocol,
                                            "use_ema": bool(trainer.eval_use_ema)}
        if primary_metric:
            record["primary_metric"] = primary_metric
        logger.finish(outcome.status, {f"final/{k}": v for k, v in outcome.metrics.items()})
    except BaseException as exc:
        record["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        record["error"] = f"{exc.__class__.__name__}: {exc}"
        if not isinstance(exc, (build.ConfigError, KeyboardInterrupt)):
            record["traceback"] = traceback.format_exc()
        raise
    finally:
        record.update(finished=_now(), wall_time=time.perf_counter() - t0)
        records.write_result(out_dir, record)
    return record


def _summary(record: dict[str, Any]) -> str:
    lines = [f"[{record['status']}] {record['method']} on {record['dataset']} ({record['model']}), "
             f"{record.get('steps', 0)} steps, {record.get('steps_per_sec', 0):.1f} it/s, "
             f"{record.get('wall_time', 0):.0f} s"]
    for key, value in record.get("metrics", {}).items():
        lines.append(f"  {key:>24s}: {value:.4g}" if isinstance(value, float) else f"  {key:>24s}: {value}")
    lines.append(f"  run dir: {record['run_dir']}")
    return "\n".join(lines)


def _interrupt_on_sigterm() -> None:
    """Schedulers (SLURM preemption, `timeout`, docker stop) send SIGTERM: treat it like Ctrl-C so the
    run saves a checkpoint and records `interrupted` (outside training it raises KeyboardInterrupt)."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def _graceful_stop(trainer):
    """During training the first Ctrl-C / SIGTERM asks the trainer to stop after the current step (a whole
    step, so the checkpoint is consistent); a second one aborts at once. A raw KeyboardInterrupt can be
    lost when it lands inside a finaliser (Python prints "Exception ignored" and goes on); a flag cannot."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if trainer.stop_requested:
            raise KeyboardInterrupt(f"signal {signum}")
        trainer.stop_requested = True
        print(f"\nsignal {signum}: stopping after this step (send it again to abort now)", flush=True)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _job_device(cfg: DictConfig, sweep_dir: str, job_index: int | None):
    """A sweep job with device=auto on a machine with several GPUs holds one of them (build.claim_gpu) and
    trains there; otherwise the device is left as configured (a SLURM job sees only its own GPU)."""
    import torch

    if job_index is None or cfg.device != "auto" or torch.cuda.device_count() < 2:
        yield
        return
    with build.claim_gpu(Path(sweep_dir) / ".gpu_locks", job_index) as device:
        cfg.device = str(device)
        yield


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from rich.console import Console

    _interrupt_on_sigterm()
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    console = Console(stderr=True, soft_wrap=True)
    try:
        primary = cfg.metrics.get("primary")
        with _job_device(cfg, hc.sweep.dir, hc.job.num if multirun else None):
            record = run(cfg, hc.runtime.output_dir, group=Path(hc.sweep.dir).name if multirun else None,
                         overrides=list(hc.overrides.task), primary_metric=primary)
    except build.ConfigError as exc:
        console.print(f"[bold red]otlab train:[/] {exc}")
        if multirun:
            return None
        sys.exit(2)
    except Exception as exc:
        if multirun:  # one failed job must not end the sweep; it is recorded as failed in result.json
            console.print(f"[bold red]job failed:[/] {exc.__class__.__name__}: {exc}")
            return None
        raise
    Console().print(_summary(record))
    if record["status"] == "interrupted":
        sys.exit(130)
    value = record.get("metrics", {}).get(primary) if primary else None
    return float(value) if isinstance(value, (int, float)) else None  # the sweeper's objective


def main() -> None:
    hydra_main()
