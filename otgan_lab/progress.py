"""Progress display: a rich bar in a terminal, plain periodic log lines otherwise (CI, files, pipes).

Every line it shows (the plain progress lines, messages, evaluation phases) also goes to the logger
``otgan_lab.console`` (`TRANSCRIPT`), whose records reach the log files of the logging setup, i.e. Hydra's
job log ``<run dir>/train.log``: the run dir keeps what the console showed, without the bar's redraws.

The bar shows every loss the method returns, abbreviated (`abbreviate`), the rate and an ETA computed from
the rate measured since the start of this process's training (rich's own estimate needs two updates within
30 s and stays at ``-:--:--`` on slow runs). `phase("evaluating")` shows what the loop is doing between
updates.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator, Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Column


class _ToRootLogFiles(logging.Handler):
    """Hands each record to the file handlers the root logger has when it is emitted: Hydra's job logging
    gives the root a FileHandler on `<run dir>/<job name>.log` for each job (a sweep's jobs each their own);
    its console handler is left out, as the console already shows these lines. No file handler (e.g.
    `hydra/job_logging=disabled`, or no Hydra): the record goes nowhere."""

    def emit(self, record: logging.LogRecord) -> None:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)


#: the console's lines, for the job's log file only
TRANSCRIPT = logging.getLogger("otgan_lab.console")
TRANSCRIPT.propagate = False
TRANSCRIPT.setLevel(logging.INFO)
if not any(isinstance(h, _ToRootLogFiles) for h in TRANSCRIPT.handlers):
    TRANSCRIPT.addHandler(_ToRootLogFiles())


#: short names of the scalars methods return; anything else: `abbreviate`'s rule
ABBREVIATIONS = {
    "critic_loss": "D", "generator_loss": "G", "gradient_penalty": "GP", "wasserstein_estimate": "W",
    "r1": "R1", "d_real": "D(x)", "d_fake": "D(G(z))", "energy_distance": "ED", "transport_cost": "cost",
    "reconstruction": "rec", "latent_critic_loss": "zD", "latent_penalty": "zpen", "mmd": "MMD",
    "cross_entropy": "CE",
}


def abbreviate(key: str) -> str:
    """A short label: the table above, else the key without `_loss`, else (still over 8 characters) the
    initials of its words (`psi1_arg_max` -> `pam`)."""
    if key in ABBREVIATIONS:
        return ABBREVIATIONS[key]
    short = key.removesuffix("_loss")
    if len(short) > 8 and "_" in short:
        short = "".join(part[0] for part in short.split("_") if part)
    return short


def format_losses(scalars: Mapping[str, float]) -> str:
    """Every scalar, abbreviated: `D=-1.82 GP=0.0144 G=-0.481 W=1.82`; two keys that would share a label
    keep their full names."""
    labels = {k: abbreviate(k) for k in scalars}
    taken = list(labels.values())
    return " ".join(f"{labels[k] if taken.count(labels[k]) == 1 else k}={v:.3g}" for k, v in scalars.items())


def format_duration(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):  # nan / inf: no rate measured yet
        return "-:--:--"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressReporter:
    """`update(step, scalars)` at each log step; `message(text)` for events; `phase(name)` around work that
    does not advance the step (evaluation). `steps_per_sec` is the rate over the last log interval, without
    the time spent in phases (what the logs record); the ETA uses the rate since the start, phases included
    (what the rest of the run will take)."""

    def __init__(self, total: int, start: int = 0, description: str = "train",
                 enabled: bool | None = None) -> None:
        self.total, self.description = total, description
        self.interactive = sys.stdout.isatty() if enabled is None else enabled
        # a logging.config.dictConfig with disable_existing_loggers (Hydra's `disabled` logging of another app
        # in this process, a library's setup) switches the transcript off for good: this run's lines are kept
        TRANSCRIPT.disabled = False
        self._t0, self._start = time.perf_counter(), start
        self._last_step, self._last_time, self._phase_time = start, self._t0, 0.0
        self.step, self.steps_per_sec = start, 0.0
        self._bar = None
        self._live = False
        if self.interactive:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TextColumn("ETA {task.fields[eta]}"),
                TextColumn("{task.fields[losses]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
                console=Console(soft_wrap=True), transient=False,
            )
            self._task = self._bar.add_task(description, total=total, completed=start, rate="", eta="-:--:--",
                                            losses="")

    def __enter__(self) -> ProgressReporter:
        if self._bar is not None:
            self._bar.start()
            self._live = True
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._live = False

    def rate(self, step: int) -> float:
        """Steps per second since this reporter started (phases included)."""
        elapsed = time.perf_counter() - self._t0
        return (step - self._start) / elapsed if elapsed > 0 else 0.0

    def eta(self, step: int) -> float:
        rate = self.rate(step)
        return (self.total - step) / rate if rate > 0 else float("nan")

    def update(self, step: int, scalars: Mapping[str, float]) -> None:
        now = time.perf_counter()
        busy = now - self._last_time - self._phase_time
        self.steps_per_sec = (step - self._last_step) / busy if busy > 0 else 0.0
        self._last_step, self._last_time, self._phase_time, self.step = step, now, 0.0, step
        rate, eta = self.rate(step), format_duration(self.eta(step))
        line = (f"[{self.description}] step {step}/{self.total}  {rate:.1f} it/s  eta {eta}  "
                f"{format_losses(scalars)}")
        TRANSCRIPT.info(line)
        if self._bar is not None:
            self._bar.update(self._task, completed=step, rate=f"{rate:.1f} it/s", eta=eta,
                             losses=format_losses(scalars))
        else:
            print(line, flush=True)

    def message(self, text: str) -> None:
        TRANSCRIPT.info(text)
        if self._bar is not None and self._live:  # user text (paths, errors): no rich markup, no wrapping
            self._bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, flush=True)

    @contextlib.contextmanager
    def phase(self, name: str, step: int | None = None, show: bool = True) -> Iterator[None]:
        """Work between updates at `step` (default: the last update's), shown as such: the bar's description
        reads `name...` in a terminal, a line before and after it otherwise. Its time is left out of
        `steps_per_sec`. `show=False`: only the timing."""
        t0, step = time.perf_counter(), self.step if step is None else step
        live = self._bar is not None and self._live
        if show:
            self._note(f"[{self.description}] step {step}: {name}...", live)
            if live:
                self._bar.update(self._task, description=f"{name}...")
        try:
            yield
        finally:
            spent = time.perf_counter() - t0
            self._phase_time += spent
            if show:
                if live:
                    self._bar.update(self._task, description=self.description)
                self._note(f"[{self.description}] step {step}: {name} took {spent:.1f} s", live)

    def _note(self, text: str, live: bool) -> None:
        """A phase's line: in the log file always; on the console unless the live bar shows the phase."""
        if live:
            TRANSCRIPT.info(text)
        else:
            self.message(text)
