"""Small builders shared by tests: compose the real config tree, build real objects from it."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from otgan_lab.paths import conf_dir

CONF = conf_dir()


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose("config", overrides=list(overrides))


def tiny_trainer(cfg: DictConfig, out_dir: Path, steps: int = 3, **kw):
    """Data, method and a Trainer built from `cfg` the way `otlab train` builds them (no logger)."""
    from otgan_lab import build
    from otgan_lab.amp import resolve_precision
    from otgan_lab.loggers import JsonlLogger
    from otgan_lab.trainer import Trainer

    build.seed_everything(cfg.seed)
    device = build.resolve_device("cpu")
    data = build.build_dataset(cfg, cfg.seed, device)
    method = build.build_method(cfg, device)
    trainer_kw = dict(steps=steps, log_every=1, checkpoint_every=0, config={})
    trainer_kw.update(kw)
    trainer = Trainer(method, data, resolve_precision(cfg.precision, device), out_dir, JsonlLogger(out_dir),
                      **trainer_kw)
    return trainer


def otlab(*args: str) -> tuple[int, str, str]:
    """`otlab ARGS` in this process, Hydra included (a fraction of a second where a subprocess takes
    seconds): (exit code, stdout, stderr)."""
    from otgan_lab import cli

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def recording_context_class():
    """A StepContext that records the name of every optimizer update, in order (`ctx.updates`)."""
    from otgan_lab.amp import StepContext

    class RecordingContext(StepContext):
        def __post_init__(self) -> None:
            super().__post_init__()
            self.updates: list[str] = []

        def optimize(self, name, loss):
            self.updates.append(name)
            super().optimize(name, loss)

    return RecordingContext
