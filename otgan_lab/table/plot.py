"""`--plot PNG`: the metric against the generator step, one line per row (the mean over seeds, with markers;
thin lines are the seeds), titled with the metric and the sweep, each legend entry the row's distinct label.
When no run has more than one evaluation point (eval.every=0 evaluates once, at the end), a warning says so
and the plot shows each row's final values instead (one dot per seed, the mean ± std beside them)."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from otgan_lab.table.grouping import Row, sort_rows
from otgan_lab.table.labels import row_labels
from otgan_lab.table.measurements import as_float
from otgan_lab.viz import pyplot, save_figure

_HOW = {"min": " (lower is better)", "max": " (higher is better)"}


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
            v = as_float(entry.get(key))
            if v is not None and math.isfinite(v) and "step" in entry:
                steps.append(int(entry["step"]))
                values.append(v)
    return np.asarray(steps), np.asarray(values, dtype=float)


def _curves(row: Row, metric: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The row's curves: eval/<metric> (or a training scalar of that name) for the sampler a run trained
    with, eval/<sampler>/<metric> for a sampler it was also evaluated with (eval.samplers)."""
    curves = []
    for m in row.measurements:
        own = m.run_sampler in (None, m.sampler)
        for key in ([f"eval/{metric}", metric] if own else [f"eval/{m.sampler}/{metric}"]):
            s, v = read_curve(m.run_dir, key)
            if len(s):
                curves.append((s, v))
                break
    return curves


def _draw_curves(ax, drawn: Sequence[tuple[str, list[tuple[np.ndarray, np.ndarray]]]]) -> None:
    for label, curves in drawn:
        line = None
        for s, v in curves:
            (line,) = ax.plot(s, v, lw=0.7, alpha=0.35, marker=".", ms=3,
                              color=line.get_color() if line else None)
        common = sorted(set.intersection(*(set(s.tolist()) for s, _ in curves)))
        mean = [np.mean([v[list(s).index(t)] for s, v in curves]) for t in common]
        ax.plot(common, mean, lw=2, marker="o", ms=4, color=line.get_color(),
                label=f"{label} (n={len(curves)})")
    ax.set_xlabel("generator step")


def _draw_finals(ax, finals: Sequence[tuple[str, list[float]]]) -> None:
    """One column per row: a dot per seed, the mean ± std (sample) as a diamond with an error bar."""
    rng = np.random.default_rng(0)  # a fixed jitter, so that equal values stay visible
    for i, (label, values) in enumerate(finals):
        x = i + rng.uniform(-0.08, 0.08, size=len(values))
        (dots,) = ax.plot(x, values, "o", alpha=0.6, label=f"{label} (n={len(values)})")
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        ax.errorbar([i + 0.25], [np.mean(values)], yerr=[std], fmt="D", color=dots.get_color(), capsize=4)
    ax.set_xticks(range(len(finals)), [label for label, _ in finals], rotation=20, ha="right", fontsize=7)
    ax.set_xlim(-0.6, len(finals) - 0.4)
    ax.set_xlabel("row (final values: one dot per seed, ◆ mean ± std)")


def plot_curves(rows: Sequence[Row], metric: str, path: str | Path, display: str | None = None,
                sweep: str | None = None) -> Path | None:
    """Draw `metric` per row into `path` (PNG); None (with a warning) if no completed run has a value of it.
    Warns, and draws the final values instead of curves, when no run has two evaluation points."""
    plt = pyplot()

    ordered = sort_rows(rows)
    labels = dict(zip(map(id, ordered), row_labels(ordered)))
    done = [r for r in ordered if r.status == "completed"]
    drawn = [(labels[id(r)], c) for r in done if (c := _curves(r, metric))]
    finals = [(labels[id(r)], [v for _, v in r.values(metric) if math.isfinite(v)]) for r in done]
    finals = [(label, values) for label, values in finals if values]
    single = not any(len(s) > 1 for _, curves in drawn for s, _ in curves)
    if not drawn and not finals:
        warnings.warn(f"no eval/{metric} (or {metric}) in any completed run's metrics.jsonl, and no final "
                      f"{metric} in their result.json; no plot", stacklevel=2)
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if single and finals:
        points = "a single evaluation point" if drawn else "no evaluation curve"
        warnings.warn(f"every run has {points} of eval/{metric} in metrics.jsonl (eval.every=0 evaluates "
                      f"only at the end; set eval.every=N for curves): {path} shows each row's final "
                      f"{metric} instead of curves", stacklevel=2)
        _draw_finals(ax, finals)
    else:
        _draw_curves(ax, drawn)
    goal = rows[0].goal if rows else None
    name = display or metric
    ax.set_ylabel(f"{name}{_HOW.get(goal or '', '')}")
    ax.set_title(f"{name}{f' [{metric}]' if name != metric else ''}" + (f" — {sweep}" if sweep else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
