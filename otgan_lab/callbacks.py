"""`otlab train`'s Hydra callbacks (conf/config.yaml, hydra.callbacks): the run dir checked before Hydra
writes into it, and how a sweep went.

A run dir that is a file or cannot be written is reported as one message (Hydra would fail creating it with
a traceback). After `otlab train -m`, the jobs that failed are read from the attempt logs the jobs wrote.

Jobs may run in this process (the basic launcher), in worker processes (joblib) or on other machines
(submitit), and a failed job returns normally so that the others go on; so the outcome is read from the
disk, where every job logs its attempts (rundir.ATTEMPTS_FILE), once the sweep has ended. A Hydra callback
notes when the sweep started and collects the outcome; `otlab train` then exits non-zero if any job failed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from otgan_lab.errors import RunDirError
from otgan_lab.rundir import ATTEMPTS_FILE, RunDir, read_attempts

#: job outcomes that are results, not failures (a diverged run is a measured outcome: R4's "inf")
OK_STATUSES = ("completed", "diverged")


@dataclass(frozen=True)
class JobOutcome:
    run_dir: Path
    status: str  # completed | diverged | failed | interrupted | refused | died (started, never ended)
    error: str | None

    @property
    def failed(self) -> bool:
        return self.status not in OK_STATUSES


def job_outcomes(sweep_dir: str | Path, since: str | None = None) -> list[JobOutcome]:
    """The outcome of every attempt under `sweep_dir` that started at or after `since` (ISO UTC)."""
    out = []
    for log in sorted(Path(sweep_dir).rglob(ATTEMPTS_FILE)):
        attempts: dict[str, list[dict[str, Any]]] = {}
        for entry in read_attempts(log.parent):
            attempts.setdefault(str(entry.get("attempt")), []).append(entry)
        for events in attempts.values():
            if since is not None and str(events[0].get("time", "")) < since:
                continue
            last = next((e for e in reversed(events) if e.get("event") in ("end", "refused")), None)
            if last is None:
                out.append(JobOutcome(log.parent, "died", "started, but never recorded an end (killed?)"))
            else:
                out.append(JobOutcome(log.parent, str(last.get("status")), last.get("error")))
    return out


def describe_failures(outcomes: list[JobOutcome]) -> str:
    failed = [o for o in outcomes if o.failed]
    lines = [f"otlab train: {len(failed)} of {len(outcomes)} sweep jobs did not complete:"]
    for o in failed:
        error = " ".join((o.error or "").split())
        lines.append(f"  {o.status:<11s} {o.run_dir}: {error[:200] + ('…' if len(error) > 200 else '')}")
    lines.append("  messages: each job's result.json (error, traceback) and attempts.jsonl")
    return "\n".join(lines)


def _usable_or_exit(path: str, key: str) -> None:
    try:
        RunDir(path).check_usable()
    except RunDirError as exc:
        print(f"otlab train: {exc} (set by {key})", file=sys.stderr, flush=True)
        sys.exit(2)


class OtlabCallbacks(Callback):
    """The sweep's outcome lands in `last`, read by `otlab train` once Hydra returns."""

    started: str | None = None
    last: list[JobOutcome] | None = None

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        _usable_or_exit(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        _usable_or_exit(config.hydra.sweep.dir, "hydra.sweep.dir")
        OtlabCallbacks.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        OtlabCallbacks.last = None

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        OtlabCallbacks.last = job_outcomes(config.hydra.sweep.dir, since=OtlabCallbacks.started)
