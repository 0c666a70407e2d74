"""Config -> objects: dataset, method, sampler, logger, evaluator. Shared by `otlab train` and `otlab eval`.

`check_config` rejects bad values with one message listing every problem, before anything expensive runs.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from otgan_lab import budget as _budget  # noqa: F401  (registers ${otlab.epochs}, the report rows' epochs)
from otgan_lab.amp import PrecisionError, keep_fp32, resolve_precision
from otgan_lab.data.base import DeviceDataset
from otgan_lab.errors import ConfigError, OtlabError
from otgan_lab.evaluation import Evaluator
from otgan_lab.loggers import JsonlLogger, Logger, MultiLogger, WandbLogger
from otgan_lab.methods.base import has_batchnorm
from otgan_lab.optim import IMPLEMENTATIONS
from otgan_lab.schedule import schedule_problems

# dataset-config keys that describe the dataset rather than being arguments of its factory
_DATASET_DESCRIPTORS = ("name", "shape", "batch_size", "cpu_threads")


__all__ = ["ConfigError"]  # re-exported: `build.ConfigError` is what callers catch

# (key, smallest allowed value, what the value means): integer run-level keys checked before anything runs
_INTEGER_KEYS = (
    ("seed", None, "the run's random seed"),
    ("batch_size", 1, "samples per batch"),
    ("trainer.steps", 1, "generator iterations"),
    ("trainer.log_every", 1, "log every N steps"),
    ("trainer.checkpoint_every", 0, "checkpoint every N steps; 0: only at the end"),
    ("trainer.keep_checkpoints", 1, "how many checkpoints to keep"),
    ("eval.every", 0, "evaluate every N steps; 0: only at the end"),
    ("eval.n_samples", 1, "samples per evaluation"),
    ("eval.seed", None, "the evaluation's random seed"),
)


def _integer_problems(plain: dict[str, Any]) -> list[str]:
    problems = []
    for key, low, meaning in _INTEGER_KEYS:
        node: Any = plain
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, bool) or not isinstance(node, int):
            problems.append(f"{key} must be an integer ({meaning}); got {node!r}")
        elif low is not None and node < low:
            problems.append(f"{key} must be >= {low} ({meaning}); got {node}")
    return problems


def check_config(cfg: DictConfig) -> None:
    """Static checks of values (no data or networks touched)."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception as exc:  # a broken interpolation, e.g. ${oc.env:...} of an unset variable
        raise ConfigError(f"the configuration cannot be resolved: {exc}") from None
    problems = _integer_problems(plain)
    if problems:  # the checks below compare these values: stop at wrong types
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    try:  # each method class says what its options must satisfy
        problems += get_class(cfg.method._target_).option_problems(plain["method"])
    except ImportError as exc:
        problems.append(f"method._target_={cfg.method._target_} cannot be imported: {exc}")
    ema = cfg.trainer.ema
    if ema.enabled and not (isinstance(ema.decay, (int, float)) and 0.0 <= ema.decay < 1.0):
        problems.append(f"trainer.ema.decay must be in [0, 1) (got {ema.decay})")
    grad_clip = plain["trainer"].get("grad_clip")
    if grad_clip is not None and (isinstance(grad_clip, bool) or not isinstance(grad_clip, (int, float))
                                  or grad_clip <= 0):
        problems.append(f"trainer.grad_clip must be null or a positive number (got {grad_clip!r})")
    labels = []  # eval.samplers records are keyed by these: two equal labels would overwrite each other
    for entry in plain["eval"].get("samplers") or []:
        try:
            labels.append(sampler_config(entry).name)
        except ConfigError as exc:
            problems.append(str(exc))
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        problems.append(f"eval.samplers: records {repeated} would overwrite each other; "
                        "give each entry its own name (e.g. {option: drs, name: drs_p90, percentile: 90})")
    schedule = plain["trainer"].get("lr_schedule")
    if schedule is not None:
        if not isinstance(schedule, dict) or set(schedule) - {"milestones", "gamma"}:
            problems.append("trainer.lr_schedule must be null or {milestones: [...], gamma: g} "
                            f"(got {schedule})")
        else:
            problems += schedule_problems(schedule.get("milestones"), schedule.get("gamma", 0.1))
    if cfg.trainer.optimizer_impl not in IMPLEMENTATIONS:
        problems.append(f"trainer.optimizer_impl must be one of {', '.join(IMPLEMENTATIONS)} "
                        f"(got {cfg.trainer.optimizer_impl})")
    if cfg.trainer.resume not in ("auto", True, False):
        problems.append(f"trainer.resume must be auto, true or false (got {cfg.trainer.resume})")
    try:
        resolve_precision(cfg.precision, resolve_device(cfg.device))
    except (PrecisionError, ConfigError) as exc:
        problems.append(str(exc))
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={name} is not a device otlab runs on; "
                          "use device=auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is visible; use device=cpu or device=auto")
    return device


@contextlib.contextmanager
def claim_gpu(lock_dir: str | Path, job_index: int, count: int | None = None, poll_s: float = 1.0):
    """Hold one GPU for a parallel sweep job on a machine with several: yields `cuda:k`.

    Each GPU has a lock file in `lock_dir` (the sweep dir); a job takes the first free one, trying
    `job_index % count` first so that jobs spread round-robin, and waits while all are taken. The lock is
    an flock on an open file, so the kernel releases it when the job ends, however it ends.
    """
    import fcntl

    count = torch.cuda.device_count() if count is None else int(count)
    if count < 1:
        raise ConfigError("claim_gpu needs at least one visible GPU")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    order = [(job_index + k) % count for k in range(count)]
    while True:
        for gpu in order:
            handle = open(lock_dir / f"gpu{gpu}.lock", "w")  # held (locked) for the job's lifetime
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                handle.write(f"{os.getpid()}\n")
                handle.flush()
                yield torch.device(f"cuda:{gpu}")
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        time.sleep(poll_s)


def seed_everything(seed: int, num_threads: int | None = None) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if num_threads:
        torch.set_num_threads(int(num_threads))


def build_dataset(cfg: DictConfig, seed: int, device: torch.device) -> DeviceDataset:
    params = {k: v for k, v in cfg.dataset.items() if k not in _DATASET_DESCRIPTORS}
    try:
        data = instantiate(DictConfig(params), seed=seed, device=device, _convert_="all")
    except Exception as exc:  # Hydra wraps the factory's own error: a missing or damaged file is the user's
        if isinstance(exc.__cause__, OtlabError):
            raise exc.__cause__ from None
        raise
    if tuple(data.shape) != tuple(cfg.dataset.shape):
        raise ConfigError(f"dataset.shape {list(cfg.dataset.shape)} "
                          f"does not match the data's {list(data.shape)}")
    if cfg.batch_size > len(data):
        raise ConfigError(
            f"batch_size={cfg.batch_size} is larger than dataset {data.name!r} ({len(data)} samples); "
            "lower batch_size or use more data"
        )
    return data


def build_method(cfg: DictConfig, device: torch.device):
    try:
        nets = {name: instantiate(net_cfg) for name, net_cfg in cfg.model.nets.items()}
        method = instantiate(cfg.method, _convert_="all", **nets)
    except Exception as exc:  # a model that cannot take this data's shape, a bad hyperparameter...
        cause = exc.__cause__ or exc  # Hydra wraps the constructor's own error
        raise ConfigError(
            f"method={cfg.method.name} with model={cfg.model.name} cannot be built for dataset "
            f"{cfg.dataset.name} (shape {list(cfg.dataset.shape)}): {cause.__class__.__name__}: {cause}. "
            "Choose a model made for this data "
            "(the dataset's default model is picked when model= is omitted)."
        ) from None
    critic = method.nets["critic"] if "critic" in method.nets else None
    if critic is not None and not method.allows_critic_batchnorm and has_batchnorm(critic):
        raise ConfigError(
            f"method {method.name!r} uses a per-sample gradient penalty, which BatchNorm in the critic "
            "breaks; set model.nets.critic.batchnorm=false (LayerNorm is fine)"
        )
    try:  # under autocast, these networks or layers compute in float32 (a no-op at fp32)
        keep_fp32(method.nets, list(cfg.get("fp32_modules") or []), device.type)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return method.to(device)


def load_option(group: str, name: str) -> DictConfig:
    """One option of a config group read straight from the conf tree (for `otlab eval`, `eval.samplers`)."""
    from otgan_lab.paths import conf_dir

    path = conf_dir() / group / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))
        raise ConfigError(f"no {group} option {name!r}; available: {', '.join(available)}")
    node = OmegaConf.load(path)
    node.pop("defaults", None)
    return node


def sampler_config(entry: Any) -> DictConfig:
    """One `eval.samplers` entry as a sampler config.

    An entry is an option name (`drs`) or a mapping naming the option and overriding its keys, e.g.
    `{option: drs, calibrate_steps: 500}` or
    `{option: aeot, name: aeot_nothreshold, angle_threshold: 3.14159}`;
    `name` labels the record (default: the option's own name).
    """
    if isinstance(entry, str):
        return load_option("sampler", entry)
    params = (OmegaConf.to_container(entry, resolve=True) if isinstance(entry, DictConfig)
              else dict(entry or {}))
    option = params.pop("option", None)
    if not isinstance(option, str):
        raise ConfigError(f"eval.samplers entry {entry!r}: a mapping needs `option: <sampler option>` "
                          "(e.g. {option: drs, calibrate_steps: 500}); or give the option's name alone")
    node = load_option("sampler", option)
    unknown = sorted(set(params) - set(node))
    if unknown:
        raise ConfigError(f"eval.samplers entry for {option!r}: unknown keys {unknown}; "
                          f"sampler={option} has {sorted(k for k in node if k != '_target_')}")
    return OmegaConf.merge(node, params)


def build_sampler(sampler_cfg: DictConfig):
    """Instantiate a sampler config; its `name` key (the option's name) labels its records."""
    params = {k: v for k, v in sampler_cfg.items() if k != "name"}
    sampler = instantiate(DictConfig(params))
    sampler.name = sampler_cfg.get("name", sampler.name)
    return sampler


def check_samplers(method, samplers) -> None:
    """Each sampler's declared needs against the method's declared capabilities, before training."""
    problems = [p for sampler in samplers for p in sampler.requirement_problems(method)]
    if problems:
        raise ConfigError("the evaluation cannot run on this method:\n  - " + "\n  - ".join(problems))


def metric_problems(suites: dict[str, dict], data: DeviceDataset, n_samples: int) -> list[str]:
    """Problems a metric suite would hit at the end of training, found now."""
    from otgan_lab.evaluation import SUITES
    from otgan_lab.metrics.features import backbone_problem
    from otgan_lab.metrics.images import resolve_backbone, resolve_logits_backbone

    def backbone_problems(suite: str, resolve) -> list[str]:
        params = suites[suite]
        backbone = resolve(params.get("backbone", "auto"), data.name)
        problem = backbone_problem(backbone, params.get("weights_path"))
        return [f"metrics.{suite}.backbone={backbone}: {problem}"] if problem else []

    problems = [f"metrics.{name}: unknown metric suite; available: {', '.join(sorted(SUITES))}"
                for name in suites if name not in SUITES]
    fid = suites.get("fid")
    if fid is not None:
        problems += backbone_problems("fid", resolve_backbone)
        if n_samples < 2:
            problems.append(f"eval.n_samples={n_samples}: FID needs at least 2 samples")
        k = fid.get("prdc_k") or 0
        if k and min(n_samples, fid.get("prdc_samples") or n_samples) <= k:
            problems.append(f"metrics.fid.prdc_k={k} needs more than {k} samples; raise eval.n_samples / "
                            "metrics.fid.prdc_samples or set metrics.fid.prdc_k=0")
    classifier = suites.get("classifier")
    splits = (classifier or {}).get("n_splits", 10)
    if classifier is not None and n_samples < splits:
        problems.append(f"metrics.classifier: the classifier IS averages {splits} splits; "
                        f"eval.n_samples={n_samples} is fewer (raise it or set metrics.classifier.n_splits)")
    score = suites.get("inception_score")
    if score is not None:
        problems += backbone_problems("inception_score", resolve_logits_backbone)
        splits = score.get("n_splits", 10)
        if not isinstance(splits, int) or isinstance(splits, bool) or not 1 <= splits <= n_samples:
            problems.append(f"metrics.inception_score.n_splits={splits!r} must be an integer in "
                            f"1..eval.n_samples ({n_samples})")
    return problems


def check_metrics(cfg: DictConfig, data: DeviceDataset) -> None:
    """What a metric suite needs before training: files (the Inception weights) and enough samples."""
    suites = {k: v or {} for k, v in OmegaConf.to_container(cfg.metrics, resolve=True).items()
              if k not in ("n_samples", "primary")}
    problems = metric_problems(suites, data, int(cfg.eval.n_samples))
    if problems:
        raise ConfigError("the metrics cannot be computed:\n  - " + "\n  - ".join(problems))


def build_logger(cfg: DictConfig, out_dir: Path, group: str | None = None, job_type: str = "train") -> Logger:
    loggers: list[Logger] = [JsonlLogger(out_dir)]
    if cfg.logger.kind == "wandb":
        loggers.append(WandbLogger(
            out_dir, OmegaConf.to_container(cfg, resolve=True),
            project=cfg.logger.project, mode=cfg.logger.mode,
            group=cfg.logger.group or group, name=Path(out_dir).name, tags=list(cfg.logger.tags),
            entity=cfg.logger.entity, job_type=job_type,
        ))
    elif cfg.logger.kind != "none":
        raise ConfigError(f"logger.kind must be wandb or none (got {cfg.logger.kind})")
    return MultiLogger(*loggers)


def build_evaluator(cfg: DictConfig, data: DeviceDataset, sampler, out_dir: Path, logger: Logger | None,
                    primary: bool = True) -> Evaluator:
    metrics = OmegaConf.to_container(cfg.metrics, resolve=True)
    suites = {k: v or {} for k, v in metrics.items() if k not in ("n_samples", "primary")}
    return Evaluator(data, sampler, n_samples=cfg.eval.n_samples, suites=suites, out_dir=out_dir,
                     logger=logger, primary=primary)
