"""`--samples PNG`: a contact sheet of the rows' generated samples, one panel per completed row in leaderboard
order, each the last sample picture its first seed's run saved (samples/step_<N>.png, or
samples/<sampler>_step_<N>.png for a row that evaluated a run with another sampler), titled with the row's
label, the seed and the metric. The way to read a report that printed pictures rather than numbers (R2)."""

from __future__ import annotations

import math
import re
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path

from otgan_lab.table.grouping import Row, sort_rows
from otgan_lab.table.labels import row_labels
from otgan_lab.table.measurements import Measurement, as_float
from otgan_lab.viz import pyplot, save_figure


def latest_picture(m: Measurement) -> tuple[Path, int] | None:
    """(path, step) of the last picture of m's sampler in m's run dir, or None when it saved none."""
    tag = "" if m.run_sampler in (None, m.sampler) else f"{m.sampler}_"
    name = re.compile(re.escape(tag) + r"step_(\d+)\.png")  # whole name: not another sampler's tagged picture
    found = [(int(match.group(1)), p) for p in (m.run_dir / "samples").glob("*.png")
             if (match := name.fullmatch(p.name))]
    if not found:
        return None
    step, path = max(found)
    return path, step


def _first_seed(row: Row) -> Measurement | None:
    done = [m for m in row.measurements if m.status == "completed"]
    return min(done, key=lambda m: (0, m.seed) if isinstance(m.seed, int) else (1, str(m.seed)), default=None)


def sample_sheet(rows: Sequence[Row], metric: str, path: str | Path, display: str | None = None,
                 columns: int = 3) -> Path | None:
    """Write the sheet to `path` (PNG); None, with a warning, when no completed row has a sample picture.
    Rows whose run saved no picture are named in a warning and left out."""
    from PIL import Image

    plt = pyplot()

    ordered = sort_rows(rows)
    labels = dict(zip(map(id, ordered), row_labels(ordered)))
    panels, missing = [], []
    for row in ordered:
        m = _first_seed(row) if row.status == "completed" else None
        picture = latest_picture(m) if m is not None else None
        if picture is None:
            if row.status == "completed":
                missing.append(labels[id(row)])
            continue
        value = as_float(m.metrics.get(metric))
        shown = f"{display or metric} {value:.4g}" if value is not None and math.isfinite(value) else ""
        caption = (textwrap.fill(labels[id(row)], 60) + f"\nseed {m.seed}, step {picture[1]}"
                   + (f", {shown}" if shown else ""))
        panels.append((caption, picture[0]))
    if missing:
        warnings.warn("no sample picture (samples/*step_*.png) in the first seed's run of: "
                      + ", ".join(missing), stacklevel=2)
    if not panels:
        warnings.warn("no completed row has a sample picture; no sample sheet", stacklevel=2)
        return None
    cols = min(columns, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 4.6 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (caption, picture) in zip(axes.flat, panels):
        with Image.open(picture) as image:
            ax.imshow(image.convert("RGB"), interpolation="nearest")
        ax.set_title(caption, fontsize=8)
    return save_figure(fig, path)
