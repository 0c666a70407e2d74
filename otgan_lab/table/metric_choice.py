"""Which metrics a table shows, and which direction of each is better.

The direction comes from the metric's declaration (otgan_lab/metrics/spec.py): the records' `metric_specs`
first, else the code's declarations (older records), else none: the table then says so and marks no best
until `--goal min|max` is given. Nothing is inferred from a metric's name."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from otgan_lab.metrics.spec import MetricSpec, lookup_spec, prefixed
from otgan_lab.reports import Report
from otgan_lab.table.measurements import Measurement, as_float

# The metric name of a table whose records name none (every run failed before it was evaluated, in an old
# record): the table still lists the runs, and says that no metric was recorded.
NO_METRIC = "(no metric recorded)"


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
    """A metric of a table: its key, display name, direction and where the direction came from."""

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
                                  for k, v in m.metrics.items() if as_float(v) is not None))
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


def split_list(text: str | None) -> list[str]:
    """'fid, kid' -> ['fid', 'kid'] (a comma-separated option; empty items are dropped)."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def choose_metrics(measurements: Sequence[Measurement], requested: str | None = None,
                   report: Report | None = None, goals: str | None = None) -> list[MetricChoice]:
    """The table's metrics, in order (the first orders the leaderboard): --metric's comma-separated names,
    else choose_metric's one. `goals` is --goal: one of min / max / auto per metric, in order (missing:
    auto)."""
    keys = split_list(requested) or [choose_metric(measurements, None, report)]
    given = [g.strip() for g in (goals or "").split(",")]
    bad = [g for g in given if g not in ("", "min", "max", "auto")]
    if bad:
        raise ValueError(f"--goal takes min, max or auto per metric (comma-separated), not {bad[0]!r}")
    if len(given) > len(keys) and any(given[len(keys):]):
        raise ValueError(f"--goal names {len(given)} directions for {len(keys)} metric(s)")
    given += [""] * len(keys)
    return [describe_metric(measurements, key, None if g in ("", "auto") else g)
            for key, g in zip(keys, given)]
