"""`otlab train`: the Hydra app. `run(cfg, out_dir)` does the work and holds no Hydra globals."""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from otgan_lab import __version__, build, checkpoint, records
from otgan_lab.amp import resolve_precision
from otgan_lab.errors import ConfigError, OtlabError, RunDirError
from otgan_lab.loggers import protocol_config
from otgan_lab.metrics.spec import specs_record
from otgan_lab.paths import conf_dir
from otgan_lab.progress import TRANSCRIPT
from otgan_lab.rundir import RunDir
from otgan_lab.stopping import graceful_stop, interrupt_on_sigterm


def _short_dirname(text: str, limit: int = 120) -> str:
    """A sweep job's folder name from its overrides, cut to `limit` characters with a hash of the whole kept
    (a sweep with many overrides, e.g. an Optuna preset, otherwise fails with 'File name too long')."""
    if len(text) <= limit:
        return text
    import hashlib

    return f"{text[: limit - 9]}_{hashlib.sha1(text.encode()).hexdigest()[:8]}"


# registered on import: Hydra resolves it in every job process
if not OmegaConf.has_resolver("otlab.dirname"):
    OmegaConf.register_new_resolver("otlab.dirname", _short_dirname)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _plain_config(cfg: DictConfig) -> dict[str, Any]:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # a broken interpolation is reported by the checks below; keep the raw form here
        return OmegaConf.to_container(cfg, resolve=False)


def _resume_checkpoint(cfg: DictConfig, ckpt_dir: Path, say) -> tuple[Path | None, dict[str, Any] | None]:
    """The newest readable checkpoint and its state. An unreadable one (a truncated write, a bad disk) is
    renamed `*.unreadable`, reported, and the previous one is tried."""
    found = checkpoint.list_checkpoints(ckpt_dir)
    if cfg.trainer.resume is True and not found:
        raise ConfigError(f"trainer.resume=true but {ckpt_dir} holds no checkpoint (step_*.pt)")
    if cfg.trainer.resume is False and found:
        raise ConfigError(
            f"{ckpt_dir.parent} already holds checkpoints; resume with trainer.resume=auto or choose a new "
            "hydra.run.dir"
        )
    for path in reversed(found):
        try:
            return path, checkpoint.load(path, map_location="cpu")
        except checkpoint.CheckpointError as exc:
            cause = exc.__cause__ or exc
            bad = path.with_name(path.name + ".unreadable")
            path.rename(bad)
            reason = str(cause).split(". ")[0]
            say(f"skipping checkpoint {path.name}: unreadable ({cause.__class__.__name__}: {reason}); "
                f"kept as {bad.name}")
    if found:
        if cfg.trainer.resume is True:
            raise checkpoint.CheckpointError(
                f"trainer.resume=true but no checkpoint in {ckpt_dir} can be read")
        say("no readable checkpoint left: training from step 0 "
            "(the run's completed record, if any, stays until this one completes)")
    return None, None


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
    TRANSCRIPT.info(text)


def _sampler_label(cfg: DictConfig) -> str:
    return getattr(cfg.sampler, "name", None) or cfg.sampler._target_.rsplit(".", 1)[-1]


def run(cfg: DictConfig, out_dir: str | Path, *, group: str | None = None, overrides: list[str] | None = None,
        primary_metric: str | None = None, multirun: bool = False) -> dict[str, Any]:
    """Train one configuration into `out_dir`; returns (and writes) the result record.

    Everything that can be checked is checked before training (config values, the run dir's lock and
    identity, data files, the model for this data, sampler and metric requirements, checkpoints), and a
    refusal changes nothing in a used dir (a fresh one is left empty). Once training starts, result.json
    says `running`, then the outcome, except that a completed record is never replaced by a worse one
    (records.may_replace); every attempt is logged in attempts.jsonl.
    """
    rundir = RunDir(out_dir)
    rundir.check_usable()
    fresh = rundir.is_fresh()
    try:
        rundir.acquire()
    except RunDirError as exc:
        rundir.log_attempt("refused", status="refused", error=str(exc), overrides=list(overrides or []))
        raise
    try:
        return _run_locked(cfg, rundir, fresh, group=group, overrides=list(overrides or []),
                           primary_metric=primary_metric, multirun=multirun)
    finally:
        rundir.release()


def _run_locked(cfg: DictConfig, rundir: RunDir, fresh: bool, *, group: str | None, overrides: list[str],
                primary_metric: str | None, multirun: bool) -> dict[str, Any]:
    from otgan_lab.trainer import Trainer

    out_dir = rundir.path
    started, t0 = _now(), time.perf_counter()
    config = _plain_config(cfg)
    existing = records.read_existing(out_dir)
    record: dict[str, Any] = {
        "status": "running", "method": cfg.method.name, "dataset": cfg.dataset.name, "model": cfg.model.name,
        "sampler": _sampler_label(cfg), "seed": cfg.seed, "precision": cfg.precision, "overrides": overrides,
        "version": __version__, "run_dir": str(out_dir), "started": started, "attempt": rundir.attempt,
        "primary_metric": primary_metric, "config": config,
    }

    # -- before training: every check; a refusal leaves the dir as it was --------------------------------
    try:
        build.check_config(cfg)
        rundir.check_identity(config)
        device = build.resolve_device(cfg.device)
        precision = resolve_precision(cfg.precision, device)
        build.seed_everything(cfg.seed, cfg.num_threads)
        data = build.build_dataset(cfg, cfg.seed, device)  # missing files fail here, before any network
        method = build.build_method(cfg, device)
        sampler = build.build_sampler(cfg.sampler)
        extra_samplers = [build.build_sampler(build.sampler_config(e)) for e in cfg.eval.samplers]
        extra_samplers = [s for s in extra_samplers if s.name != sampler.name]
        build.check_samplers(method, [sampler, *extra_samplers])
        build.check_metrics(cfg, data)
        resume_from, resume_state = _resume_checkpoint(cfg, out_dir / "checkpoints", _say)
    except BaseException as exc:
        _refused(rundir, fresh, record, exc, multirun)
        raise

    # -- training ----------------------------------------------------------------------------------------
    rundir.write_identity(config, rundir.hydra_files())
    for leftover in rundir.remove_leftovers():
        _say(f"removed {leftover.name}: left by an interrupted write")
    record.update(device=str(device), precision=precision.name, sampler=sampler.name)
    rundir.log_attempt("start", overrides=overrides,
                       from_step=int(resume_state["step"]) if resume_state else 0,
                       steps=int(cfg.trainer.steps))
    _write_record(out_dir, existing, record)
    logger = None
    try:
        logger = build.build_logger(cfg, out_dir, group=group)
        evaluator = build.build_evaluator(cfg, data, sampler, out_dir, logger)
        record["protocol"] = evaluator.protocol
        logger.describe(protocol_config(evaluator.protocol))  # W&B config: the FID backbone, sample counts
        record["metric_specs"] = {**specs_record(type(method).fit_end_specs), **evaluator.metric_specs}
        t = cfg.trainer
        trainer = Trainer(
            method, data, precision, out_dir, logger, steps=t.steps, log_every=t.log_every,
            eval_every=cfg.eval.every, checkpoint_every=t.checkpoint_every,
            keep_checkpoints=t.keep_checkpoints, grad_clip=t.grad_clip, optimizer_impl=t.optimizer_impl,
            lr_schedule=OmegaConf.to_container(t.lr_schedule, resolve=True) if t.lr_schedule else None,
            ema=OmegaConf.to_container(t.ema, resolve=True), eval_use_ema=cfg.eval.use_ema,
            eval_seed=cfg.eval.seed, evaluate=evaluator, config=config, progress=t.progress,
        )
        if resume_state is not None:
            trainer.load_state_dict(resume_state, source=str(resume_from))
            record["resumed_from"] = str(resume_from)
            _say(f"resumed from step {trainer.step} ({resume_from})")
            del resume_state
        with graceful_stop(trainer):
            outcome = trainer.fit()
        record.update(
            status=outcome.status, steps=outcome.step, steps_per_sec=outcome.steps_per_sec,
            train_time=outcome.wall_time, final_losses=outcome.last_scalars, metrics=outcome.metrics,
            checkpoint=outcome.checkpoint,
        )
        use_ema = bool(trainer.eval_use_ema)
        record["samplers"] = {record["sampler"]: records.sampler_entry(outcome.metrics, evaluator, use_ema,
                                                                outcome.eval_error)}
        if outcome.eval_errors:
            record["eval_errors"] = {str(k): v for k, v in outcome.eval_errors.items()}
        if outcome.status == "completed":
            for extra_sampler in extra_samplers:  # post-hoc samplers on the final weights, one record each
                extra = build.build_evaluator(cfg, data, extra_sampler, out_dir, logger, primary=False)
                _say(f"evaluating with sampler {extra_sampler.name}...")
                metrics, error = trainer.try_evaluation(extra)
                record["samplers"][extra_sampler.name] = records.sampler_entry(metrics, extra, use_ema, error)
        errors = {name: e["error"] for name, e in record["samplers"].items() if "error" in e}
        if errors:
            record["eval_error"] = "; ".join(f"{name}: {e}" for name, e in errors.items())
        logger.finish(outcome.status, {f"final/{k}": v for k, v in outcome.metrics.items()})
    except BaseException as exc:
        record["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        record["error"] = f"{exc.__class__.__name__}: {exc}"
        if not isinstance(exc, (OtlabError, KeyboardInterrupt)):
            record["traceback"] = traceback.format_exc()
        if logger is not None:
            with contextlib.suppress(Exception):
                logger.finish(record["status"], {})
        raise
    finally:
        record.update(finished=_now(), wall_time=time.perf_counter() - t0)
        kept = _write_record(out_dir, existing, record)
        rundir.log_attempt("end", status=record["status"], steps=record.get("steps"),
                           error=record.get("error"), eval_error=record.get("eval_error"),
                           result_json="written" if kept else "kept the earlier completed record")
        if not kept:
            record["kept_record"] = ("result.json keeps the earlier completed run; "
                                     "this attempt is in attempts.jsonl")
    return record


def _write_record(out_dir: Path, existing: dict[str, Any] | None, record: dict[str, Any]) -> bool:
    """Write result.json unless that would downgrade a completed record; True when written."""
    if not records.may_replace(existing, record["status"]):
        return False
    records.write_result(out_dir, record)
    return True


def _refused(rundir: RunDir, fresh: bool, record: dict[str, Any], exc: BaseException, multirun: bool) -> None:
    """A command stopped before training. A used dir is left as it was (Hydra's .hydra files restored, one
    line in attempts.jsonl). A fresh dir: nothing left for a single run (the message is the record); a sweep
    job keeps a `failed` record so that the sweep's table and summary show it."""
    error = f"{exc.__class__.__name__}: {exc}"
    if not fresh:
        rundir.restore_hydra_files()
        rundir.log_attempt("refused", status="refused", error=error, overrides=record["overrides"])
        return
    if multirun or not isinstance(exc, (OtlabError, KeyboardInterrupt)):
        record.update(status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", error=error,
                      finished=_now(), stage="before training")
        if not isinstance(exc, (OtlabError, KeyboardInterrupt)):
            record["traceback"] = traceback.format_exc()
        records.write_result(rundir.path, record)
        rundir.log_attempt("refused", status=record["status"], error=error, overrides=record["overrides"])
        return
    rundir.release()
    rundir.remove_scaffolding()


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
    from rich.markup import escape

    interrupt_on_sigterm()
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    console = Console(stderr=True, soft_wrap=True)
    primary = cfg.metrics.get("primary") if isinstance(cfg.get("metrics"), DictConfig) else None
    try:
        with _job_device(cfg, hc.sweep.dir, hc.job.num if multirun else None):
            record = run(cfg, hc.runtime.output_dir, group=Path(hc.sweep.dir).name if multirun else None,
                         overrides=list(hc.overrides.task), primary_metric=primary, multirun=multirun)
    except OtlabError as exc:  # bad input: one message, no traceback
        console.print(f"[bold red]otlab train:[/] {escape(str(exc))}")
        if multirun:  # the job's record says it failed; the sweep goes on and exits non-zero at the end
            return None
        sys.exit(2)
    except Exception as exc:
        if multirun:  # one failed job must not end the sweep; it is recorded as failed in result.json
            console.print(f"[bold red]job failed:[/] {escape(f'{exc.__class__.__name__}: {exc}')}")
            return None
        raise
    print(records.summary_text(record), flush=True)
    TRANSCRIPT.info(records.summary_text(record))
    if record["status"] == "interrupted":
        sys.exit(130)
    value = record.get("metrics", {}).get(primary) if primary else None
    return float(value) if isinstance(value, (int, float)) else None  # the sweeper's objective


def main() -> None:
    from otgan_lab.callbacks import OtlabCallbacks, describe_failures
    from otgan_lab.cli import add_user_import_paths

    add_user_import_paths(sys.argv[1:])  # `_target_: my_nets.Gen` from the user's folder or --config-dir
    hydra_main()
    outcomes = OtlabCallbacks.last
    if outcomes and any(o.failed for o in outcomes):
        print(describe_failures(outcomes), file=sys.stderr, flush=True)
        sys.exit(1)
