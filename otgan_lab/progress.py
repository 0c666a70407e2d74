"""Progress display: a rich bar in a terminal, plain periodic log lines otherwise (CI, files, pipes)."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)


def _fmt(scalars: dict[str, float], limit: int = 2) -> str:
    return " ".join(f"{k.replace('_loss', '')}={v:.3g}" for k, v in list(scalars.items())[:limit])


class ProgressReporter:
    def __init__(self, total: int, start: int = 0, description: str = "train", enabled: bool | None = None) -> None:
        self.total, self.description = total, description
        self.interactive = sys.stdout.isatty() if enabled is None else enabled
        self._t0, self._start = time.perf_counter(), start
        self._bar = None
        if self.interactive:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
                TextColumn("{task.fields[losses]}"), console=Console(), transient=False,
            )
            self._task = self._bar.add_task(description, total=total, completed=start, rate="", losses="")

    def __enter__(self) -> ProgressReporter:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def rate(self, step: int) -> float:
        elapsed = time.perf_counter() - self._t0
        return (step - self._start) / elapsed if elapsed > 0 else 0.0

    def update(self, step: int, scalars: dict[str, float]) -> None:
        rate = self.rate(step)
        if self._bar is not None:
            self._bar.update(self._task, completed=step, rate=f"{rate:.1f} it/s", losses=_fmt(scalars))
        else:
            eta = (self.total - step) / rate if rate > 0 else float("nan")
            losses = "  ".join(f"{k}={v:.4g}" for k, v in scalars.items())
            print(f"[{self.description}] step {step}/{self.total}  {rate:.1f} it/s  eta {eta:.0f}s  {losses}", flush=True)

    def message(self, text: str) -> None:
        if self._bar is not None:  # user text (paths, error messages): never read as rich markup
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)
