"""A run directory's guards: one process at a time, one experiment per directory, every attempt logged.

- **Lock** (`.lock`): an exclusive flock held for the whole command; the kernel drops it when the process
  dies however it dies, so a kill -9 never leaves the dir locked. A second process is refused with the
  holder's pid.
- **Identity** (`run.json`): the resolved config minus the keys that may change when a run is continued
  (`CONTINUABLE`: run length, logging / checkpoint / evaluation cadence, devices and threads, where files
  live). A later command whose identity differs is refused before any work and nothing in the dir changes.
- **Attempts** (`attempts.jsonl`): one line when a command starts training in the dir and one when it ends
  (completed, diverged, failed, interrupted) or is refused; result.json keeps the best record
  (`records.should_replace`), this file keeps the history.
"""

from __future__ import annotations

import fnmatch
import json
import os
import socket
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from otgan_lab.errors import RunDirError
from otgan_lab.records import clean_json, flatten, write_json_atomic

LOCK_FILE = ".lock"
IDENTITY_FILE = "run.json"
ATTEMPTS_FILE = "attempts.jsonl"
HYDRA_DIR = ".hydra"

#: Keys (fnmatch patterns over the flattened config) that a continued run may change. Everything else
#: defines the experiment. README "Run directories" documents this list.
CONTINUABLE = (
    "trainer.steps",  # extend a finished run
    "trainer.log_every", "trainer.checkpoint_every", "trainer.keep_checkpoints", "trainer.progress",
    "trainer.resume", "trainer.optimizer_impl",  # the kernel, not the optimiser: resume keeps its state
    "eval.every",  # evaluation cadence; the final evaluation's protocol stays part of the identity
    "logger", "logger.*", "device", "num_threads",
    "dataset.root", "dataset.download",  # where the files are, not which files
    "metrics.*.cache_dir", "metrics.*.batch_size", "metrics.*.weights_path",  # speed and file locations only
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """The experiment a config describes: its flattened keys minus the continuable ones."""
    return {k: v for k, v in sorted(flatten(config).items())
            if not any(fnmatch.fnmatchcase(k, pattern) for pattern in CONTINUABLE)}


def identity_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'key: stored -> current' for every identity key that differs (missing keys shown as '-')."""
    keys = sorted(set(stored) | set(current))
    return [f"{k}: {stored.get(k, '-')} -> {current.get(k, '-')}" for k in keys
            if json.dumps(stored.get(k, "-"), default=str) != json.dumps(current.get(k, "-"), default=str)]


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_handle = None
        self.attempt = uuid.uuid4().hex[:12]

    # -- usability --------------------------------------------------------------------------------------
    def check_usable(self) -> None:
        """The dir is a directory we can write to (created if missing)."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"run dir {self.path} is a file, not a directory; choose another hydra.run.dir")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise RunDirError(f"run dir {self.path} is not writable ({exc.strerror or exc}); choose another "
                              "hydra.run.dir or fix its permissions") from exc

    # -- the lock ---------------------------------------------------------------------------------------
    def acquire(self) -> None:
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / LOCK_FILE, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunDirError(f"run dir {self.path} is in use by another otlab process ({holder}); "
                              "wait for it to finish, or choose another hydra.run.dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {_now()}\n")
        handle.flush()
        self._lock_handle = handle

    def release(self) -> None:
        if self._lock_handle is not None:
            import fcntl

            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def __enter__(self) -> RunDir:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # -- identity ---------------------------------------------------------------------------------------
    def stored_identity(self) -> tuple[dict[str, Any] | None, str]:
        """(identity, where it came from): run.json, else the config of a record or checkpoint written by an
        older otlab, else (None, '') for a fresh dir."""
        path = self.path / IDENTITY_FILE
        if path.is_file():
            try:
                return json.loads(path.read_text())["identity"], str(path)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise RunDirError(f"{path} is unreadable ({exc}); "
                                  "it records which experiment this dir holds. "
                                  "Restore it, or use a new hydra.run.dir") from exc
        result = self.path / "result.json"
        if result.is_file():
            try:
                record = json.loads(result.read_text())
                config = record.get("config")
                # a sweep job refused before training keeps a failed record, but no experiment ran there
                if isinstance(config, dict) and config and record.get("stage") != "before training":
                    return identity(config), str(result)
            except (OSError, ValueError, AttributeError):
                pass
        return None, ""

    def check_identity(self, config: dict[str, Any]) -> bool:
        """Refuse a config that describes another experiment than the one in this dir; True for a fresh dir.
        """
        stored, source = self.stored_identity()
        if stored is None:
            return True
        diffs = identity_differences(stored, identity(config))
        if diffs:
            shown = "\n  ".join(diffs[:20]) + (
                f"\n  ... and {len(diffs) - 20} more" if len(diffs) > 20 else "")
            raise RunDirError(
                f"run dir {self.path} holds another experiment (recorded in {source}); these keys differ:\n"
                f"  {shown}\n"
                "Nothing was changed. "
                "Train this config in a new directory (a new hydra.run.dir, or omit it); "
                f"only {', '.join(p for p in CONTINUABLE if '*' not in p)} "
                "may change when a run is continued."
            )
        return False

    def write_identity(self, config: dict[str, Any], hydra_files: dict[str, str] | None = None) -> None:
        path = self.path / IDENTITY_FILE
        if path.is_file():
            return
        write_json_atomic(path, {"created": _now(), "identity": identity(config), "hydra": hydra_files or {}})

    def hydra_files(self) -> dict[str, str]:
        folder = self.path / HYDRA_DIR
        return {p.name: p.read_text() for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}

    def restore_hydra_files(self) -> None:
        """After a refusal: put back the .hydra/*.yaml files of the run this dir holds (Hydra rewrote them
        with the refused command's config before otlab could check it)."""
        path = self.path / IDENTITY_FILE
        try:
            saved = json.loads(path.read_text()).get("hydra") or {}
        except (OSError, ValueError, AttributeError):
            return
        for name, text in saved.items():
            target = self.path / HYDRA_DIR / name
            if target.is_file() and target.read_text() != text:
                target.write_text(text)

    def remove_scaffolding(self) -> None:
        """A refused first command in a fresh dir leaves nothing: remove what Hydra created for it (.hydra/,
        an empty log, the lock file) and the dir itself if that leaves it empty."""
        for name in (HYDRA_DIR,):
            folder = self.path / name
            if folder.is_dir():
                for f in folder.iterdir():
                    f.unlink(missing_ok=True)
                folder.rmdir()
        for f in self.path.glob("*.log"):
            if f.stat().st_size == 0:
                f.unlink(missing_ok=True)
        (self.path / LOCK_FILE).unlink(missing_ok=True)
        try:
            self.path.rmdir()
        except OSError:
            pass

    def is_fresh(self) -> bool:
        """Nothing of a run here yet: no identity, record, checkpoint or attempt log."""
        return not any((self.path / n).exists() for n in (IDENTITY_FILE, "result.json", "checkpoints",
                                                          ATTEMPTS_FILE))

    # -- leftovers ----------------------------------------------------------------------------------------
    def remove_leftovers(self) -> list[Path]:
        """Temp files of writes that a kill interrupted (`.step_*.pt.tmp-PID`, `.result.json.tmp-PID`). Only
        called under the lock, so no live writer owns them."""
        found = [*self.path.glob(".*.tmp-*"), *(self.path / "checkpoints").glob(".*.tmp-*")]
        for f in found:
            f.unlink(missing_ok=True)
        return found

    # -- attempts -----------------------------------------------------------------------------------------
    def log_attempt(self, event: str, **fields: Any) -> None:
        """Append one line to attempts.jsonl (O_APPEND: whole lines, also beside another writer)."""
        line = {"attempt": self.attempt, "event": event, "time": _now(), "pid": os.getpid(),
                "host": socket.gethostname(), **fields}
        try:
            with open(self.path / ATTEMPTS_FILE, "a") as fh:
                fh.write(json.dumps(clean_json(line), default=str) + "\n")
        except OSError:  # the attempt log is history, never a reason to lose a run
            pass


def read_attempts(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / ATTEMPTS_FILE
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # a line cut short by a kill
                continue
            if isinstance(entry, dict):
                out.append(entry)
    return out
