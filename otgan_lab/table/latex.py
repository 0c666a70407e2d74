"""The LaTeX format: a booktabs `tabular` (\\toprule, \\midrule, \\bottomrule) with mean ± std per metric,
the best mean of each metric in bold (per dataset and protocol, by the metric's direction; none for a metric
without one), text escaped (underscores and the other special characters), the notes as % comments."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from otgan_lab.table.display import fmt
from otgan_lab.table.render import _labels, metric_keys, pair_matrix, shown_fields

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_UNICODE = {"↓": r"$\downarrow$", "↑": r"$\uparrow$", "±": r"$\pm$", "—": "--", "−": "-", "Δ": r"$\Delta$",
            "·": r"$\cdot$", "…": r"\ldots{}"}


def escape(text: Any) -> str:
    out = "".join(_SPECIAL.get(c, c) for c in str(text))
    return "".join(_UNICODE.get(c, c) for c in out)


def _number(x: float) -> str:
    if math.isinf(x):
        return r"\infty" if x > 0 else r"-\infty"
    return fmt(x)


def _best(records: list[dict[str, Any]], key: str) -> set[int]:
    """Indices of the records holding the best completed mean of `key`, per dataset and protocol."""
    best: dict[tuple[str, str], tuple[float, list[int]]] = {}
    for i, r in enumerate(records):
        cell = r.get("metrics", {}).get(key)
        if r["status"] != "completed" or not cell or cell["goal"] is None or cell["mean"] is None:
            continue
        if not math.isfinite(cell["mean"]):
            continue
        score = cell["mean"] if cell["goal"] == "min" else -cell["mean"]
        pool = (r["dataset"], r["protocol"])
        if pool not in best or score < best[pool][0]:
            best[pool] = (score, [i])
        elif score == best[pool][0]:
            best[pool][1].append(i)
    return {i for _, idx in best.values() for i in idx}


def _cell(r: dict[str, Any], key: str, bold: bool) -> str:
    cell = r.get("metrics", {}).get(key)
    if not cell or cell["mean"] is None:
        return "--" if r["status"] in ("completed", "not run") else escape(r["status"])
    if r["status"] != "completed":
        return f"${_number(cell['mean'])}$ ({escape(r['status'])})"
    body = _number(cell["mean"]) + (rf" \pm {_number(cell['std'])}" if cell["std"] is not None else "")
    return rf"$\mathbf{{{body}}}$" if bold else f"${body}$"


def _tabular(headers: Sequence[str], body: Sequence[Sequence[str]], align: str) -> list[str]:
    return [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(headers) + r" \\", r"\midrule",
            *(" & ".join(cells) + r" \\" for cells in body), r"\bottomrule", r"\end{tabular}"]


def render_latex(records: list[dict[str, Any]], notes: Sequence[str], labels: str | Sequence[str],
                 title: str = "", show: Sequence[str] = ()) -> str:
    keys, names = metric_keys(records), _labels(records, labels)
    ours = [r for r in records if r["status"] != "not run"]
    fields = [f for f in shown_fields(records, show) if f not in ("sampler", "variant") or f in show
              or any(r.get(f) not in ("", "standard") for r in ours)]
    extra = []
    if records and "published_text" in records[0]:
        extra = [("report row", lambda r: escape(r["report_row"])), ("published", lambda r: escape(
            r["published_text"]))]
    if any(r["status"] != "completed" for r in records):
        fields.append("status")
    baseline = any("diff_texts" in r for r in records)
    headers = [escape(h) for h, _ in extra] + [escape(f) for f in fields] + ["$n$"]
    headers += [escape(n) for n in names]
    headers += [escape(f"Δ {n} vs baseline") for n in names] if baseline else []
    bold = {key: _best(records, key) for key in keys}
    body = []
    for i, r in enumerate(records):
        cells = [get(r) for _, get in extra] + [escape(r.get(f, "")) for f in fields] + [str(r["n"])]
        cells += [_cell(r, key, i in bold[key]) for key in keys]
        cells += [escape(r.get("diff_texts", {}).get(key, "—")) for key in keys] if baseline else []
        body.append(cells)
    align = "l" * (len(extra) + len(fields)) + "r" * (1 + len(keys)) + ("l" * len(keys) if baseline else "")
    out = [f"% {title}"] if title else []
    out += _tabular(headers, body, align)
    out += [f"% {n}" for n in notes]
    return "\n".join(out) + "\n"


def render_latex_pairs(records: list[dict[str, Any]], labels: str | Sequence[str]) -> str:
    out = []
    for key, name in zip(metric_keys(records), _labels(records, labels)):
        headers, body = pair_matrix(records, key)
        out += [f"% pairs: {name}, row - column", *_tabular([escape(h) for h in headers],
                                                            [[escape(c) for c in b] for b in body],
                                                            "l" * len(headers))]
    return "\n".join(out) + "\n"
