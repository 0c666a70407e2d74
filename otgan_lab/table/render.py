"""Formats of a table: rich (terminal), md, csv and json (latex: otgan_lab.table.latex), from the display
records of otgan_lab.table.display; and the pairwise comparison matrix (--pairs) in each of them.
`labels` are the metrics' headers (display name and direction arrow), in the records' metric order."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

from otgan_lab.table.display import diff_text, fmt

Records = list[dict[str, Any]]


def metric_keys(records: Records) -> list[str]:
    return next((list(r["metrics"]) for r in records if r.get("metrics")), [])


def _labels(records: Records, labels: str | Sequence[str]) -> list[str]:
    given = [labels] if isinstance(labels, str) else list(labels)
    keys = metric_keys(records)
    return given + keys[len(given):]


def shown_fields(records: Records, show: Sequence[str] = ()) -> list[str]:
    """The identity columns: method, sampler, the model and dataset when they vary (or `show` names them),
    the variant."""
    def varies(key: str) -> bool:
        return key in show or len({r[key] for r in records if r.get(key, "") not in ("", "?")
                                   and r["status"] not in ("unreadable", "not run")}) > 1

    return ["method", "sampler", *(["model"] if varies("model") else []), "variant",
            *(["dataset"] if varies("dataset") else [])]


def _columns(records: Records, labels: str | Sequence[str], show: Sequence[str]) -> list[tuple[Any, str]]:
    """(getter, header) pairs: a getter is a record key or a function of the record."""
    names = _labels(records, labels)
    keys = metric_keys(records)
    several = len(keys) > 1
    cols: list[tuple[Any, str]] = []
    if records and "published_text" in records[0]:
        cols += [("report_row", "report row"), ("published_text", f"published {names[0] if names else ''}")]
    cols += [(f, f) for f in shown_fields(records, show)]
    cols += [("status", "status"),
             (lambda r: f"{r['n']}/{r['n_runs']}" if r["n_runs"] != r["n"] else str(r["n"]), "n")]
    for key, name in zip(keys, names):
        pre = f"{name} " if several else ""

        def cell(part: str, key: str = key) -> Any:
            return lambda r: r.get("metrics", {}).get(key, {}).get(part, "—")

        cols += [(cell("value_text"), f"{name} mean ± std"), (cell("ci_text"), f"{pre}95% CI"),
                 (cell("best_text"), f"{pre}best")]
    if any("diff_texts" in r for r in records):
        for key, name in zip(keys, names):
            header = f"{name} Δ vs baseline" if several else "Δ vs baseline [95% CI]"
            cols.append((lambda r, key=key: r.get("diff_texts", {}).get(key, "—"), header))
    if any("rank_text" in r for r in records):
        cols.append((lambda r: r.get("rank_text", ""), "rank (kept; per seed)"))
    cols += [(lambda r: fmt(r["wall_time"], 3), "wall s"), (lambda r: fmt(r["steps_per_sec"], 3), "steps/s"),
             ("protocol", "protocol"), ("notes", "notes")]
    return cols


def text_table(records: Records, labels: str | Sequence[str], show: Sequence[str] = ()
               ) -> tuple[list[str], list[list[str]]]:
    cols = _columns(records, labels, show)
    body = [[str(get(r) if callable(get) else r.get(get, "")) for get, _ in cols] for r in records]
    return [h for _, h in cols], body


def _markdown(headers: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(headers), line(["---"] * len(headers)), *(line(b) for b in body)]


def render_markdown(records: Records, notes: Sequence[str], metric: str | Sequence[str], title: str = "",
                    show: Sequence[str] = ()) -> str:
    out = [f"### {title}", ""] if title else []
    out += _markdown(*text_table(records, metric, show))
    if notes:
        out += ["", *(f"- {n}" for n in notes)]
    return "\n".join(out) + "\n"


_CSV_IDENT = ["report_row", "published", "method", "sampler", "variant", "dataset", "model", "status", "n",
              "n_runs", "seeds"]
_STATS = ["mean", "std", "ci_low", "ci_high", "best"]
_DIFF = ["diff", "diff_low", "diff_high", "diff_excludes_zero", "diff_verdict"]


def flat_record(r: dict[str, Any], metric: str | None = None) -> dict[str, Any]:
    """One csv / W&B line: the first metric's numbers unprefixed (metric, mean, std...), the others' as
    '<metric>:mean'..., the baseline differences as diff... ('<metric>:diff'...), the rank as rank..."""
    keys = metric_keys([r]) or ([metric] if metric else [])
    out = {**r, "metric": keys[0] if keys else metric}
    for i, key in enumerate(keys):
        pre = "" if i == 0 else f"{key}:"
        cell = r.get("metrics", {}).get(key, {})
        out.update({pre + s: cell.get(s) for s in _STATS})
        d = (r.get("vs_baseline") or {}).get(key)
        if isinstance(d, dict):
            parts = (d["diff"], d["ci_low"], d["ci_high"], d["excludes_zero"], d["verdict"])
            out.update({pre + k: v for k, v in zip(_DIFF, parts)})
        elif d == "baseline":
            out[pre + "diff_verdict"] = "baseline"
    rank = r.get("rank") or {}
    out.update(rank=rank.get("rank"), rank_kept=rank.get("kept"),
               seed_ranks=" ".join(map(str, rank.get("per_seed", []))))
    return out


def csv_fields(records: Records) -> list[str]:
    keys = metric_keys(records)
    fields = [f for f in _CSV_IDENT if f not in ("report_row", "published") or (records and f in records[0])]
    fields += ["metric", *_STATS]
    baseline = any("vs_baseline" in r for r in records)
    fields += _DIFF if baseline else []
    for key in keys[1:]:
        fields += [f"{key}:{s}" for s in _STATS + (_DIFF if baseline else [])]
    fields += ["rank", "rank_kept", "seed_ranks"] if any("rank" in r for r in records) else []
    return fields + ["wall_time", "steps_per_sec", "protocol", "notes"]


def _csv(fields: Sequence[str], lines: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for line in lines:
        writer.writerow({k: ("" if v is None else v) for k, v in line.items()})
    return buf.getvalue()


def render_csv(records: Records, metric: str | None = None) -> str:
    return _csv(csv_fields(records), [flat_record(r, metric) for r in records])


def json_value(x: Any) -> Any:
    """Numbers as numbers; inf / nan as the strings 'inf', '-inf', 'nan' (as result.json stores them)."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: json_value(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_value(v) for v in x]
    return x


_JSON_KEYS = ["label", "report_row", "published", "method", "sampler", "model", "dataset", "variant",
              "status", "n", "n_runs", "seeds", "protocol", "metrics", "vs_baseline", "rank", "pairs",
              "wall_time",
              "steps_per_sec", "notes"]


def json_rows(records: Records) -> list[dict[str, Any]]:
    """The records as plain row objects: every number, no display text."""
    out = []
    for r in records:
        obj = {k: r[k] for k in _JSON_KEYS if k in r and k != "seeds"}
        obj["seeds"] = r.get("seed_list", [])
        obj["metrics"] = {m: {k: v for k, v in c.items() if not k.endswith("_text")}
                          for m, c in r.get("metrics", {}).items()}
        obj["notes"] = [n for n in (r.get("notes") or "").split("; ") if n]
        out.append(obj)
    return json_value(out)


def render_json(records: Records) -> str:
    return json.dumps(json_rows(records), indent=2, default=str, ensure_ascii=False) + "\n"


def render_rich(records: Records, notes: Sequence[str], metric: str | Sequence[str], title: str = "",
                width: int | None = None, show: Sequence[str] = ()) -> str:
    headers, body = text_table(records, metric, show)
    styles = [None if r["status"] == "completed" else ("dim" if r["status"] == "not run" else "red")
              for r in records]
    return rich_text(headers, body, notes, title, width, styles)


def rich_text(headers: Sequence[str], body: Sequence[Sequence[str]], notes: Sequence[str] = (),
              title: str = "", width: int | None = None, styles: Sequence[str | None] = ()) -> str:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # every text is literal: '[w2]' or a note quoting "metrics['x']" is not rich markup
    table = Table(title=escape(title) if title else None, show_lines=False)
    for h in headers:
        table.add_column(escape(h), overflow="fold")
    for i, cells in enumerate(body):
        table.add_row(*(escape(c) for c in cells), style=styles[i] if i < len(styles) else None)
    # not a terminal (a pipe, a file): as wide as the table needs, so that no cell is folded mid-word
    console = Console(record=True, width=width or 1000, file=io.StringIO())
    console.print(table)
    for n in notes:
        console.print(f"• {escape(n)}", highlight=False)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


# ----------------------------------------------------------------------------------------------------------
# The pairwise matrix (--pairs)


def pair_matrix(records: Records, metric: str) -> tuple[list[str], list[list[str]]]:
    """Rows and columns: the ranked rows in leaderboard order; cell (i, j): row i − row j with its
    interval."""
    ranked = [r for r in records if any(p["metric"] == metric for p in r.get("pairs", []))]
    names = [r["label"] for r in ranked]
    headers = ["row", *(f"vs {i + 1}" for i in range(len(ranked)))]
    body = []
    for i, r in enumerate(ranked):
        cells = {p["vs"]: p for p in r["pairs"] if p["metric"] == metric}
        row = [f"{i + 1}. {names[i]}"]
        for j, other in enumerate(names):
            p = cells.get(other)
            row.append("—" if i == j or p is None else diff_text(p) if p["comparable"] else "n/c")
        body.append(row)
    return headers, body


def render_pairs(records: Records, labels: str | Sequence[str], fmt_name: str,
                 width: int | None = None) -> str:
    """The pairwise matrices, one per metric, in `fmt_name` (json and csv: one line per ordered pair)."""
    keys, names = metric_keys(records), _labels(records, labels)
    if fmt_name in ("csv", "json"):
        lines = [{"row": r["label"], **p} for r in records for p in r.get("pairs", [])]
        if fmt_name == "json":
            return json.dumps(json_value(lines), indent=2, ensure_ascii=False) + "\n"
        return _csv(["row", "vs", "metric", "comparable", "diff", "ci_low", "ci_high", "excludes_zero",
                     "verdict", "method", "level", "reason"], lines)
    out = []
    for key, name in zip(keys, names):
        headers, body = pair_matrix(records, key)
        title = f"pairs: {name}, row − column"
        if fmt_name == "md":
            out.append("\n".join([f"### {title}", "", *_markdown(headers, body)]) + "\n")
        else:
            out.append(rich_text(headers, body, title=title, width=width))
    return "\n".join(out)
