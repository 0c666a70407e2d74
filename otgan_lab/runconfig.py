"""The config of an existing run, for the Hydra apps that work on one (`otlab eval`, `otlab sample`).

A run's saved config (result.json) is the base, so a run evaluates as it was trained even after the YAML
changed. The app's own config (conf/eval.yaml, conf/sample.yaml) composes the `sampler` and `metrics` groups
exactly as `otlab train` does, defaulting to the run's own choices: a group the user names replaces the
run's node, and every `key=value` the user gives is set on top, in Hydra's override grammar.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from otgan_lab import checkpoint, records
from otgan_lab.errors import ConfigError, OtlabError
from otgan_lab.paths import conf_dir

GROUPS = ("sampler", "metrics")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def run_choices(run_dir: Path) -> dict[str, str]:
    """The run's own option of each group: from Hydra's record of the run, else guessed from its saved config
    (the option whose keys match)."""
    choices: dict[str, str] = {}
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    if hydra_file.is_file():
        try:
            saved = (yaml.safe_load(hydra_file.read_text()) or {}).get("hydra", {}).get("runtime", {})
            choices = {g: c for g, c in (saved.get("choices") or {}).items()
                       if g in GROUPS and c in _options(g)}
        except (OSError, yaml.YAMLError, AttributeError):
            choices = {}
    record = records.read_existing(run_dir) or {}
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    for group in GROUPS:
        if group in choices or not isinstance(config.get(group), dict):
            continue
        node = config[group]
        for option in _options(group):
            keys = set(OmegaConf.load(conf_dir() / group / f"{option}.yaml")) - {"defaults"}
            if (node.get("name") == option) if group == "sampler" else (keys == set(node)):
                choices[group] = option
                break
    return choices


def dataset_default(option: str, group: str) -> str | None:
    """The option of `group` (model, metrics) that dataset `option` picks in its defaults list."""
    path = conf_dir() / "dataset" / f"{option}.yaml"
    if not path.is_file():
        return None
    for entry in OmegaConf.load(path).get("defaults") or []:
        for key, value in (entry.items() if isinstance(entry, DictConfig) else ()):
            if key.replace("override", "").strip().lstrip("/").split("@")[0] == group:
                return str(value)
    return None


def real_choices(real: str) -> dict[str, str]:
    """For `otlab eval real=<dataset or folder>`: the metrics option that dataset picks (a folder: the
    image_folder dataset's)."""
    option = real if (conf_dir() / "dataset" / f"{real}.yaml").is_file() else (
        "image_folder" if Path(real).expanduser().is_dir() else None)
    choice = dataset_default(option, "metrics") if option else None
    return {"metrics": choice} if choice else {}


def app_argv(argv: list[str], groups: tuple[str, ...] = GROUPS) -> list[str]:
    """argv for the app's Hydra: the user's, plus the run's own choices of the app's `groups` where the user
    chose none (with real=<dataset or folder> and no run: the dataset's own metrics option)."""
    run = next((a.split("=", 1)[1] for a in argv if a.startswith("run=")), None)
    real = next((a.split("=", 1)[1] for a in argv if a.startswith("real=")), None)
    if (run is None and real is None) or any(a in ("-h", "--help", "--hydra-help") for a in argv):
        return list(argv)
    chosen = {a.split("=", 1)[0] for a in argv if "=" in a}
    defaults = run_choices(Path(run)) if run is not None else real_choices(real)
    return [*argv, *(f"{g}={c}" for g, c in defaults.items() if g in groups and g not in chosen)]


def user_overrides(argv: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides([a for a in argv if not a.startswith("-")])


def run_config(saved: dict[str, Any], app_cfg: DictConfig, argv: list[str],
               own_keys: tuple[str, ...]) -> DictConfig:
    """The run's saved config with the user's choices applied: chosen groups from the composed app config,
    every other `key=value` set on the saved config (keys in `own_keys` belong to the app, not the run)."""
    cfg = OmegaConf.create(saved)
    for override in user_overrides(argv):
        key = override.key_or_group
        if key in own_keys or override.is_delete():
            continue
        if key in GROUPS:
            cfg[key] = OmegaConf.to_container(app_cfg[key], resolve=True)
        else:
            OmegaConf.update(cfg, key, override.value(), merge=True, force_add=True)
    return cfg


def load_run(run_dir: Path, cfg: DictConfig):
    """(result, data, method with the last checkpoint's weights, checkpoint state, checkpoint path) for the
    run config `cfg`."""
    from otgan_lab import build

    result = records.read_result(run_dir)
    found = checkpoint.list_checkpoints(run_dir / "checkpoints")
    if not found:
        raise ConfigError(f"{run_dir / 'checkpoints'} holds no checkpoint to load")
    device = build.resolve_device(cfg.device)
    build.seed_everything(cfg.seed, cfg.get("num_threads"))
    data = build.build_dataset(cfg, cfg.seed, device)
    method = build.build_method(cfg, device)
    state = checkpoint.load(found[-1], map_location=device)
    method.load_state_dict(state["method"])
    if cfg.eval.use_ema:
        if state.get("ema") is None:
            raise ConfigError(f"eval.use_ema=true but {found[-1].name} holds no EMA weights "
                              "(trained without EMA)")
        method.ema_module.load_state_dict(state["ema"])
    return result, data, method, state, found[-1]


def saved_config(run_dir: Path) -> dict[str, Any]:
    if not (run_dir / records.RESULT_FILE).is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no result.json)")
    result = records.read_existing(run_dir)
    if result is None or not isinstance(result.get("config"), dict):
        raise ConfigError(f"{run_dir / records.RESULT_FILE} is unreadable or holds no config")
    return result["config"]


@contextlib.contextmanager
def user_errors(app: str) -> Iterator[None]:
    """Bad input inside an app: one message (never read as rich markup) and exit code 2, no traceback."""
    try:
        yield
    except OtlabError as exc:
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True, soft_wrap=True).print(f"[bold red]otlab {app}:[/] {escape(str(exc))}")
        sys.exit(2)


def launch(hydra_main: Callable[[], Any], user_argv: list[str], groups: tuple[str, ...] = GROUPS) -> None:
    """Run an app over a run: the user's folders importable (a run trained with `_target_: my_nets.Gen`),
    the user's own arguments kept in `user_argv`, the run's own group choices added for Hydra."""
    from otgan_lab.cli import add_user_import_paths

    add_user_import_paths(sys.argv[1:])
    user_argv[:] = sys.argv[1:]
    sys.argv[1:] = app_argv(user_argv, groups)
    hydra_main()
