"""`otlab table`: turn a sweep (or any run dirs) into a leaderboard.

    otlab table <sweep dir or run dirs...> [--by method,model] [--metric fid,kid] [--goal min,max]
                [--format rich|md|csv|json|latex] [--out FILE] [--baseline method=gan] [--pairs]
                [--ci welch|bootstrap] [--plot PNG] [--samples PNG] [--wandb] [--report r1..r5]

Every `**/result.json` under the given paths is read (never Hydra callbacks: a job that crashed, was killed
or ran through another launcher still counts when its record is on disk). Runs that differ only by seed form
a row: per metric, mean ± std over seeds, a 95 % t-interval and the best seed; seed count, wall time, steps/s.
Failed / diverged / unreadable runs are rows of their own; numbers of different evaluation protocols are never
averaged together; rows name whatever varies (sampler, model, dataset, config keys). Beside the leaderboard:
each row's rank and how often resampling the seeds keeps it, differences against a baseline row or between
all pairs with a confidence interval over seeds, and with --report the published column and an ordering check.

One job per module (pure functions; only cli.main reads argv and writes files):
    measurements   finding and reading result.json files (Measurement, load_measurements)
    metric_choice  which metrics, and which direction of each is better (describe_metric, choose_metrics)
    stats          seed statistics, differences with intervals, rank stability (seed_stats, difference)
    protocols      what makes two numbers comparable (measured_protocol, protocol_notes)
    grouping       measurements -> rows, row labels, leaderboard order (Row, build_rows, sort_rows)
    compare        baseline / pairwise differences and ranks over rows (compare_rows)
    reports        published values and the ordering check (compare_with_report)
    display        display records and notes (records_for_display, table_notes)
    render, latex  rich / md / csv / json / latex, and the pairwise matrix
    plot           --plot (plot_curves); samples: --samples (sample_sheet); wandb_table: --wandb
    cli            argv (main)
"""

from otgan_lab.table.cli import main, parse_args
from otgan_lab.table.compare import Comparisons, RankInfo, compare_rows, parse_selector
from otgan_lab.table.display import diff_text, records_for_display, table_notes
from otgan_lab.table.grouping import Cell, Row, build_rows, group_key, sort_rows
from otgan_lab.table.labels import row_labels
from otgan_lab.table.latex import render_latex
from otgan_lab.table.measurements import (
    BOOKKEEPING_KEYS,
    EVAL_FAILED,
    NOT_COMPLETED,
    RECORD_FIELDS,
    Measurement,
    field_value,
    find_results,
    load_measurements,
    measurements_from_record,
    sampler_name,
    unreadable_measurement,
)
from otgan_lab.table.metric_choice import (
    NO_METRIC,
    MetricChoice,
    _subclasses,
    choose_metric,
    choose_metrics,
    code_declarations,
    code_spec,
    declared_goal,
    describe_metric,
)
from otgan_lab.table.plot import plot_curves, read_curve
from otgan_lab.table.protocols import comparable_protocol, describe_protocol, measured_protocol
from otgan_lab.table.render import render_csv, render_json, render_markdown, render_pairs, render_rich
from otgan_lab.table.reports import (
    ReportComparison,
    compare_with_report,
    ordering_agreement,
    selector_matches,
)
from otgan_lab.table.stats import (
    Difference,
    SeedStats,
    bootstrap_interval,
    difference,
    per_seed_ranks,
    rank_stability,
    seed_stats,
    welch_interval,
)
from otgan_lab.table.wandb_table import log_to_wandb

__all__ = [
    "BOOKKEEPING_KEYS", "EVAL_FAILED", "NOT_COMPLETED", "NO_METRIC", "RECORD_FIELDS", "Cell", "Comparisons",
    "Difference", "Measurement", "MetricChoice", "RankInfo", "ReportComparison", "Row", "SeedStats",
    "_subclasses", "bootstrap_interval", "build_rows", "choose_metric", "choose_metrics", "code_declarations",
    "code_spec", "comparable_protocol", "compare_rows", "compare_with_report", "declared_goal",
    "describe_metric",
    "describe_protocol", "diff_text", "difference", "field_value", "find_results", "group_key",
    "load_measurements", "log_to_wandb", "main", "measured_protocol", "measurements_from_record",
    "ordering_agreement", "parse_args", "parse_selector", "per_seed_ranks", "plot_curves", "rank_stability",
    "read_curve", "records_for_display", "render_csv", "render_json", "render_latex", "render_markdown",
    "render_pairs", "render_rich", "row_labels", "sampler_name", "seed_stats", "selector_matches",
    "sort_rows", "table_notes", "unreadable_measurement", "welch_interval",
]
