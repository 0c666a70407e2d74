"""The command line of `otlab table`: parse argv, run the pure steps (load, group, compare, display), print
the chosen format and write the side outputs (--out, --plot, --samples, --wandb)."""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from otgan_lab.records import RESULT_FILE
from otgan_lab.reports import REPORTS
from otgan_lab.table.compare import compare_rows
from otgan_lab.table.display import records_for_display, table_notes
from otgan_lab.table.grouping import build_rows
from otgan_lab.table.latex import render_latex, render_latex_pairs
from otgan_lab.table.measurements import Measurement, find_results, load_measurements
from otgan_lab.table.metric_choice import choose_metrics, split_list
from otgan_lab.table.plot import plot_curves
from otgan_lab.table.render import render_csv, render_json, render_markdown, render_pairs, render_rich
from otgan_lab.table.reports import compare_with_report
from otgan_lab.table.samples import sample_sheet
from otgan_lab.table.stats import CI_METHODS
from otgan_lab.table.wandb_table import log_to_wandb

FORMATS = ("rich", "md", "csv", "json", "latex")
SUFFIXES = {".csv": "csv", ".md": "md", ".json": "json", ".tex": "latex"}


def _sweep_group(paths: Sequence[str], measurements: Sequence[Measurement]) -> str | None:
    """The W&B group of the runs: the sweep dir's name, as train.py uses for multirun jobs."""
    if len(paths) == 1 and Path(paths[0]).is_dir():
        return Path(paths[0]).resolve().name
    parents = {m.run_dir.parent for m in measurements}
    return parents.pop().name if len(parents) == 1 else None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="otlab table", description="Turn a sweep (or run dirs) into a leaderboard: mean ± std over "
        "seeds, differences with confidence intervals, rank stability.")
    add = parser.add_argument
    add("paths", nargs="+", help="sweep dirs, run dirs or result.json files (searched recursively)")
    add("--by", help="comma-separated fields to group by (method, sampler, dataset, model, precision or "
        "dotted config keys); default: the whole config minus the seed")
    add("--metric", help="metric(s) to tabulate, comma-separated (fid,kid); the first orders the table "
        "(default: the report's, else the runs' primary metric, else a declared metric)")
    add("--goal", help="min or max (or auto) per metric, comma-separated: whether lower or higher is better "
        "(default: as the records' metric_specs or the code's declaration say)")
    add("--format", choices=FORMATS, default=None, help="printed format (default rich)")
    add("--out", help="also write the table to this file (.csv / .md / .json / .tex: that format)")
    add("--wandb", action="store_true", help="log the table as a W&B Table (offline by default)")
    add("--plot", help="write a PNG of the metric against step per row (one more PNG, <name>_<metric>.png, "
        "per further metric)")
    add("--samples", help="write a PNG sheet of each row's last sample picture (its first seed's run), in "
        "leaderboard order")
    add("--report", choices=sorted(REPORTS), help="add a report's published column and check our ordering "
        "against it")
    add("--baseline", help="key=value[,key=value] selecting one row per dataset (e.g. method=gan): adds each "
        "row's difference from it with a confidence interval over seeds")
    add("--pairs", action="store_true", help="also print every pair of rows' difference with its confidence "
        "interval (a matrix per metric)")
    add("--ci", choices=CI_METHODS, default="welch", help="interval of a difference: Welch's t (default) or "
        "a seeded bootstrap of the seeds")
    return parser.parse_args(argv)


def _fail(message: str, code: int = 2) -> None:
    print(f"otlab table: {message}", file=sys.stderr)
    sys.exit(code)


def _with_plain_warnings(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run fn, printing its warnings as one 'otlab table: ...' line each on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    for w in caught:
        print(f"otlab table: warning: {w.message}", file=sys.stderr)
    return result


def _plot_path(path: str, index: int, metric: str) -> Path:
    p = Path(path)
    return p if index == 0 else p.with_name(f"{p.stem}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', metric)}{p.suffix}")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `otlab table` (argv defaults to sys.argv[1:]); exits 1 when no record is found, 2 on a
    bad --metric/--goal/--baseline."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    measurements = load_measurements(args.paths)
    if not measurements:
        _fail(f"no {RESULT_FILE} under {', '.join(args.paths)}", 1)
    report = REPORTS[args.report] if args.report else None
    by = split_list(args.by) or None
    try:
        choices = choose_metrics(measurements, args.metric, report, args.goal)
        metrics = [c.key for c in choices]
        rows = build_rows(measurements, metrics, by, [c.goal for c in choices])
        compared = compare_rows(rows, args.baseline, args.pairs, args.ci, show=by or ())
    except ValueError as exc:
        _fail(str(exc))
    comparison = compare_with_report(rows, report) if report else None
    records = records_for_display(rows, comparison, compared, show=by or ())
    notes = table_notes(rows, comparison, compared)
    labels = [c.label for c in choices]
    title = (f"{'; '.join(c.title for c in choices)}: mean over seeds ({len(measurements)} measurements in "
             f"{len(find_results(args.paths))} runs)")

    def render(fmt: str, width: int | None = None) -> str:
        if fmt == "csv":
            text = render_csv(records, metrics[0])
        elif fmt == "json":  # the pairs are in each row object
            return render_json(records)
        elif fmt == "latex":
            text = render_latex(records, notes, labels, title, show=by or ())
        elif fmt == "md":  # headers name the metric by its display name, with ↓ / ↑ for its direction
            text = render_markdown(records, notes, labels, title, show=by or ())
        else:
            text = render_rich(records, notes, labels, title, width=width, show=by or ())
        if args.pairs:
            if fmt == "latex":
                text += "\n" + render_latex_pairs(records, labels)
            else:
                text += "\n" + render_pairs(records, labels, fmt, width)
        return text

    shown = args.format or "rich"
    sys.stdout.write(render(shown, shutil.get_terminal_size().columns if sys.stdout.isatty() else None))
    if args.out:  # the file's format follows its suffix (.csv, .md, .json, .tex), else the printed one
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render(SUFFIXES.get(out.suffix.lower(), shown)))
    if args.plot:
        sweep = _sweep_group(args.paths, measurements)
        for i, choice in enumerate(choices):
            metric_rows = rows if i == 0 else build_rows(measurements, metrics[i:i + 1], by, [choice.goal])
            _with_plain_warnings(plot_curves, metric_rows, choice.key, _plot_path(args.plot, i, choice.key),
                                 choice.display, sweep)
    if args.samples:
        _with_plain_warnings(sample_sheet, rows, choices[0].key, args.samples, choices[0].display)
    if args.wandb:
        first = Path(args.paths[0])
        _with_plain_warnings(log_to_wandb, records, metrics[0], _sweep_group(args.paths, measurements),
                             first if first.is_dir() else first.parent)
