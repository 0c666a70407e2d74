"""`otlab table`: turn a sweep (or any run dirs) into a leaderboard.

    otlab table <sweep dir or run dirs...> [--by method,sampler] [--metric fid] [--format rich|md|csv]
                [--out FILE] [--wandb] [--plot PNG] [--report r1..r5]

Every `**/result.json` under the given paths is read (never Hydra callbacks: a job that crashed, was killed
or ran through another launcher still counts when its record is on disk). Runs that differ only by seed form
a group (the key is the resolved config minus the seed and bookkeeping keys, or the `--by` fields), and each
group becomes a row: mean ± std over seeds, a 95 % t-interval, seed count, best seed, wall time, steps/s.
- One row per method × sampler: a run evaluated with several samplers (result["samplers"]) contributes one
  measurement per sampler.
- Failed / diverged / interrupted runs (and records still marked running) are rows of their own, shown as
  "inf (failed)" like report R4 does, never dropped.
- Numbers measured under different evaluation protocols (backbone, sample count, split... as recorded in
  result["protocol"] and the per-sampler protocol) are never averaged together: such a group is split into one
  row per protocol with a note saying what differs.
- `--report rN` lays the table out as report N's rows (otgan_lab/reports.py) with the published value beside
  ours, and states whether our ordering of the rows agrees with the report's (Kendall's tau, in words).
- Which direction is better comes from the metric's declaration (otgan_lab/metrics/spec.py): the records'
  `metric_specs` first, else the code's declarations (older records), else none: the table then says so and
  marks no best until `--goal min|max` is given. Nothing is inferred from a metric's name.
- A result.json that cannot be read or does not have a record's shape (records.record_problems) is a row of
  status "unreadable" whose notes say which key is wrong; every other row still prints.

The work is done by pure functions (load_measurements, build_rows, compare_with_report, records_for_display,
render_*); main() only parses argv and writes files.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import shutil
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from otgan_lab.metrics.spec import MetricSpec, lookup_spec, prefixed
from otgan_lab.records import RESULT_FILE, flatten, record_problems
from otgan_lab.reports import REPORTS, Report, ReportRow, Selector

# Config keys that never change what a run measures: they must not split seeds into different groups.
BOOKKEEPING_KEYS = (
    "seed", "hydra", "logger", "device", "num_threads", "trainer.progress", "trainer.resume", "trainer.log_every",
    "trainer.checkpoint_every", "trainer.keep_checkpoints", "dataset.root", "dataset.download",
)
# Row fields that --by may name directly (anything else is a dotted config key).
RECORD_FIELDS = ("method", "sampler", "dataset", "model", "precision", "status")
# a completed training run whose evaluation failed (the weights are saved: `otlab eval run=...` redoes it)
EVAL_FAILED = "eval failed"
NOT_COMPLETED = ("diverged", "failed", "interrupted", "running", "unreadable", EVAL_FAILED)
# The metric name of a table whose records name none (every run failed before it was evaluated, in an old
# record): the table still lists the runs, and says that no metric was recorded.
NO_METRIC = "(no metric recorded)"


# ----------------------------------------------------------------------------------------------------------
# Loading


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

    @property
    def run_dir(self) -> Path:
        return self.path.parent


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


def _float(value: Any) -> float | None:
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
    return name[: -len("Sampler")].lower() if name.endswith("Sampler") and len(name) > len("Sampler") else name


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
        flat.update({f"override:{o.split('=', 1)[0]}": o.split("=", 1)[-1] for o in record.get("overrides", [])
                     if not o.lstrip("+~").startswith(("seed=", "hydra", "logger"))})
    common = dict(
        path=path, status=str(record.get("status", "unreadable")), method=str(record.get("method", "?")),
        dataset=str(record.get("dataset", "?")), model=str(record.get("model", "?")), seed=record.get("seed"),
        config=flat, wall_time=_float(record.get("wall_time")), steps=record.get("steps"),
        steps_per_sec=_float(record.get("steps_per_sec")), error=record.get("error"),
        primary_metric=_primary_metric(record), precision=record.get("precision"),
    )
    specs = dict(record.get("metric_specs") or {})
    samplers = record.get("samplers") or {}
    if samplers:
        # a completed run whose evaluation with this sampler failed: its own status, with the evaluation's error
        return [Measurement(sampler=str(name), metrics=dict(entry.get("metrics") or {}),
                            protocol=entry.get("protocol", record.get("protocol")),
                            metric_specs={**specs, **(entry.get("metric_specs") or {})},
                            **{**common, **({"status": EVAL_FAILED, "error": entry["error"]}
                                            if entry.get("error") and common["status"] == "completed" else {})})
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


# ----------------------------------------------------------------------------------------------------------
# Statistics


@dataclass(frozen=True)
class SeedStats:
    n: int
    mean: float | None
    std: float | None  # sample std (ddof = 1); None with one seed
    ci_low: float | None  # two-sided t-interval for the mean; None with one seed or non-finite values
    ci_high: float | None
    best: float | None


def seed_stats(values: Sequence[float], goal: str | None = "min", level: float = 0.95) -> SeedStats:
    """Mean, sample std, t-interval (n - 1 degrees of freedom) and best value over seeds (None when the
    metric has no direction)."""
    x = np.asarray(list(values), dtype=float)
    n = len(x)
    if n == 0:
        return SeedStats(0, None, None, None, None, None)
    with np.errstate(invalid="ignore"):
        mean = float(np.mean(x))
    best = None if goal is None else float(np.min(x) if goal == "min" else np.max(x))
    if n < 2:
        return SeedStats(1, mean, None, None, None, best)
    if not np.all(np.isfinite(x)):
        return SeedStats(n, mean, math.nan, None, None, best)
    std = float(np.std(x, ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))
    return SeedStats(n, mean, std, mean - half, mean + half, best)


# ----------------------------------------------------------------------------------------------------------
# Which metric, and which direction is better


def _subclasses(package: str, base: type) -> list[type]:
    """Every subclass of `base` defined in the modules of `package` (imported here)."""
    import importlib
    import pkgutil

    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{package}.{info.name}")
    out, todo = [], list(base.__subclasses__())
    while todo:
        cls = todo.pop(0)
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def code_declarations() -> Iterator[Mapping[str, MetricSpec]]:
    """The metric declarations in the code, lazily (imports torch): the metric suites' keys, each sampler's
    stats as sampler/<key>, each method's fit_end results. Records written before records carried their
    `metric_specs` are read through these."""
    from otgan_lab.evaluation import SUITES
    from otgan_lab.metrics.spec import specs_of

    for suite in SUITES.values():
        yield specs_of(suite)
    from otgan_lab.samplers.base import Sampler

    for cls in _subclasses("otgan_lab.samplers", Sampler):
        yield prefixed(cls.stat_specs, "sampler/")
    from otgan_lab.methods.base import Method

    for cls in _subclasses("otgan_lab.methods", Method):
        yield cls.fit_end_specs


def code_spec(key: str) -> MetricSpec | None:
    """The code's declaration of `key`; None (with a warning) if the declaring modules cannot be imported,
    so that a broken module elsewhere costs the table a direction, not the table."""
    try:
        return lookup_spec(key, code_declarations())
    except Exception as exc:
        warnings.warn(f"metric declarations not read from the code ({exc.__class__.__name__}: {exc})",
                      stacklevel=2)
        return None


@dataclass(frozen=True)
class MetricChoice:
    """The metric of a table: its key, display name, direction and where the direction came from."""

    key: str
    display: str
    goal: str | None  # "min" | "max" | None (no declared direction: no best, no ordering by value)
    source: str  # "--goal", "records", "code" or "undeclared"
    note: str = ""  # said under the table when the direction is missing or contested

    @property
    def label(self) -> str:
        """Column header: the display name with an arrow for the direction."""
        return self.display + {"min": " ↓", "max": " ↑"}.get(self.goal or "", "")

    @property
    def title(self) -> str:
        name = self.display if self.display == self.key else f"{self.display} [{self.key}]"
        how = {"min": "lower is better", "max": "higher is better"}.get(self.goal or "")
        return f"{name}, {how or 'direction not declared'}"


def describe_metric(measurements: Sequence[Measurement], metric: str,
                    goal: str | None = None) -> MetricChoice:
    """The direction of `metric`: `goal` (--goal) if given, else what the records declare (`metric_specs`,
    any status), else the code's declaration, else none, with a note saying so. Never read from the name."""
    if metric == NO_METRIC:
        return MetricChoice(metric, metric, None, "undeclared",
                            "no record names a metric; pass --metric NAME")
    declared = [MetricSpec.from_record(m.metric_specs[metric], metric)
                for m in measurements if isinstance(m.metric_specs.get(metric), dict)]
    code = None if declared else code_spec(metric)
    display = declared[0].display if declared else code.display if code is not None else metric
    if goal is not None:
        return MetricChoice(metric, display, goal, "--goal")
    informational = (f"{metric} is declared informational (no better direction); "
                     "pass --goal min|max to rank by it")
    if declared:
        goals = list(dict.fromkeys(spec.goal for spec in declared))
        if len(goals) > 1:
            counts = ", ".join(f"{g or 'none'} in {sum(s.goal == g for s in declared)}" for g in goals)
            return MetricChoice(metric, display, None, "records", f"the records disagree on the direction of "
                                f"{metric} ({counts}); pass --goal min|max")
        return MetricChoice(metric, display, goals[0], "records", "" if goals[0] else informational)
    if code is not None:
        return MetricChoice(metric, display, code.goal, "code", "" if code.goal else informational)
    return MetricChoice(metric, display, None, "undeclared",
                        f"direction of {metric} not declared; pass --goal min|max")


def declared_goal(measurements: Sequence[Measurement], metric: str) -> str | None:
    """The direction of `metric` that the records or the code declare (None: no direction)."""
    return describe_metric(measurements, metric).goal


def choose_metric(measurements: Sequence[Measurement], requested: str | None = None,
                  report: Report | None = None) -> str:
    """--metric, else the report's, else the runs' primary metric (any status: a sweep of failed runs is
    still headed by what it was run for), else a declared metric the runs measured, else NO_METRIC."""
    if requested:
        return requested
    if report is not None:
        return report.metric
    primaries = Counter(m.primary_metric for m in measurements if m.primary_metric)
    if primaries:
        return primaries.most_common(1)[0][0]  # most common; ties go to the first record read
    measured = list(dict.fromkeys(k for m in measurements if m.status == "completed"
                                  for k, v in m.metrics.items() if _float(v) is not None))
    declared = list(dict.fromkeys(k for m in measurements for k, s in m.metric_specs.items()
                                  if isinstance(s, dict) and s.get("goal") is not None))
    candidates = [k for k in declared if k in measured] + declared
    if candidates:
        return candidates[0]
    ranked = [k for k in measured if not k.startswith("sampler/")]
    for key in ranked:  # an old record: the first measured metric that the code gives a direction
        spec = code_spec(key)
        if spec is not None and spec.goal is not None:
            return key
    return ranked[0] if ranked else NO_METRIC


# ----------------------------------------------------------------------------------------------------------
# Grouping into rows


def _json_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def field_value(m: Measurement, name: str) -> Any:
    """A --by field: a record field (method, sampler, ...) or a dotted key of the resolved config."""
    if name in RECORD_FIELDS:
        return getattr(m, name)
    return m.config.get(name)


def group_key(m: Measurement, by: Sequence[str] | None = None) -> str:
    if by:
        return _json_key([[name, field_value(m, name)] for name in by])
    # the sampler of the measurement (not of the config) tells apart samplers evaluated on one run
    return _json_key([["sampler", m.sampler], sorted(m.config.items())])


# Protocol entries that do not change a number: how features are batched, where statistics are cached.
_PROTOCOL_NEUTRAL = ("batch_size", "cache_dir")


def _drop_neutral(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _drop_neutral(v) for k, v in node.items() if k not in _PROTOCOL_NEUTRAL}
    return node


def measured_protocol(protocol: dict[str, Any] | None) -> dict[str, Any] | None:
    """What makes two numbers comparable: the recorded protocol without its neutral entries."""
    return None if protocol is None else _drop_neutral(protocol)


def comparable_protocol(protocol: dict[str, Any] | None) -> dict[str, Any] | None:
    """The measured protocol minus the sampler: rows of different samplers are meant to be compared."""
    if protocol is None:
        return None
    return {k: v for k, v in measured_protocol(protocol).items() if k != "sampler"}


def protocol_differences(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    """'key: x vs y' for every flattened protocol key whose values differ."""
    fa, fb = flatten(a or {}), flatten(b or {})
    return [f"{k}: {fa.get(k, '-')} vs {fb.get(k, '-')}" for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def describe_protocol(protocol: dict[str, Any] | None) -> str:
    if not protocol:
        return "not recorded"
    p = dict(protocol)
    suites = p.pop("suites", {}) or {}
    parts = [f"{k}={v}" for k, v in p.items()]
    for name, params in suites.items():
        inner = ", ".join(f"{k}={v}" for k, v in flatten(params).items()) if isinstance(params, dict) else params
        parts.append(f"{name}({inner})" if inner else name)
    return "; ".join(parts)


@dataclass
class Row:
    """One line of our leaderboard: the runs of one group with one status (and one protocol)."""

    key: str
    method: str
    sampler: str
    dataset: str
    model: str
    status: str
    measurements: list[Measurement]
    metric: str
    goal: str | None  # None: the metric has no declared direction (no best; rows ordered by name)
    stats: SeedStats
    n_group: int  # runs in the whole group, any status
    protocol: dict[str, Any] | None = None
    protocol_id: str = ""
    variant: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def seeds(self) -> list[Any]:
        return [m.seed for m in self.measurements]

    @property
    def config(self) -> dict[str, Any]:
        return self.measurements[0].config

    @property
    def wall_time(self) -> float | None:
        times = [m.wall_time for m in self.measurements if m.wall_time is not None]
        return float(np.mean(times)) if times else None

    @property
    def steps_per_sec(self) -> float | None:
        rates = [m.steps_per_sec for m in self.measurements if m.steps_per_sec is not None]
        return float(np.mean(rates)) if rates else None

    @property
    def value(self) -> float | None:
        """What ranks this row: the mean; a run that did not complete ranks last (R4's 'inf', or '-inf' for
        a higher-is-better metric; no value when the metric has no direction, or for a record that could not
        be read: that is no run's result)."""
        if self.status == "unreadable":
            return None
        if self.status != "completed":
            return {"min": math.inf, "max": -math.inf}.get(self.goal or "")
        return self.stats.mean


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _short_error(errors: Iterable[str | None], limit: int = 160) -> str:
    distinct = list(dict.fromkeys(_one_line(e or "no error recorded", limit) for e in errors))
    return "; ".join(distinct[:2]) + (f" (+{len(distinct) - 2} more)" if len(distinct) > 2 else "")


def _common(members: Sequence[Measurement], attr: str) -> str:
    """The members' shared value of a column, or all of them joined with '|' (possible with --by)."""
    return "|".join(dict.fromkeys(str(getattr(m, attr)) for m in members))


def build_rows(measurements: Sequence[Measurement], metric: str, by: Sequence[str] | None = None,
               goal: str | None = None) -> list[Row]:
    """Group measurements and turn each group into rows (completed per protocol, then one per other status).
    `goal` overrides the metric's declared direction (describe_metric)."""
    goal = goal or declared_goal(measurements, metric)
    groups: dict[str, list[Measurement]] = {}
    for m in measurements:
        groups.setdefault(group_key(m, by), []).append(m)
    rows: list[Row] = []
    for key, members in groups.items():
        ident = tuple(_common(members, a) for a in ("method", "sampler", "dataset", "model"))
        done = [m for m in members if m.status == "completed"]
        by_protocol: dict[str, list[Measurement]] = {}
        for m in done:
            by_protocol.setdefault(_json_key(measured_protocol(m.protocol)), []).append(m)
        protocols = list(by_protocol)
        for pkey, runs in by_protocol.items():
            values = [v for v in (_float(m.metrics.get(metric)) for m in runs) if v is not None]
            row = Row(key, *ident, "completed", runs, metric, goal, seed_stats(values, goal), len(members),
                      protocol=runs[0].protocol)
            missing = len(runs) - len(values)
            if missing:
                available = sorted({k for m in runs for k, v in m.metrics.items() if _float(v) is not None})
                row.notes.append(f"{missing} of {len(runs)} runs have no {metric!r}"
                                 + (f" (they have: {', '.join(available[:8])})" if available else ""))
            if len(protocols) > 1:
                others = [json.loads(p) for p in protocols if p != pkey]
                mine = measured_protocol(runs[0].protocol)
                diffs = "; ".join(protocol_differences(mine, o)[0] for o in others if protocol_differences(mine, o))
                row.notes.append(f"not averaged with {len(done) - len(runs)} run(s) of this group measured under "
                                 f"another protocol ({diffs})")
            if len(runs) < len(members):
                others = [m.status if m.status != "completed" else "under another protocol"
                          for m in members if m not in runs]
                counts = ", ".join(f"{others.count(s)} {s}" for s in dict.fromkeys(others))
                row.notes.append(f"other runs of this config: {counts}")
            rows.append(row)
        for status in dict.fromkeys(m.status for m in members if m.status != "completed"):
            runs = [m for m in members if m.status == status]
            row = Row(key, *ident, status, runs, metric, goal, SeedStats(0, None, None, None, None, None),
                      len(members))
            if status == "running":
                row.notes.append("no final record: still running, or killed before it could write one")
            else:  # an unreadable record's reason names every key that is wrong: give it room
                limit = 400 if status == "unreadable" else 160
                row.notes.append(_short_error((m.error for m in runs), limit))
            rows.append(row)
    _label_rows(rows, by)
    _number_protocols(rows)
    return rows


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _label_rows(rows: list[Row], by: Sequence[str] | None) -> None:
    """A short 'variant' for each row: what tells its group apart from others of the same method. An
    unreadable record's row names its run dir instead (what to go and fix), and takes no part in the others'
    labels (it has no config to compare)."""
    for row in rows:
        if row.status == "unreadable":
            dirs = list(dict.fromkeys(str(m.run_dir) for m in row.measurements))
            row.variant = dirs[0] + (f" (+{len(dirs) - 1} more)" if len(dirs) > 1 else "")
    if by:
        for row in rows:
            m = row.measurements[0]
            if row.status != "unreadable":
                row.variant = ", ".join(f"{'.'.join(k.split('.')[-2:])}={_short(field_value(m, k))}"
                                        for k in by if k not in ("method", "sampler", "dataset", "model"))
        return
    families: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for row in rows:
        if row.status != "unreadable":
            families.setdefault((row.method, row.dataset, row.model), {})[row.key] = row.config
    for row in rows:
        if row.status == "unreadable":
            continue
        if "report_row" in row.config:  # the report presets tag every run with its row
            row.variant = str(row.config["report_row"])
            continue
        configs = families[(row.method, row.dataset, row.model)]
        if len(configs) < 2:
            continue
        keys = sorted({k for c in configs.values() for k in c})
        # a key one config lacks and another sets (even to null) tells them apart too
        differing = [k for k in keys if len({_json_key(c[k]) if k in c else "<absent>" for c in configs.values()}) > 1]
        shown = [f"{'.'.join(k.split('.')[-2:])}={_short(row.config[k]) if k in row.config else '<absent>'}"
                 for k in differing[:4]]
        row.variant = ", ".join(shown) + (f", +{len(differing) - 4} more" if len(differing) > 4 else "")


def _number_protocols(rows: list[Row]) -> None:
    ids: dict[str, str] = {}
    for row in rows:
        if row.status == "completed":
            pkey = _json_key(comparable_protocol(row.protocol))
            row.protocol_id = ids.setdefault(pkey, f"P{len(ids) + 1}")


def protocol_legend(rows: Sequence[Row]) -> dict[str, dict[str, Any] | None]:
    legend: dict[str, dict[str, Any] | None] = {}
    for row in rows:
        if row.protocol_id and row.protocol_id not in legend:
            legend[row.protocol_id] = comparable_protocol(row.protocol)
    return legend


def sort_rows(rows: Sequence[Row]) -> list[Row]:
    """Leaderboard order: by dataset, then best first; runs that did not complete last; missing values after."""

    def key(row: Row) -> tuple:
        v = row.value
        missing = v is None or (isinstance(v, float) and math.isnan(v))
        score = 0.0 if missing or row.goal is None else (v if row.goal == "min" else -v)
        return (row.dataset, missing, row.status != "completed", score, row.method, row.sampler, row.variant)

    return sorted(rows, key=key)


# ----------------------------------------------------------------------------------------------------------
# Published values and the ordering check


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, tuple):
        return any(_same(actual, e) for e in expected)
    if actual == expected:
        return True
    return str(actual).lower() == str(expected).lower()


def selector_matches(selector: Selector, row: Row) -> bool:
    if row.method != selector.method or row.sampler != selector.sampler:
        return False
    if selector.dataset is not None and row.dataset != selector.dataset:
        return False
    return all(_same(row.config.get(k), v) for k, v in selector.overrides.items())


def ordering_agreement(published: Sequence[float], ours: Sequence[float]) -> tuple[float, list[tuple[int, int]]]:
    """Kendall's tau-b between the two orderings, and the index pairs ranked the opposite way."""
    tau = float(stats.kendalltau(published, ours).statistic) if len(published) >= 2 else math.nan
    swapped = [(i, j) for i in range(len(ours)) for j in range(i + 1, len(ours))
               if np.sign(published[i] - published[j]) * np.sign(ours[i] - ours[j]) < 0]
    return tau, swapped


@dataclass
class ReportComparison:
    report: Report
    matches: list[tuple[ReportRow, list[Row]]]
    verdicts: list[str]


def _published_score(rrow: ReportRow, goal: str | None) -> float | None:
    """The published value in the direction of our metric; an expected rank stands in when none was printed."""
    if rrow.published is not None:
        return rrow.published
    if rrow.expected_rank is not None:
        return float(rrow.expected_rank) if goal == "min" else -float(rrow.expected_rank)
    return None


def _our_score(rows: Sequence[Row]) -> float | None:
    """A completed row's mean wins over rows of failed seeds; only failures rank as R4's 'inf'."""
    completed = [r for r in rows if r.status == "completed" and r.value is not None]
    if completed:
        return completed[0].value
    failed = [r for r in rows if r.status != "completed" and r.status != "running"]
    return failed[0].value if failed else None


def compare_with_report(rows: Sequence[Row], report: Report) -> ReportComparison:
    """Match our rows to the report's rows and state, per report table, whether the orderings agree."""
    matches = [(rrow, [r for r in rows if rrow.selector is not None and selector_matches(rrow.selector, r)])
               for rrow in report.rows]
    goal = rows[0].goal if rows else describe_metric([], report.metric).goal
    if goal is None:
        note = describe_metric([m for r in rows for m in r.measurements], report.metric).note
        verdict = f"no ordering check: {note or 'the metric has no direction'}"
        return ReportComparison(report, matches, [verdict])
    verdicts: list[str] = []
    for table in dict.fromkeys(rrow.table for rrow in report.rows):
        pairs = [(rrow, ours) for rrow, ours in matches if rrow.table == table]
        usable = [(rrow, _published_score(rrow, goal), _our_score(ours)) for rrow, ours in pairs]
        usable = [(rrow, p, o) for rrow, p, o in usable if p is not None and o is not None and not math.isnan(o)]
        name = f"{table}: " if table else ""
        protocols = sorted({r.protocol_id for _, ours in pairs for r in ours if r.protocol_id})
        if len(protocols) > 1:
            verdicts.append(f"{name}our matched rows were measured under {len(protocols)} protocols "
                            f"({', '.join(protocols)}); orderings across them are not like for like.")
        if len(usable) < 2:
            verdicts.append(f"{name}fewer than two rows have both a published value and ours "
                            f"({len(usable)} of {len(pairs)}); no ordering to compare.")
            continue
        labels = [u[0].label for u in usable]
        tau, swapped = ordering_agreement([u[1] for u in usable], [u[2] for u in usable])
        kind = "published values" if any(u[0].published is not None for u in usable) else "the report's claims"
        n = len(usable)
        if not swapped and tau > 0.999:
            verdicts.append(f"{name}our ordering of the {n} rows agrees with {kind} (same ranking; "
                            f"Kendall tau = {tau:.2f}).")
            continue
        if not swapped:
            word = "agrees except for ties (rows one side ranks equal)"
        elif tau >= 0.6:
            word = "mostly agrees"
        elif tau > 0:
            word = "partly agrees"
        else:
            word = "disagrees"
        listed = "; ".join(f"{labels[i]} vs {labels[j]}" for i, j in swapped[:5])
        more = f" (+{len(swapped) - 5} more)" if len(swapped) > 5 else ""
        verdicts.append(f"{name}our ordering of the {n} rows {word} with {kind}: Kendall tau = {tau:.2f}; "
                        f"{len(swapped)} of {n * (n - 1) // 2} pairs swapped" + (f": {listed}{more}." if swapped
                                                                                   else "."))
    return ReportComparison(report, matches, verdicts)


# ----------------------------------------------------------------------------------------------------------
# Display records and renderers


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "—"
    if math.isinf(x) or math.isnan(x):
        return str(x)
    return f"{x:.{digits}g}"


def _value_text(row: Row) -> str:
    if row.status != "completed":
        # R4 writes a failed run as 'inf'; an evaluation that failed has no value at all
        bound = "—" if row.value is None or row.status == EVAL_FAILED else _fmt(row.value)
        return f"{bound} ({row.status})"
    s = row.stats
    if s.mean is None:
        return f"— (no {row.metric})"
    return _fmt(s.mean) + (f" ± {_fmt(s.std, 3)}" if s.std is not None else "")


def _row_record(row: Row | None, rrow: ReportRow | None, show_published: bool) -> dict[str, Any]:
    """All columns of one display line; numbers stay numbers (csv), text columns are for rich/md."""
    rec: dict[str, Any] = {}
    if show_published:
        rec["report_row"] = rrow.label if rrow else ""
        pub = rrow.published if rrow else None
        pub_text = "—"
        if rrow is not None and pub is not None:
            pub_text = "inf (failed)" if math.isinf(pub) else _fmt(pub)
            if rrow.published_std is not None:
                pub_text += f" ± {_fmt(rrow.published_std, 3)}"
        elif rrow is not None and rrow.expected_rank is not None:
            pub_text = f"rank {rrow.expected_rank}"
        rec["published"] = pub
        rec["published_text"] = pub_text
    if row is None:
        sel = rrow.selector if rrow else None
        rec.update(method=sel.method if sel else "", sampler=sel.sampler if sel else "", variant="",
                   dataset=(sel.dataset or "") if sel else "", model="", status="not run", n=0, n_runs=0,
                   seeds="", mean=None, std=None, ci_low=None, ci_high=None, best=None, value_text="—",
                   ci_text="", wall_time=None, steps_per_sec=None, protocol="",
                   notes="; ".join(([f"report: {rrow.note}"] if rrow and rrow.note else [])
                                   + ([] if sel is None else ["no matching runs"])))
        return rec
    s = row.stats
    mean = s.mean if row.status == "completed" else None if row.status == EVAL_FAILED else row.value
    rec.update(
        method=row.method, sampler=row.sampler, variant=row.variant, dataset=row.dataset, model=row.model,
        status=row.status, n=len(row.measurements), n_runs=row.n_group,
        seeds=" ".join(str(x) for x in row.seeds), mean=mean, std=s.std, ci_low=s.ci_low, ci_high=s.ci_high,
        best=s.best, value_text=_value_text(row),
        ci_text=f"[{_fmt(s.ci_low)}, {_fmt(s.ci_high)}]" if s.ci_low is not None else "—",
        wall_time=row.wall_time, steps_per_sec=row.steps_per_sec, protocol=row.protocol_id,
        notes="; ".join(n for n in ([f"report: {rrow.note}"] if rrow and rrow.note else []) + row.notes if n),
    )
    return rec


def records_for_display(rows: Sequence[Row], comparison: ReportComparison | None = None) -> list[dict[str, Any]]:
    """The lines to print: our leaderboard, or, with a report, its rows in its order and then our other rows."""
    if comparison is None:
        return [_row_record(r, None, False) for r in sort_rows(rows)]
    out, used = [], set()
    for rrow, ours in comparison.matches:
        for r in ours or [None]:
            out.append(_row_record(r, rrow, True))
            if r is not None:
                used.add(id(r))
    out.extend(_row_record(r, None, True) for r in sort_rows(rows) if id(r) not in used)
    return out


def table_notes(rows: Sequence[Row], comparison: ReportComparison | None = None) -> list[str]:
    notes = []
    if rows and rows[0].goal is None:  # say why no row is marked best
        choice = describe_metric([m for r in rows for m in r.measurements], rows[0].metric)
        notes.append(choice.note or f"direction of {rows[0].metric} not declared; pass --goal min|max")
    legend = protocol_legend(rows)
    for pid, protocol in legend.items():
        notes.append(f"{pid}: {describe_protocol(protocol)}")
    by_dataset: dict[str, set[str]] = {}
    for r in rows:
        if r.protocol_id:
            by_dataset.setdefault(r.dataset, set()).add(r.protocol_id)
    for dataset, ids in by_dataset.items():
        if len(ids) > 1:
            ps = sorted(ids)
            diffs = protocol_differences(legend[ps[0]], legend[ps[1]])
            notes.append(f"{dataset}: rows use {len(ids)} evaluation protocols ({', '.join(ps)}); compare rows only "
                         f"within one protocol (e.g. {ps[0]} vs {ps[1]}: {'; '.join(diffs[:3])}).")
    if comparison is not None:
        notes.append(f"published: {comparison.report.title}; {comparison.report.protocol}.")
        notes.extend(f"ordering: {v}" for v in comparison.verdicts)
    return notes


_COLUMNS = [  # (record key, header) for rich and md
    ("method", "method"), ("sampler", "sampler"), ("variant", "variant"), ("dataset", "dataset"),
    ("status", "status"), ("n_text", "n"), ("value_text", "{metric} mean ± std"), ("ci_text", "95% CI"),
    ("best_text", "best"), ("wall_text", "wall s"), ("speed_text", "steps/s"), ("protocol", "protocol"),
    ("notes", "notes"),
]


def _text_columns(records: list[dict[str, Any]], metric: str) -> tuple[list[str], list[list[str]]]:
    published = bool(records) and "published_text" in records[0]
    cols = list(_COLUMNS)
    if published:
        cols = [("report_row", "report row"), ("published_text", f"published {metric}"), *cols]
    if len({r["dataset"] for r in records if r["dataset"]}) <= 1:
        cols = [c for c in cols if c[0] != "dataset"]
    headers = [h.format(metric=metric) for _, h in cols]
    body = []
    for r in records:
        extra = {
            "n_text": f"{r['n']}/{r['n_runs']}" if r["n_runs"] != r["n"] else str(r["n"]),
            "best_text": _fmt(r["best"]), "wall_text": _fmt(r["wall_time"], 3),
            "speed_text": _fmt(r["steps_per_sec"], 3),
        }
        body.append([str({**r, **extra}.get(k, "")) for k, _ in cols])
    return headers, body


def render_markdown(records: list[dict[str, Any]], notes: Sequence[str], metric: str, title: str = "") -> str:
    headers, body = _text_columns(records, metric)

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [f"### {title}", ""] if title else []
    out += [line(headers), line(["---"] * len(headers)), *(line(b) for b in body)]
    if notes:
        out += ["", *(f"- {n}" for n in notes)]
    return "\n".join(out) + "\n"


_CSV_FIELDS = ["report_row", "published", "method", "sampler", "variant", "dataset", "model", "status", "n", "n_runs",
               "seeds", "metric", "mean", "std", "ci_low", "ci_high", "best", "wall_time", "steps_per_sec",
               "protocol", "notes"]


def render_csv(records: list[dict[str, Any]], metric: str) -> str:
    buf = io.StringIO()
    fields = [f for f in _CSV_FIELDS if f not in ("report_row", "published") or (records and f in records[0])]
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: ("" if v is None else v) for k, v in {**r, "metric": metric}.items()})
    return buf.getvalue()


def render_rich(records: list[dict[str, Any]], notes: Sequence[str], metric: str, title: str = "",
                width: int | None = None) -> str:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    headers, body = _text_columns(records, metric)
    # every text is literal: '[w2]' or a note quoting "metrics['x']" is not rich markup
    table = Table(title=escape(title) if title else None, show_lines=False)
    for h in headers:
        table.add_column(escape(h), overflow="fold")
    for cells, r in zip(body, records):
        style = None if r["status"] == "completed" else ("dim" if r["status"] == "not run" else "red")
        table.add_row(*(escape(c) for c in cells), style=style)
    console = Console(record=True, width=width or 200, file=io.StringIO())
    console.print(table)
    for n in notes:
        console.print(f"• {escape(n)}", highlight=False)
    return console.export_text()


# ----------------------------------------------------------------------------------------------------------
# Side outputs: W&B table and learning curves


def log_to_wandb(records: list[dict[str, Any]], metric: str, group: str | None, out_dir: Path,
                 project: str = "otgan_lab") -> bool:
    """Log the table as a W&B Table in a summary run of the sweep's group. Offline unless WANDB_MODE says
    otherwise; any failure warns and returns False (the printed table is the product, W&B a copy)."""
    import os

    try:
        import wandb

        columns = [f for f in _CSV_FIELDS if f not in ("report_row", "published") or (records and f in records[0])]
        data = [[r.get(c, metric if c == "metric" else None) for c in columns] for r in records]
        run = wandb.init(project=os.environ.get("WANDB_PROJECT", project), group=group, job_type="table", name=f"table-{group or 'runs'}",
                         mode=os.environ.get("WANDB_MODE", "offline"), dir=str(out_dir), reinit="finish_previous",
                         settings=wandb.Settings(silent=True, console="off"))
        run.log({"leaderboard": wandb.Table(columns=columns, data=data)})
        run.finish()
        return True
    except Exception as exc:
        warnings.warn(f"W&B table not logged ({exc.__class__.__name__}: {exc})", stacklevel=2)
        return False


def read_curve(run_dir: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of `key` from a run's metrics.jsonl; non-finite and missing points are left out."""
    path = run_dir / "metrics.jsonl"
    steps, values = [], []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            v = _float(entry.get(key))
            if v is not None and math.isfinite(v) and "step" in entry:
                steps.append(int(entry["step"]))
                values.append(v)
    return np.asarray(steps), np.asarray(values, dtype=float)


def plot_curves(rows: Sequence[Row], metric: str, path: str | Path,
                display: str | None = None) -> Path | None:
    """One line per row: the mean over seeds of `metric` against step (eval/<metric> in metrics.jsonl, or a
    training scalar of that name); thin lines are the seeds; the legend runs best row first and the y label
    says which way is better. Returns None (with a warning) if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    plotted = 0
    for row in sort_rows(rows):
        if row.status != "completed":
            continue
        curves = []
        for m in row.measurements:
            s, v = read_curve(m.run_dir, f"eval/{metric}")
            if len(s) == 0:
                s, v = read_curve(m.run_dir, metric)
            if len(s):
                curves.append((s, v))
        if not curves:
            continue
        label = " ".join(x for x in (row.method, row.sampler if row.sampler != "standard" else "", row.variant) if x)
        line = None
        for s, v in curves:
            (line,) = ax.plot(s, v, lw=0.7, alpha=0.35, color=line.get_color() if line else None)
        common = sorted(set.intersection(*(set(s.tolist()) for s, _ in curves)))
        if common:
            mean = [np.mean([v[list(s).index(t)] for s, v in curves]) for t in common]
            ax.plot(common, mean, lw=2, color=line.get_color(), label=f"{label} (n={len(curves)})")
        plotted += 1
    if not plotted:
        plt.close(fig)
        warnings.warn(f"no eval/{metric} (or {metric}) in any completed run's metrics.jsonl; no plot", stacklevel=2)
        return None
    ax.set_xlabel("generator step")
    goal = rows[0].goal if rows else None
    how = {"min": " (lower is better)", "max": " (higher is better)"}.get(goal or "", "")
    ax.set_ylabel(f"{display or metric}{how}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------------------
# Command line


def _sweep_group(paths: Sequence[str], measurements: Sequence[Measurement]) -> str | None:
    """The W&B group of the runs: the sweep dir's name, as train.py uses for multirun jobs."""
    if len(paths) == 1 and Path(paths[0]).is_dir():
        return Path(paths[0]).resolve().name
    parents = {m.run_dir.parent for m in measurements}
    return parents.pop().name if len(parents) == 1 else None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="otlab table", description="Turn a sweep (or run dirs) into a leaderboard: mean ± std over seeds.")
    parser.add_argument("paths", nargs="+", help="sweep dirs, run dirs or result.json files (searched recursively)")
    parser.add_argument("--by", help="comma-separated fields to group by (method, sampler, dataset, model, "
                        "precision or dotted config keys); default: the whole config minus the seed")
    parser.add_argument("--metric", help="metric to tabulate (default: the report's, else the runs' primary "
                        "metric, else a declared metric they measured)")
    parser.add_argument("--goal", choices=("min", "max"), help="whether lower or higher is better (default: "
                        "as the records' metric_specs or the metric's declaration in the code say)")
    parser.add_argument("--format", choices=("rich", "md", "csv"), default=None,
                        help="printed format (default rich)")
    parser.add_argument("--out", help="also write the table to this file (.csv / .md suffix: that format)")
    parser.add_argument("--wandb", action="store_true", help="log the table as a W&B Table (offline by default)")
    parser.add_argument("--plot", help="write a PNG of the metric against step per row")
    parser.add_argument("--report", choices=sorted(REPORTS), help="add a report's published column and check our "
                        "ordering against it")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `otlab table` (argv defaults to sys.argv[1:]); exits 1 when no record is found."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    measurements = load_measurements(args.paths)
    if not measurements:
        print(f"otlab table: no {RESULT_FILE} under {', '.join(args.paths)}", file=sys.stderr)
        sys.exit(1)
    report = REPORTS[args.report] if args.report else None
    metric = choose_metric(measurements, args.metric, report)
    choice = describe_metric(measurements, metric, args.goal)
    by = [b.strip() for b in args.by.split(",") if b.strip()] if args.by else None
    rows = build_rows(measurements, metric, by, choice.goal)
    comparison = compare_with_report(rows, report) if report else None
    records = records_for_display(rows, comparison)
    notes = table_notes(rows, comparison)
    title = (f"{choice.title}: mean over seeds ({len(measurements)} measurements in "
             f"{len(find_results(args.paths))} runs)")

    def render(fmt: str, width: int | None = None) -> str:
        if fmt == "csv":
            return render_csv(records, metric)
        if fmt == "md":  # headers name the metric by its display name, with ↓ / ↑ for its direction
            return render_markdown(records, notes, choice.label, title)
        return render_rich(records, notes, choice.label, title, width=width)

    shown = args.format or "rich"
    sys.stdout.write(render(shown, shutil.get_terminal_size().columns if sys.stdout.isatty() else None))
    if args.out:  # the file's format follows its suffix (.csv, .md), else the printed one
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render({".csv": "csv", ".md": "md"}.get(out.suffix.lower(), shown)))
    if args.plot:
        plot_curves(rows, metric, args.plot, choice.display)
    if args.wandb:
        first = Path(args.paths[0])
        log_to_wandb(records, metric, _sweep_group(args.paths, measurements), first if first.is_dir() else first.parent)


if __name__ == "__main__":
    main()
