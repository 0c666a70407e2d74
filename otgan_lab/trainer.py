"""THE training loop. It runs any method through the method contract and never names one.

Per generator iteration: train_step (under the precision policy) -> EMA update -> finiteness flag kept on
the device. Every `log_every` steps one host sync turns the step's scalars into floats for the logs and
checks the flag; every `eval_every` steps the evaluation hook runs (EMA weights optional, RNG forked so
evaluation never changes the training stream); every `checkpoint_every` steps an atomic checkpoint holds
everything needed to resume bit-exactly on CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__, checkpoint
from .amp import Precision, StepContext
from .data.base import DeviceDataset
from .ema import EMA
from .loggers import Logger, training_rates
from .methods.base import Method
from .progress import ProgressReporter
from .schedule import StepSchedule

Evaluate = Callable[[Method, int], dict[str, float]]
MAX_SKIPPED = 50  # fp16: consecutive loss-scaler skips (scale / 2**50) before a run counts as diverged


@dataclass
class TrainOutcome:
    status: str  # completed | diverged | interrupted
    step: int
    wall_time: float
    steps_per_sec: float
    last_scalars: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: str | None = None
    eval_error: str | None = None  # the final evaluation's error; training itself completed
    eval_errors: dict[int, str] = field(default_factory=dict)  # step -> error, periodic evaluations


class Trainer:
    def __init__(
        self,
        method: Method,
        data: DeviceDataset,
        precision: Precision,
        out_dir: str | Path,
        logger: Logger,
        *,
        steps: int,
        log_every: int = 100,
        eval_every: int = 0,
        checkpoint_every: int = 1000,
        keep_checkpoints: int = 2,
        grad_clip: float | None = None,
        optimizer_impl: str = "auto",
        lr_schedule: dict[str, Any] | None = None,
        ema: dict[str, Any] | None = None,
        eval_use_ema: bool = False,
        eval_seed: int = 12345,
        evaluate: Evaluate | None = None,
        config: dict[str, Any] | None = None,
        progress: bool | None = None,
    ) -> None:
        self.method, self.data, self.logger = method, data, logger
        self.out_dir, self.ckpt_dir = Path(out_dir), Path(out_dir) / "checkpoints"
        self.steps, self.log_every, self.eval_every = steps, max(1, log_every), eval_every
        self.checkpoint_every, self.keep_checkpoints = checkpoint_every, keep_checkpoints
        self.evaluate, self.eval_seed, self.config, self.progress = (
            evaluate, eval_seed, config or {}, progress)
        self.optimizers = method.configure_optimizers(optimizer_impl)
        self.ctx = StepContext(self.optimizers, precision, grad_clip)
        self.schedule = StepSchedule(self.optimizers, **lr_schedule) if lr_schedule else None
        ema = dict(ema or {})
        self.ema = (EMA(method.ema_module, **{k: v for k, v in ema.items() if k != "enabled"})
                    if ema.get("enabled") else None)
        self.eval_use_ema = eval_use_ema and self.ema is not None
        self.step = 0
        self.stop_requested = False  # set from a signal handler: stop cleanly after the current step
        self._finite = torch.ones((), dtype=torch.bool, device=method.device)
        self._skip_streak = torch.zeros((), dtype=torch.long, device=method.device)

    # -- state ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": checkpoint.FORMAT_VERSION,
            "version": __version__,
            "step": self.step,
            "method": self.method.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scalers": self.ctx.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "data": self.data.state_dict(),
            "rng": checkpoint.rng_state(),
            "config": self.config,
        }

    def load_state_dict(self, state: dict[str, Any], source: str = "checkpoint") -> None:
        try:
            self.method.load_state_dict(state["method"])
            for name, opt in self.optimizers.items():
                # the kernel (fused / foreach) is this run's trainer.optimizer_impl, not the checkpoint's
                kernels = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in opt.param_groups]
                opt.load_state_dict(state["optimizers"][name])
                for group, kernel in zip(opt.param_groups, kernels):
                    group.update(kernel)
            if self.schedule is not None:
                self.schedule.reset()  # the loaded rates are re-derived from the step
            self.ctx.load_state_dict(state["scalers"])
            if self.ema is not None and state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            self.data.load_state_dict(state["data"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise checkpoint.CheckpointError(
                f"{source} does not fit this run's method/model ({exc.__class__.__name__}: {exc}). "
                "Resume with the same config, or start in a new run directory."
            ) from exc
        checkpoint.set_rng_state(state["rng"])
        self.step = int(state["step"])

    def resume(self, path: str | Path) -> None:
        self.load_state_dict(checkpoint.load(path, map_location="cpu"), source=str(path))

    def save_checkpoint(self) -> Path | None:
        """Atomic write of the current state, unless it is no longer finite (the last good one stays)."""
        if not bool(self._finite):
            return None
        path = checkpoint.save_atomic(self.state_dict(), checkpoint.checkpoint_path(self.ckpt_dir, self.step))
        checkpoint.prune(self.ckpt_dir, self.keep_checkpoints)
        return path

    # -- evaluation -----------------------------------------------------------------------------------
    def run_evaluation(self, evaluate: Evaluate | None = None) -> dict[str, float]:
        """Evaluate now (with EMA weights if configured) in a forked RNG stream; `evaluate` defaults to the
        trainer's hook."""
        evaluate = evaluate or self.evaluate
        if evaluate is None:
            return {}
        devices = [self.method.device] if self.method.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.eval_seed)
            self.method.eval()
            try:
                if self.eval_use_ema:
                    with self.ema.applied(self.method.ema_module):
                        metrics = evaluate(self.method, self.step)
                else:
                    metrics = evaluate(self.method, self.step)
            finally:
                self.method.train()
        if metrics:
            prefix = f"eval/{getattr(evaluate, 'name', '')}/".replace("//", "/")
            self.logger.log_scalars(self.step, {f"{prefix}{k}": v for k, v in metrics.items()})
        return metrics

    def try_evaluation(self, evaluate: Evaluate | None = None) -> tuple[dict[str, float], str | None]:
        """run_evaluation, with an evaluation's error returned as a message instead of raised: a sampler or
        metric failure is recorded against that evaluation and never costs the trained weights."""
        try:
            return self.run_evaluation(evaluate), None
        except Exception as exc:
            return {}, f"{exc.__class__.__name__}: {exc}"

    def _step_finite(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """Device flag: this step's scalars are finite. Under fp16 a step whose loss scaler skipped its update
        (an overflowing scaled gradient) may report a NaN penalty by design: it is not a divergence unless the
        scaler keeps skipping (MAX_SKIPPED steps in a row: the loss itself is non-finite)."""
        finite = torch.stack([torch.isfinite(v).all() for v in out.values()]).all()
        if self.ctx.skipped is None:  # no scaler stepped (fp32, bf16: no device op on this hot path)
            if self.ctx.scalers:
                self._skip_streak.zero_()
            return finite
        self._skip_streak.add_(1).mul_(self.ctx.skipped)
        return finite | (self.ctx.skipped & (self._skip_streak <= MAX_SKIPPED))

    # -- the loop -------------------------------------------------------------------------------------
    def fit(self) -> TrainOutcome:
        status, scalars, metrics, eval_errors = "completed", {}, {}, {}
        start_step, t0 = self.step, time.perf_counter()
        self.method.train()
        with ProgressReporter(self.steps, start=self.step, enabled=self.progress) as bar:
            try:
                while self.step < self.steps:
                    self.ctx.begin_step(self.step)
                    if self.schedule is not None:
                        self.schedule.apply(self.step)
                    with self.ctx.autocast():
                        out = self.method.train_step(self.data.batch, self.ctx)
                    self.step += 1
                    if self.ema is not None:
                        self.ema.update(self.method.ema_module, self.step)
                    self._finite &= self._step_finite(out)
                    if self.step % self.log_every == 0 or self.step == self.steps:
                        values = torch.stack([v.detach().float() for v in out.values()]).tolist()  # the sync
                        scalars = dict(zip(out, values))
                        bar.update(self.step, scalars)
                        rates = training_rates(self.optimizers, bar.steps_per_sec)  # lr/*, speed/*
                        self.logger.log_scalars(self.step, {**scalars, **rates})
                        if not bool(self._finite):
                            status = "diverged"
                            bar.message(f"non-finite loss by step {self.step}: stopping; "
                                        "last good checkpoint kept")
                            break
                    # the last step's evaluation comes after the final checkpoint, below
                    if self.step < self.steps and self.eval_every and self.step % self.eval_every == 0:
                        with bar.phase("evaluating", self.step):
                            metrics, error = self.try_evaluation()
                        if error is not None:
                            if error not in eval_errors.values():
                                bar.message(f"evaluation at step {self.step} failed ({error}); "
                                            "training goes on")
                            eval_errors[self.step] = error
                    if (self.step < self.steps and self.checkpoint_every
                            and self.step % self.checkpoint_every == 0):
                        self.save_checkpoint()
                    if self.stop_requested and self.step < self.steps:
                        raise KeyboardInterrupt("stop requested")
            except KeyboardInterrupt:
                status = "interrupted"
                bar.message(f"interrupted at step {self.step}: saving a checkpoint")
        wall = time.perf_counter() - t0
        rate = (self.step - start_step) / wall if wall > 0 else 0.0
        ckpt, eval_error = None, None
        if status == "interrupted":
            ckpt = self.save_checkpoint()
        elif status == "completed":
            # the post-training solve is part of the model (buffers): it goes into the final checkpoint, which
            # is written before the final evaluation so that an evaluation error never loses the weights
            solved = self.method.fit_end(self.data, self.ctx)
            ckpt = self.save_checkpoint()
            with bar.phase("final evaluation", self.step, show=self.evaluate is not None):
                final, eval_error = self.try_evaluation()
            metrics = {**solved, **final}
        return TrainOutcome(status, self.step, wall, rate, scalars, metrics, str(ckpt) if ckpt else None,
                            eval_error, eval_errors)
