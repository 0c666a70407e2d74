"""Evaluation protocols: what makes two numbers comparable. Numbers measured under different protocols
(backbone, sample count, split... as recorded in result["protocol"] and the per-sampler protocol) are never
averaged together, and rows are numbered P1, P2... by the protocol they were measured under."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from otgan_lab.records import flatten

if TYPE_CHECKING:
    from otgan_lab.table.grouping import Row

# Protocol entries that do not change a number: how features are batched, where statistics are cached.
_PROTOCOL_NEUTRAL = ("batch_size", "cache_dir")


def json_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _drop_neutral(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _drop_neutral(v) for k, v in node.items() if k not in _PROTOCOL_NEUTRAL}
    return node


def measured_protocol(protocol: dict[str, Any] | None) -> dict[str, Any] | None:
    """What makes two numbers comparable: the recorded protocol without its neutral entries."""
    return None if protocol is None else _drop_neutral(protocol)


def comparable_protocol(protocol: dict[str, Any] | None) -> dict[str, Any] | None:
    """The measured protocol minus the sampler: rows of different samplers are meant to be compared."""
    if protocol is None:
        return None
    return {k: v for k, v in measured_protocol(protocol).items() if k != "sampler"}


def protocol_differences(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    """'key: x vs y' for every flattened protocol key whose values differ."""
    fa, fb = flatten(a or {}), flatten(b or {})
    return [f"{k}: {fa.get(k, '-')} vs {fb.get(k, '-')}" for k in sorted(set(fa) | set(fb))
            if fa.get(k) != fb.get(k)]


def describe_protocol(protocol: dict[str, Any] | None) -> str:
    if not protocol:
        return "not recorded"
    p = dict(protocol)
    suites = p.pop("suites", {}) or {}
    parts = [f"{k}={v}" for k, v in p.items()]
    for name, params in suites.items():
        inner = (", ".join(f"{k}={v}" for k, v in flatten(params).items()) if isinstance(params, dict)
                 else params)
        parts.append(f"{name}({inner})" if inner else name)
    return "; ".join(parts)


def number_protocols(rows: Sequence[Row]) -> None:
    """Give each completed row the id (P1, P2...) of its comparable protocol, in order of appearance."""
    ids: dict[str, str] = {}
    for row in rows:
        if row.status == "completed":
            pkey = json_key(comparable_protocol(row.protocol))
            row.protocol_id = ids.setdefault(pkey, f"P{len(ids) + 1}")


def protocol_legend(rows: Sequence[Row]) -> dict[str, dict[str, Any] | None]:
    legend: dict[str, dict[str, Any] | None] = {}
    for row in rows:
        if row.protocol_id and row.protocol_id not in legend:
            legend[row.protocol_id] = comparable_protocol(row.protocol)
    return legend


def protocol_notes(rows: Sequence[Row]) -> list[str]:
    """The legend of protocol ids, and a warning per dataset whose rows were measured under several."""
    legend = protocol_legend(rows)
    notes = [f"{pid}: {describe_protocol(protocol)}" for pid, protocol in legend.items()]
    by_dataset: dict[str, set[str]] = {}
    for r in rows:
        if r.protocol_id:
            by_dataset.setdefault(r.dataset, set()).add(r.protocol_id)
    for dataset, ids in by_dataset.items():
        if len(ids) > 1:
            ps = sorted(ids)
            diffs = protocol_differences(legend[ps[0]], legend[ps[1]])
            notes.append(f"{dataset}: rows use {len(ids)} evaluation protocols ({', '.join(ps)}); compare "
                         f"rows only within one protocol (e.g. {ps[0]} vs {ps[1]}: {'; '.join(diffs[:3])}).")
    return notes
