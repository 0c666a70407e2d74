"""Finding and reading records: every `**/result.json` under the given paths becomes one Measurement per
sampler it was evaluated with; a record that cannot be read, or is not shaped like one
(otgan_lab.records.record_problems), becomes an 'unreadable' measurement that says why."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otgan_lab.records import RESULT_FILE, flatten, record_problems

# Config keys that never change what a run measures: they must not split seeds into different groups.
BOOKKEEPING_KEYS = (
    "seed", "hydra", "logger", "device", "num_threads", "trainer.progress", "trainer.resume",
    "trainer.log_every", "trainer.checkpoint_every", "trainer.keep_checkpoints", "dataset.root",
    "dataset.download",
)
# Row fields that --by may name directly (anything else is a dotted config key).
RECORD_FIELDS = ("method", "sampler", "dataset", "model", "precision", "status")
# a completed training run whose evaluation failed (the weights are saved: `otlab eval run=...` redoes it)
EVAL_FAILED = "eval failed"
NOT_COMPLETED = ("diverged", "failed", "interrupted", "running", "unreadable", EVAL_FAILED)


@dataclass
class Measurement:
    """One run seen through one sampler: the unit that a row averages over seeds."""

    path: Path
    status: str
    method: str
    sampler: str
    dataset: str
    model: str
    seed: Any
    metrics: dict[str, Any]
    protocol: dict[str, Any] | None
    config: dict[str, Any]  # flattened resolved config, bookkeeping keys removed
    wall_time: float | None = None
    steps: int | None = None
    steps_per_sec: float | None = None
    error: str | None = None
    primary_metric: str | None = None
    precision: str | None = None
    # {metric: {"display": ..., "goal": ...}} declared by the run (top level and this sampler's entry)
    metric_specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_sampler: str | None = None  # the sampler the run trained with (its curves: eval/<metric>)

    @property
    def run_dir(self) -> Path:
        return self.path.parent


def field_value(m: Measurement, name: str) -> Any:
    """A --by field: a record field (method, sampler, ...) or a dotted key of the resolved config."""
    if name in RECORD_FIELDS:
        return getattr(m, name)
    return m.config.get(name)


def as_float(value: Any) -> float | None:
    """Metric values may be stored as the strings 'inf'/'nan' (JSON has no infinities)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _is_bookkeeping(key: str, extra: Iterable[str] = ()) -> bool:
    return any(key == k or key.startswith(k + ".") for k in (*BOOKKEEPING_KEYS, *extra))


def _seed_derived_keys(run_dir: Path) -> set[str]:
    """Config keys whose raw value interpolates ${seed} (e.g. a data split seeded per run): they vary with
    the seed, so they must not split a group. Read from Hydra's unresolved .hydra/config.yaml when present."""
    raw = run_dir / ".hydra" / "config.yaml"
    if not raw.is_file():
        return set()
    try:
        import yaml

        flat = flatten(yaml.safe_load(raw.read_text()) or {})
    except Exception:  # an unreadable Hydra file only loses this refinement
        return set()
    return {k for k, v in flat.items() if isinstance(v, str) and "${seed}" in v.replace(" ", "")}


def find_results(paths: Sequence[str | Path]) -> list[Path]:
    found: dict[Path, None] = {}
    for p in map(Path, paths):
        if p.is_file():
            found[p.resolve()] = None
        elif p.is_dir():
            for f in sorted(p.rglob(RESULT_FILE)):
                found[f.resolve()] = None
    return list(found)


def sampler_name(record: dict[str, Any]) -> str:
    """A record written before its sampler was built names the class (StandardSampler): map it to the name the
    sampler reports once built (standard), so that failed and completed runs of one config group together."""
    name = str(record.get("sampler") or "standard")
    suffix = "Sampler"
    return name[: -len(suffix)].lower() if name.endswith(suffix) and len(name) > len(suffix) else name


def _primary_metric(record: dict[str, Any]) -> str | None:
    """The metric the run was tuned for: the record's primary_metric, else its config's metrics.primary."""
    if isinstance(record.get("primary_metric"), str) and record["primary_metric"]:
        return record["primary_metric"]
    metrics_cfg = (record.get("config") or {}).get("metrics")
    primary = metrics_cfg.get("primary") if isinstance(metrics_cfg, dict) else None
    return primary if isinstance(primary, str) and primary else None


def measurements_from_record(record: dict[str, Any], path: Path) -> list[Measurement]:
    """Expand one result.json into one measurement per sampler it was evaluated with (a well-formed record:
    see records.record_problems)."""
    config = record.get("config") or {}
    ignore = _seed_derived_keys(path.parent)
    flat = {k: v for k, v in flatten(config).items() if not _is_bookkeeping(k, ignore)}
    if not flat:  # a record without its config: fall back on the choices and overrides it names
        flat = {k: record.get(k) for k in ("method", "dataset", "model")}
        flat.update({f"override:{o.split('=', 1)[0]}": o.split("=", 1)[-1]
                     for o in record.get("overrides", [])
                     if not o.lstrip("+~").startswith(("seed=", "hydra", "logger"))})
    common = dict(
        path=path, status=str(record.get("status", "unreadable")), method=str(record.get("method", "?")),
        dataset=str(record.get("dataset", "?")), model=str(record.get("model", "?")), seed=record.get("seed"),
        config=flat, wall_time=as_float(record.get("wall_time")), steps=record.get("steps"),
        steps_per_sec=as_float(record.get("steps_per_sec")), error=record.get("error"),
        primary_metric=_primary_metric(record), precision=record.get("precision"),
        run_sampler=sampler_name(record),
    )
    specs = dict(record.get("metric_specs") or {})
    samplers = record.get("samplers") or {}
    if samplers:
        # a completed run whose evaluation with this sampler failed: its own status, with the evaluation's
        # error
        def eval_failed(entry: dict[str, Any]) -> dict[str, Any]:
            failed = entry.get("error") and common["status"] == "completed"
            return {"status": EVAL_FAILED, "error": entry["error"]} if failed else {}

        return [Measurement(sampler=str(name), metrics=dict(entry.get("metrics") or {}),
                            protocol=entry.get("protocol", record.get("protocol")),
                            metric_specs={**specs, **(entry.get("metric_specs") or {})},
                            **{**common, **eval_failed(entry)})
                for name, entry in samplers.items()]
    return [Measurement(sampler=sampler_name(record), metrics=dict(record.get("metrics") or {}),
                        protocol=record.get("protocol"), metric_specs=specs, **common)]


def unreadable_measurement(path: Path, reason: str, record: Any = None) -> Measurement:
    """A result.json the table cannot use, shown as a row of its own with the reason; what identifies the
    run (method, dataset, model, seed) is kept when the record has it in a usable form."""
    known = record if isinstance(record, dict) else {}

    def text(key: str) -> str:
        return known[key] if isinstance(known.get(key), str) else "?"

    seed = known.get("seed")
    sampler = sampler_name(known) if isinstance(known.get("sampler"), str) else "?"
    return Measurement(path, "unreadable", text("method"), sampler, text("dataset"), text("model"),
                       seed if isinstance(seed, (int, float, str)) else None, {}, None,
                       {"path": str(path.parent)}, error=reason)


def _malformed(problems: Sequence[str], shown: int = 3) -> str:
    more = f" (+{len(problems) - shown} more)" if len(problems) > shown else ""
    return f"malformed {RESULT_FILE}: " + "; ".join(problems[:shown]) + more


def load_measurements(paths: Sequence[str | Path]) -> list[Measurement]:
    """All measurements under `paths`; a result.json that cannot be read, or is not shaped like a record,
    becomes an 'unreadable' measurement whose error says why (the others are unaffected)."""
    out: list[Measurement] = []
    for path in find_results(paths):
        try:
            record = json.loads(path.read_text())
        except Exception as exc:  # a half-written or corrupt file is shown, not skipped
            out.append(unreadable_measurement(path, f"{exc.__class__.__name__}: {exc}"))
            continue
        problems = record_problems(record)
        if problems:
            out.append(unreadable_measurement(path, _malformed(problems), record))
            continue
        try:
            out.extend(measurements_from_record(record, path))
        except Exception as exc:  # a shape record_problems does not know yet: still one row, not a traceback
            out.append(unreadable_measurement(path, f"{exc.__class__.__name__}: {exc}", record))
    return out
