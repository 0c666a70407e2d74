"""Row labels: what tells a row apart from the others. `variant` names the config keys that differ between
rows of one method, dataset and model (those have columns of their own); row_labels gives every row a distinct
short name (plots, comparisons) from whatever varies among the rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from otgan_lab.table.measurements import field_value
from otgan_lab.table.protocols import json_key

if TYPE_CHECKING:
    from otgan_lab.table.grouping import Row

# record fields that have a column of their own (never repeated in a row's variant label)
SHOWN_FIELDS = ("method", "sampler", "dataset", "model")


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def label_rows(rows: list[Row], by: Sequence[str] | None) -> None:
    """A short 'variant' for each row: the config keys that tell its group apart from others of the same
    method, dataset and model (those have columns of their own). An unreadable record's row names its run dir
    instead (what to go and fix), and takes no part in the others' labels (it has no config to compare)."""
    for row in rows:
        if row.status == "unreadable":
            dirs = list(dict.fromkeys(str(m.run_dir) for m in row.measurements))
            row.variant = dirs[0] + (f" (+{len(dirs) - 1} more)" if len(dirs) > 1 else "")
    if by:
        for row in rows:
            m = row.measurements[0]
            if row.status != "unreadable":
                row.variant = ", ".join(f"{'.'.join(k.split('.')[-2:])}={_short(field_value(m, k))}"
                                        for k in by if k not in SHOWN_FIELDS)
        return
    families: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for row in rows:
        if row.status != "unreadable":
            families.setdefault((row.method, row.dataset, row.model), {})[row.key] = row.config
    for row in rows:
        if row.status == "unreadable":
            continue
        if "report_row" in row.config:  # the report presets tag every run with its row
            row.variant = str(row.config["report_row"])
            continue
        configs = families[(row.method, row.dataset, row.model)]
        if len(configs) < 2:
            continue
        keys = sorted({k for c in configs.values() for k in c})
        # a key one config lacks and another sets (even to null) tells them apart too
        differing = [k for k in keys
                     if len({json_key(c[k]) if k in c else "<absent>" for c in configs.values()}) > 1]
        shown = [f"{'.'.join(k.split('.')[-2:])}={_short(row.config[k]) if k in row.config else '<absent>'}"
                 for k in differing[:4]]
        row.variant = ", ".join(shown) + (f", +{len(differing) - 4} more" if len(differing) > 4 else "")


def varying_fields(rows: Sequence[Row], show: Iterable[str] = ()) -> list[str]:
    """The record fields among sampler, model and dataset that take more than one value over the rows, or
    that `show` names (--by model asks for a model column even when one model was run)."""
    wanted = set(show)
    known = [r for r in rows if r.status != "unreadable"]
    return [f for f in SHOWN_FIELDS[1:] if f in wanted or len({getattr(r, f) for r in known}) > 1]


def row_labels(rows: Sequence[Row], show: Iterable[str] = ()) -> list[str]:
    """A distinct short name per row (plots, comparisons): method, then whatever varies among the rows
    (sampler, model, dataset, the variant's config keys, status, protocol); '#k' breaks any remaining tie."""
    vary = varying_fields(rows, show)
    several_protocols = len({r.protocol_id for r in rows if r.protocol_id}) > 1
    labels = []
    for r in rows:
        parts = [r.method] + [getattr(r, f) for f in vary if f != "sampler"]
        if "sampler" in vary or r.sampler != "standard":
            parts.insert(1, r.sampler)
        parts += [p for p in (r.variant, "" if r.status == "completed" else r.status,
                              r.protocol_id if several_protocols else "") if p]
        labels.append(" · ".join(parts))
    counts: dict[str, int] = {}
    for i, label in enumerate(labels):
        if labels.count(label) > 1:
            counts[label] = counts.get(label, 0) + 1
            labels[i] = f"{label} #{counts[label]}"
    return labels
