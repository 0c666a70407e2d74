"""Published values and the ordering check (`--report rN`): match our rows to a report's rows
(otgan_lab/reports.py) and state, per report table, whether our ordering agrees with the published one
(Kendall's tau, in words)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from otgan_lab.reports import Report, ReportRow, Selector
from otgan_lab.table.grouping import Row
from otgan_lab.table.metric_choice import describe_metric


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


def ordering_agreement(published: Sequence[float],
                       ours: Sequence[float]) -> tuple[float, list[tuple[int, int]]]:
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
    """The published value in the direction of our metric; an expected rank stands in when none was
    printed."""
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
        usable = [(rrow, p, o) for rrow, p, o in usable
                  if p is not None and o is not None and not math.isnan(o)]
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
        printed = any(u[0].published is not None for u in usable)
        kind = "published values" if printed else "the report's claims"
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
                        f"{len(swapped)} of {n * (n - 1) // 2} pairs swapped"
                        + (f": {listed}{more}." if swapped else "."))
    return ReportComparison(report, matches, verdicts)
