"""Grouping measurements into rows. Runs that differ only by seed form a group (the key is the resolved config
minus the seed and bookkeeping keys, or the `--by` fields); each group becomes one row per protocol for its
completed runs (otgan_lab.table.protocols) and one row per other status (failed, diverged, unreadable...).
A row holds one Cell (direction and seed statistics) per metric of the table; the first orders the
leaderboard. Every row gets a label that tells it apart from the others (row_labels)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from otgan_lab.table.labels import SHOWN_FIELDS, label_rows
from otgan_lab.table.measurements import Measurement, as_float, field_value
from otgan_lab.table.metric_choice import declared_goal
from otgan_lab.table.protocols import json_key, measured_protocol, number_protocols, protocol_differences
from otgan_lab.table.stats import EMPTY, SeedStats, seed_stats


def group_key(m: Measurement, by: Sequence[str] | None = None) -> str:
    if by:
        return json_key([[name, field_value(m, name)] for name in by])
    # the sampler of the measurement (not of the config) tells apart samplers evaluated on one run
    return json_key([["sampler", m.sampler], sorted(m.config.items())])


@dataclass(frozen=True)
class Cell:
    """One metric of one row: its direction and its statistics over the row's seeds."""

    metric: str
    goal: str | None
    stats: SeedStats


@dataclass
class Row:
    """One line of our leaderboard: the runs of one group with one status (and one protocol). `metric`,
    `goal` and `stats` are the first metric's (the one that orders the table); `cells` has every metric."""

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
    cells: dict[str, Cell] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cells = {self.metric: Cell(self.metric, self.goal, self.stats),
                      **{k: c for k, c in self.cells.items() if k != self.metric}}

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

    def values(self, metric: str | None = None) -> list[tuple[Any, float]]:
        """(seed, value) of `metric` (default: the first) for each measurement that has one; none unless
        the row completed."""
        if self.status != "completed":
            return []
        key = metric or self.metric
        found = ((m.seed, as_float(m.metrics.get(key))) for m in self.measurements)
        return [(s, v) for s, v in found if v is not None]

    def bound(self, goal: str | None) -> float | None:
        """A run that did not complete ranks last (R4's 'inf', or '-inf' for a higher-is-better metric; no
        value when the metric has no direction, or for a record that could not be read)."""
        return None if self.status == "unreadable" else {"min": math.inf, "max": -math.inf}.get(goal or "")

    @property
    def value(self) -> float | None:
        """What ranks this row: the first metric's mean, or its bound when the row did not complete."""
        return self.stats.mean if self.status == "completed" else self.bound(self.goal)


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _short_error(errors: Iterable[str | None], limit: int = 160) -> str:
    distinct = list(dict.fromkeys(_one_line(e or "no error recorded", limit) for e in errors))
    return "; ".join(distinct[:2]) + (f" (+{len(distinct) - 2} more)" if len(distinct) > 2 else "")


def _common(members: Sequence[Measurement], attr: str) -> str:
    """The members' shared value of a column, or all of them joined with '|' (possible with --by)."""
    return "|".join(dict.fromkeys(str(getattr(m, attr)) for m in members))


def _goals(metrics: list[str], goal: str | None | Sequence[str | None]) -> list[str | None]:
    given = [goal] if goal is None or isinstance(goal, str) else list(goal)
    return (given + [None] * len(metrics))[: len(metrics)]


def _completed_row(key: str, ident: tuple, runs: list[Measurement], metrics: list[str],
                   goals: list[str | None], n_group: int) -> Row:
    cells, notes = {}, []
    for metric, goal in zip(metrics, goals):
        values = [v for v in (as_float(m.metrics.get(metric)) for m in runs) if v is not None]
        cells[metric] = Cell(metric, goal, seed_stats(values, goal))
        missing = len(runs) - len(values)
        if missing:
            available = sorted({k for m in runs for k, v in m.metrics.items() if as_float(v) is not None})
            notes.append(f"{missing} of {len(runs)} runs have no {metric!r}"
                         + (f" (they have: {', '.join(available[:8])})" if available else ""))
    first = cells[metrics[0]]
    return Row(key, *ident, "completed", runs, first.metric, first.goal, first.stats, n_group,
               protocol=runs[0].protocol, notes=notes, cells=cells)


def build_rows(measurements: Sequence[Measurement], metric: str | Sequence[str],
               by: Sequence[str] | None = None, goal: str | None | Sequence[str | None] = None) -> list[Row]:
    """Group measurements and turn each group into rows (completed per protocol, then one per other status).
    `metric` is one metric or several (the first orders the table); `goal` overrides the declared direction
    of the first metric, or of each when a sequence (describe_metric)."""
    metrics = [metric] if isinstance(metric, str) else list(metric)
    goals = [g or declared_goal(measurements, m) for m, g in zip(metrics, _goals(metrics, goal))]
    groups: dict[str, list[Measurement]] = {}
    for m in measurements:
        groups.setdefault(group_key(m, by), []).append(m)
    rows: list[Row] = []
    for key, members in groups.items():
        ident = tuple(_common(members, a) for a in SHOWN_FIELDS)
        done = [m for m in members if m.status == "completed"]
        by_protocol: dict[str, list[Measurement]] = {}
        for m in done:
            by_protocol.setdefault(json_key(measured_protocol(m.protocol)), []).append(m)
        for pkey, runs in by_protocol.items():
            row = _completed_row(key, ident, runs, metrics, goals, len(members))
            if len(by_protocol) > 1:
                others = [json.loads(p) for p in by_protocol if p != pkey]
                mine = measured_protocol(runs[0].protocol)
                diffs = "; ".join(protocol_differences(mine, o)[0] for o in others
                                  if protocol_differences(mine, o))
                row.notes.append(f"not averaged with {len(done) - len(runs)} run(s) of this group measured "
                                 f"under another protocol ({diffs})")
            if len(runs) < len(members):
                others = [m.status if m.status != "completed" else "under another protocol"
                          for m in members if m not in runs]
                counts = ", ".join(f"{others.count(s)} {s}" for s in dict.fromkeys(others))
                row.notes.append(f"other runs of this config: {counts}")
            rows.append(row)
        for status in dict.fromkeys(m.status for m in members if m.status != "completed"):
            runs = [m for m in members if m.status == status]
            row = Row(key, *ident, status, runs, metrics[0], goals[0], EMPTY, len(members),
                      cells={m: Cell(m, g, EMPTY) for m, g in zip(metrics, goals)})
            if status == "running":
                row.notes.append("no final record: still running, or killed before it could write one")
            else:  # an unreadable record's reason names every key that is wrong: give it room
                limit = 400 if status == "unreadable" else 160
                row.notes.append(_short_error((m.error for m in runs), limit))
            rows.append(row)
    label_rows(rows, by)
    number_protocols(rows)
    return rows


def sort_rows(rows: Sequence[Row]) -> list[Row]:
    """Leaderboard order: by dataset, then best first; runs that did not complete last, missing values
    after them."""

    def key(row: Row) -> tuple:
        v = row.value
        missing = v is None or (isinstance(v, float) and math.isnan(v))
        score = 0.0 if missing or row.goal is None else (v if row.goal == "min" else -v)
        return (row.dataset, missing, row.status != "completed", score, row.method, row.sampler, row.variant)

    return sorted(rows, key=key)
