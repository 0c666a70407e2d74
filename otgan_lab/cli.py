"""`otlab <command> [args]`: a thin dispatcher. Hydra owns the rest of argv for Hydra commands."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": ("otgan_lab.train", "train a method (Hydra app: otlab train --help)"),
    "eval": ("otgan_lab.eval", "evaluate a run's checkpoint (any sampler/metrics), or a dataset's floor"),
    "sample": ("otgan_lab.sample", "draw samples from a run's checkpoint with any sampler (PNG + tensor)"),
    "table": ("otgan_lab.table", "turn a sweep into a leaderboard: otlab table <dir>"),
}

USAGE = "usage: otlab <command> [args]\n\ncommands:\n" + "\n".join(
    f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()
)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"otlab: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(COMMANDS[command][0])
    sys.argv = [f"otlab {command}", *rest]
    try:
        module.main()
    except BrokenPipeError:  # `otlab train --help | head`: the reader left; end quietly
        _quiet_stdout()
        sys.exit(0)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not raise again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    main()
