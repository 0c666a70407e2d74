"""Stopping a run cleanly: SIGTERM treated as Ctrl-C, and a first signal during training that lets the current
step finish so that the checkpoint written on the way out is consistent."""

from __future__ import annotations

import contextlib
import signal
import threading


def interrupt_on_sigterm() -> None:
    """Schedulers (SLURM preemption, `timeout`, docker stop) send SIGTERM: treat it like Ctrl-C so the
    run saves a checkpoint and records `interrupted` (outside training it raises KeyboardInterrupt)."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def graceful_stop(trainer):
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
