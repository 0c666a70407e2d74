"""`otlab <command> [args]`: a thin dispatcher. Hydra owns the rest of argv for Hydra commands.

Shell completion is Hydra's, routed through here: `eval "$(otlab train -sc install=bash)"` registers
completion for the `otlab` command; Tab then runs `otlab -sc query=bash` with the line in `COMP_LINE`, which
completes command names after `otlab` and hands `otlab <command> ...` to that command's Hydra app as if the
app were the program (its groups, options and keys).
"""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS = {
    "train": ("otgan_lab.train", "train a method (Hydra app: otlab train --help)"),
    "eval": ("otgan_lab.eval", "evaluate a run's checkpoint (any sampler/metrics), or a dataset's floor"),
    "sample": ("otgan_lab.sample", "draw samples from a run's checkpoint with any sampler (PNG + tensor)"),
    "export": ("otgan_lab.export", "a run's generator as TorchScript + state dict: otlab export run=<dir>"),
    "table": ("otgan_lab.table", "turn a sweep into a leaderboard: otlab table <dir>"),
}
HYDRA_COMMANDS = ("train", "eval", "sample", "export")
COMPLETION_FLAGS = ("-sc", "--shell-completion")

USAGE = "usage: otlab <command> [args]\n\ncommands:\n" + "\n".join(
    f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()
)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].split("=", 1)[0] in COMPLETION_FLAGS:  # `otlab -sc ...`: the completion script's call
        _complete(argv)
        return
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"otlab: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(COMMANDS[command][0])
    # `otlab train -sc install=bash` must register completion for `otlab` (Hydra names the program after
    # argv[0]); everything else shows `otlab <command>` as the program in help texts
    completing = any(a.split("=", 1)[0] in COMPLETION_FLAGS for a in rest)
    sys.argv = ["otlab" if completing else f"otlab {command}", *rest]
    try:
        module.main()
    except BrokenPipeError:  # `otlab train --help | head`: the reader left; end quietly
        _quiet_stdout()
        sys.exit(0)


def _complete(argv: list[str]) -> None:
    """`otlab -sc install=bash|query=bash|...`. install/uninstall: the train app's script (the same for
    every command: it calls `otlab -sc query=...`). query: the words of COMP_LINE decide which app answers."""
    if not any(a.startswith("query=") or a == "query" for a in argv) or "COMP_LINE" not in os.environ:
        module = importlib.import_module(COMMANDS["train"][0])
        sys.argv = ["otlab", *argv]
        module.main()
        return
    line = os.environ["COMP_LINE"]
    words = line.split()
    typing_command = len(words) <= 1 or (len(words) == 2 and not line[-1:].isspace())
    if typing_command:  # `otlab <Tab>` or `otlab tr<Tab>`
        prefix = words[1] if len(words) == 2 else ""
        print("\n".join(c for c in COMMANDS if c.startswith(prefix)) if "query=fish" in argv
              else " ".join(c for c in COMMANDS if c.startswith(prefix)))
        return
    command = words[1]
    if command not in HYDRA_COMMANDS:  # `otlab table <Tab>`: nothing to offer; the shell completes files
        return
    # the app sees `otlab <rest of the line>`: Hydra strips the first word and completes what follows
    after_program = line[line.index(words[0]) + len(words[0]):]
    rest = after_program[after_program.index(command) + len(command):]
    os.environ["COMP_LINE"] = "otlab" + rest
    module = importlib.import_module(COMMANDS[command][0])
    sys.argv = ["otlab", *argv]
    module.main()


def add_user_import_paths(argv: list[str]) -> list[str]:
    """Make a config's own `_target_: my_nets.Gen` importable: the directory the user runs in and every
    `--config-dir`/`-cd` directory go first on sys.path and on PYTHONPATH (for processes a launcher
    starts), as `python -m` would do for the current directory. Returns the directories added."""
    dirs = [os.getcwd()]
    for i, arg in enumerate(argv):
        flag, _, value = arg.partition("=")
        if flag in ("--config-dir", "-cd"):
            value = value or (argv[i + 1] if i + 1 < len(argv) else "")
            if value:
                dirs.append(os.path.abspath(os.path.expanduser(value)))
    added = []
    for d in reversed(list(dict.fromkeys(dirs))):
        if d not in sys.path:
            sys.path.insert(0, d)
            added.insert(0, d)
    env = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*dirs, *env]))
    return added


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    main()
