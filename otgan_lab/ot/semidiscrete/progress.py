"""Progress display for the semi-discrete OT solver: a rich bar, imported only when asked for."""

from __future__ import annotations


class RichBar:
    """rich progress bar showing ||g||, coverage and the QMC sample count; imported only when asked for."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("semi-discrete OT"), BarColumn(), MofNCompleteColumn(),
            TextColumn("||g|| {task.fields[g]:.3e}  coverage {task.fields[cov]:.3f}  N {task.fields[n]}"),
            TimeElapsedColumn(),
        )
        self._task = self._progress.add_task("sdot", total=total, g=float("nan"), cov=0.0, n=0)
        self._progress.start()

    def update(self, it: int, grad_norm: float, coverage: float, n_samples: int) -> None:
        self._progress.update(self._task, completed=it, g=grad_norm, cov=coverage, n=n_samples)

    def close(self) -> None:
        self._progress.stop()

