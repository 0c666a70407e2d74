"""What a table shows, before any format: one display record per line (records_for_display) and the notes
under the table (table_notes). A record keeps numbers as numbers (csv, json, latex) beside their texts
(rich, md): flat keys for the first metric (mean, std, ci_low, ...) and `metrics` with every metric's."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from otgan_lab.reports import ReportRow
from otgan_lab.table.compare import Comparisons
from otgan_lab.table.grouping import Cell, Row, sort_rows
from otgan_lab.table.labels import row_labels
from otgan_lab.table.measurements import EVAL_FAILED, Measurement
from otgan_lab.table.metric_choice import describe_metric
from otgan_lab.table.protocols import protocol_notes
from otgan_lab.table.reports import ReportComparison
from otgan_lab.table.stats import Difference


def fmt(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "—"
    if math.isinf(x) or math.isnan(x):
        return str(x)
    return f"{x:.{digits}g}"


def signed(x: float, digits: int = 3) -> str:
    return f"{x:+.{digits}g}" if math.isfinite(x) else str(x)


def diff_text(d: Difference | dict[str, Any] | None) -> str:
    """'-2.17 [-3.9, -0.44] * better', '+0.4 [-1.2, +2]', 'baseline' (None), '+1 (no CI: one seed on a side)'
    from a Difference or its as_dict()."""
    if d is None:
        return "baseline"
    d = d.as_dict() if isinstance(d, Difference) else d
    if d["diff"] is None:
        return f"— ({d['reason']})"
    if d["ci_low"] is None or d["ci_high"] is None:
        return f"{signed(d['diff'])} (no CI: {d['reason']})"
    mark = f" * {d['verdict'] or ''}".rstrip() if d["excludes_zero"] else ""
    return f"{signed(d['diff'])} [{signed(d['ci_low'])}, {signed(d['ci_high'])}]{mark}"


def _cell_mean(row: Row, cell: Cell) -> float | None:
    if row.status == "completed":
        return cell.stats.mean
    return None if row.status == EVAL_FAILED else row.bound(cell.goal)


def _cell_text(row: Row, cell: Cell) -> str:
    if row.status != "completed":
        # R4 writes a failed run as 'inf'; an evaluation that failed has no value at all
        bound = _cell_mean(row, cell)
        return f"{'—' if bound is None else fmt(bound)} ({row.status})"
    s = cell.stats
    if s.mean is None:
        return f"— (no {cell.metric})"
    return fmt(s.mean) + (f" ± {fmt(s.std, 3)}" if s.std is not None else "")


def _cell_record(row: Row, cell: Cell) -> dict[str, Any]:
    s, values = cell.stats, row.values(cell.metric)
    return {"goal": cell.goal, "n": s.n, "mean": _cell_mean(row, cell), "std": s.std, "ci_low": s.ci_low,
            "ci_high": s.ci_high, "best": s.best, "seeds": [x for x, _ in values],
            "values": [v for _, v in values],
            "value_text": _cell_text(row, cell), "best_text": fmt(s.best),
            "ci_text": f"[{fmt(s.ci_low)}, {fmt(s.ci_high)}]" if s.ci_low is not None else "—"}


def _published(rrow: ReportRow | None) -> dict[str, Any]:
    pub = rrow.published if rrow else None
    pub_text = "—"
    if rrow is not None and pub is not None:
        pub_text = "inf (failed)" if math.isinf(pub) else fmt(pub)
        if rrow.published_std is not None:
            pub_text += f" ± {fmt(rrow.published_std, 3)}"
    elif rrow is not None and rrow.expected_rank is not None:
        pub_text = f"rank {rrow.expected_rank}"
    return {"report_row": rrow.label if rrow else "", "published": pub, "published_text": pub_text}


def _comparison_fields(row: Row, compared: Comparisons | None, labels: dict[int, str]) -> dict[str, Any]:
    if compared is None:
        return {}
    out: dict[str, Any] = {}
    if compared.baseline:
        diffs = compared.vs_baseline.get(id(row))
        out["vs_baseline"] = None if diffs is None else {m: (d.as_dict() if d else "baseline")
                                                          for m, d in diffs.items()}
        out["diff_texts"] = {m: diff_text(d) for m, d in (diffs or {}).items()}
    if compared.pairs:
        out["pairs"] = [{"vs": labels.get(id(b), ""), "metric": m, "comparable": d is not None,
                         **(d.as_dict() if d else {})}
                        for m, pairs in compared.pairs.items() for a, b, d in pairs if a is row]
    info = compared.ranks.get(id(row))
    if info is not None:
        out["rank"] = {"rank": info.rank, "kept": info.kept, "per_seed": list(info.per_seed),
                       "pool_size": info.pool_size}
        inner = "; ".join(x for x in ("" if info.kept is None else f"{info.kept:.0%}",
                                      " ".join(map(str, info.per_seed))) if x)
        out["rank_text"] = f"{info.rank}" + (f" ({inner})" if inner else "")
    return out


def _row_record(row: Row | None, rrow: ReportRow | None, show_published: bool,
                compared: Comparisons | None = None, labels: dict[int, str] | None = None) -> dict[str, Any]:
    """All columns of one display line; numbers stay numbers (csv, json), text columns are for rich/md."""
    rec: dict[str, Any] = _published(rrow) if show_published else {}
    if row is None:
        sel = rrow.selector if rrow else None
        rec.update(method=sel.method if sel else "", sampler=sel.sampler if sel else "", variant="",
                   dataset=(sel.dataset or "") if sel else "", model="", status="not run", n=0, n_runs=0,
                   seeds="", seed_list=[], mean=None, std=None, ci_low=None, ci_high=None, best=None,
                   value_text="—", ci_text="", wall_time=None, steps_per_sec=None, protocol="", metrics={},
                   label=rrow.label if rrow else "",
                   notes="; ".join(([f"report: {rrow.note}"] if rrow and rrow.note else [])
                                   + ([] if sel is None else ["no matching runs"])))
        return rec
    cells = {m: _cell_record(row, c) for m, c in row.cells.items()}
    first = cells[row.metric]
    rec.update(
        method=row.method, sampler=row.sampler, variant=row.variant, dataset=row.dataset, model=row.model,
        status=row.status, n=len(row.measurements), n_runs=row.n_group, label=(labels or {}).get(id(row), ""),
        seeds=" ".join(str(x) for x in row.seeds), seed_list=row.seeds,
        **{k: first[k] for k in ("mean", "std", "ci_low", "ci_high", "best", "value_text", "ci_text")},
        metrics=cells, wall_time=row.wall_time, steps_per_sec=row.steps_per_sec, protocol=row.protocol_id,
        notes="; ".join(n for n in ([f"report: {rrow.note}"] if rrow and rrow.note else []) + row.notes if n),
        **_comparison_fields(row, compared, labels or {}),
    )
    return rec


def records_for_display(rows: Sequence[Row], comparison: ReportComparison | None = None,
                        compared: Comparisons | None = None,
                        show: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The lines to print: our leaderboard, or, with a report, its rows in its order and then our other rows.
    `compared` (compare.compare_rows) adds the baseline differences, pairs and ranks; `show` names fields
    whose column is wanted even when they do not vary (--by model)."""
    ordered = sort_rows(rows)
    labels = dict(zip(map(id, ordered), row_labels(ordered, show)))
    if comparison is None:
        return [_row_record(r, None, False, compared, labels) for r in ordered]
    out, used = [], set()
    for rrow, ours in comparison.matches:
        for r in ours or [None]:
            out.append(_row_record(r, rrow, True, compared, labels))
            if r is not None:
                used.add(id(r))
    out.extend(_row_record(r, None, True, compared, labels) for r in ordered if id(r) not in used)
    return out


def table_notes(rows: Sequence[Row], comparison: ReportComparison | None = None,
                compared: Comparisons | None = None) -> list[str]:
    notes = []
    measurements: list[Measurement] = [m for r in rows for m in r.measurements]
    for cell in (rows[0].cells.values() if rows else ()):
        if cell.goal is None:  # say why no row is marked best
            choice = describe_metric(measurements, cell.metric)
            notes.append(choice.note or f"direction of {cell.metric} not declared; pass --goal min|max")
    notes.extend(protocol_notes(rows))
    if compared is not None:
        notes.extend(compared.notes)
    if comparison is not None:
        notes.append(f"published: {comparison.report.title}; {comparison.report.protocol}.")
        notes.extend(f"ordering: {v}" for v in comparison.verdicts)
    return notes
