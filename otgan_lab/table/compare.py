"""Comparisons that say whether a difference between rows is real, and how firmly the seeds hold the order:
- against a baseline row (`--baseline method=gan`): each row's difference of means over seeds with a
  confidence interval (Welch's t or a seed bootstrap: stats.difference), per metric;
- every pair of rows (`--pairs`): the same, as a matrix per metric;
- rank stability, always when at least two rows are ranked: each row's rank by the first metric, how often it
  keeps it when the seeds of every row are resampled, and its rank seed by seed over the seeds all rows share.
Rows are compared only with rows of the same dataset and evaluation protocol (a "pool"), and only completed
rows with values take part."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from otgan_lab.table.grouping import Row, sort_rows
from otgan_lab.table.labels import row_labels
from otgan_lab.table.measurements import RECORD_FIELDS, field_value
from otgan_lab.table.stats import RESAMPLES, SEED, Difference, difference, per_seed_ranks, rank_stability


@dataclass(frozen=True)
class RankInfo:
    rank: int  # 1 = best within the row's pool
    kept: float | None  # share of seed resamples in which the row keeps its rank; None: no row has 2+ seeds
    per_seed: tuple[int, ...]  # ranks seed by seed over the pool's shared seeds (empty: none shared)
    pool_size: int


@dataclass
class Comparisons:
    method: str  # "welch" | "bootstrap"
    level: float
    baseline: str | None = None  # the --baseline selector, as given
    # id(row) -> metric -> its Difference against the baseline row of its pool (None: the row is the baseline)
    vs_baseline: dict[int, dict[str, Difference | None]] = field(default_factory=dict)
    ranks: dict[int, RankInfo] = field(default_factory=dict)
    rank_seeds: list[list[Any]] = field(default_factory=list)  # per pool: the seeds its seed ranks are over
    # metric -> [(row a, row b, a - b or None when not comparable)], rows in leaderboard order
    pairs: dict[str, list[tuple[Row, Row, Difference | None]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def pool_key(row: Row) -> tuple[str, str]:
    return row.dataset, row.protocol_id


def parse_selector(text: str) -> dict[str, str]:
    """'method=gan,sampler=standard' -> {'method': 'gan', 'sampler': 'standard'} (record fields, 'variant'
    or dotted config keys)."""
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if "=" not in part:
            raise ValueError(f"--baseline takes key=value pairs (e.g. method=gan,sampler=standard), "
                             f"not {part!r}")
        key, value = part.split("=", 1)
        out[key.strip()] = value.strip()
    if not out:
        raise ValueError("--baseline is empty; e.g. --baseline method=gan")
    return out


def _same(actual: Any, expected: str) -> bool:
    if str(actual).lower() == expected.lower():
        return True
    try:
        return float(actual) == float(expected)
    except (TypeError, ValueError):
        return False


def row_matches(row: Row, selector: dict[str, str]) -> bool:
    for key, expected in selector.items():
        if key == "variant" or (key in RECORD_FIELDS and hasattr(row, key)):
            actual = getattr(row, key)
        else:
            actual = field_value(row.measurements[0], key)
        if not _same(actual, expected):
            return False
    return True


def _numbers(row: Row, metric: str) -> list[float]:
    return [v for _, v in row.values(metric)]


def _ranked(rows: Sequence[Row], metric: str) -> list[Row]:
    return [r for r in rows if r.values(metric)]


def _finite(values: list[tuple[Any, float]]) -> bool:
    return all(np.isfinite(v) for _, v in values)


def _baselines(rows: Sequence[Row], text: str, labels: dict[int, str]) -> dict[tuple[str, str], Row]:
    selector = parse_selector(text)
    found: dict[tuple[str, str], list[Row]] = {}
    for r in _ranked(rows, rows[0].metric if rows else ""):
        if row_matches(r, selector):
            found.setdefault(pool_key(r), []).append(r)
    if not found:
        raise ValueError(f"--baseline {text}: no completed row with values matches (rows: "
                         + "; ".join(labels[id(r)] for r in rows if r.status == "completed") + ")")
    for pool, matched in found.items():
        if len(matched) > 1:
            raise ValueError(f"--baseline {text} matches {len(matched)} rows of {pool[0]} "
                             f"({'; '.join(labels[id(r)] for r in matched)}): add a key to tell them apart "
                             "(sampler=..., model=..., variant=... or a dotted config key)")
    return {pool: matched[0] for pool, matched in found.items()}


def _pool_ranks(pool: list[Row], metric: str, goal: str) -> tuple[list[Any], dict[int, RankInfo]]:
    samples = [[v for _, v in r.values(metric)] for r in pool]
    ranks, kept = rank_stability(samples, goal)
    resampled = any(len(s) > 1 for s in samples)
    by_seed = [dict(r.values(metric)) for r in pool]
    if any(len(d) != len(s) for d, s in zip(by_seed, samples)):  # a seed twice in a row (--by): no per-seed
        by_seed = [{} for _ in pool]
    seeds, per_seed = per_seed_ranks(by_seed, goal)
    return seeds, {id(r): RankInfo(ranks[i], kept[i] if resampled else None, tuple(per_seed[i]), len(pool))
            for i, r in enumerate(pool)}


def compare_rows(rows: Sequence[Row], baseline: str | None = None, pairs: bool = False,
                 method: str = "welch", level: float = 0.95, show: Sequence[str] = ()) -> Comparisons:
    """Baseline differences (when `baseline` selects one row per pool), pairwise differences (when `pairs`)
    for every metric of the rows, and the ranks of the first metric. Raises ValueError for a baseline that
    selects no row, or several in one pool."""
    out = Comparisons(method, level, baseline)
    if not rows:
        return out
    ordered = sort_rows(rows)
    labels = dict(zip(map(id, ordered), row_labels(ordered, show)))
    metrics = list(rows[0].cells)
    if baseline:
        bases = _baselines(ordered, baseline, labels)
        for r in _ranked(ordered, metrics[0]):
            base = bases.get(pool_key(r))
            if base is not None:
                out.vs_baseline[id(r)] = {m: None if r is base else difference(
                    _numbers(r, m), _numbers(base, m), r.cells[m].goal, method, level) for m in metrics}
    if pairs:
        for m in metrics:
            ranked = _ranked(ordered, m)
            out.pairs[m] = [(a, b, difference(_numbers(a, m), _numbers(b, m), a.cells[m].goal, method, level)
                             if pool_key(a) == pool_key(b) else None)
                            for a in ranked for b in ranked if a is not b]
    goal = rows[0].goal
    pools: dict[tuple[str, str], list[Row]] = {}
    for r in _ranked(ordered, metrics[0]):
        if _finite(r.values(metrics[0])):
            pools.setdefault(pool_key(r), []).append(r)
    for pool in pools.values():
        if goal is not None and len(pool) > 1:
            seeds, ranks = _pool_ranks(pool, metrics[0], goal)
            out.ranks.update(ranks)
            out.rank_seeds.append(seeds)
    out.notes = _notes(out, ordered, labels, metrics[0])
    return out


def interval_name(method: str, level: float) -> str:
    if method == "welch":
        return f"{level:.0%} Welch t-interval (Welch–Satterthwaite df)"
    return f"{level:.0%} percentile bootstrap ({RESAMPLES} resamples of each row's seeds, seed {SEED})"


def _notes(out: Comparisons, rows: Sequence[Row], labels: dict[int, str], metric: str) -> list[str]:
    notes = []
    how = (f"difference of means over seeds with a {interval_name(out.method, out.level)}; * marks an "
           "interval that excludes zero, better/worse says which way by the metric's direction")
    if out.baseline:
        bases = [labels[id(r)] for r in rows
                 if any(d is None for d in out.vs_baseline.get(id(r), {}).values())]
        notes.append(f"Δ vs baseline ({'; '.join(bases)}): row − baseline, {how}; rows are compared with the "
                     "baseline of their own dataset and protocol.")
    if out.pairs:
        notes.append(f"pairs: row − column, {how}; n/c: another dataset or protocol.")
    if out.ranks:
        shared = {" ".join(map(str, s)) or "none" for s in out.rank_seeds}
        over = f"seeds {shared.pop()}" if len(shared) == 1 else "the seeds its dataset and protocol share"
        notes.append(f"rank (kept; per seed): rank by {metric} among completed rows of the same dataset "
                     f"and protocol; the share of {RESAMPLES} resamples of every row's seeds (seed {SEED}) "
                     f"that keep it (a resampled mean stays within its seeds' range: with few seeds 100% "
                     f"says the rows' seeds do not overlap, not that the order is certain); the rank seed by "
                     f"seed over the seeds all ranked rows have ({over}).")
    return notes
