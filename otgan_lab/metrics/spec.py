"""What a logged number means: its display name and which direction is better.

Every function that returns metrics declares the keys it returns next to it (a `MetricSpec` per key); samplers
declare their `stats` on the class (`stat_specs`), methods their `fit_end` results (`fit_end_specs`). Records
store the declarations of their run (`record["metric_specs"]`), so `otlab table` reads a metric's direction
from the record or the code, never from its name. `goal` is None for informational values (sample counts,
histograms, standard deviations of an estimate...), which have no best.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

GOALS = ("min", "max", None)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class MetricSpec:
    display: str  # a short human name for headers and plots ("FID", "modes covered")
    goal: str | None  # "min": lower is better, "max": higher is better, None: informational

    def __post_init__(self) -> None:
        if self.goal not in GOALS:
            raise ValueError(f"MetricSpec goal must be 'min', 'max' or None, got {self.goal!r}")
        if not isinstance(self.display, str) or not self.display:
            raise ValueError(f"MetricSpec display must be a non-empty string, got {self.display!r}")

    def as_record(self) -> dict[str, str | None]:
        return {"display": self.display, "goal": self.goal}

    @classmethod
    def from_record(cls, entry: Mapping[str, Any], key: str = "") -> MetricSpec:
        """The inverse of as_record; a missing display falls back on the key."""
        return cls(str(entry.get("display") or key or "?"), entry.get("goal"))


Specs = Mapping[str, MetricSpec]


def frozen_specs(specs: Mapping[str, MetricSpec]) -> Specs:
    """A read-only copy (declarations are class attributes and module constants: nobody edits them)."""
    bad = [k for k, v in specs.items() if not isinstance(v, MetricSpec)]
    if bad:
        raise TypeError(f"metric declarations must be MetricSpec instances: {bad}")
    return MappingProxyType(dict(specs))


def declares(specs: Mapping[str, MetricSpec]) -> Callable[[F], F]:
    """Decorator: `fn.metric_specs` = the keys `fn` returns and what they mean."""
    frozen = frozen_specs(specs)

    def attach(fn: F) -> F:
        fn.metric_specs = frozen  # type: ignore[attr-defined]
        return fn

    return attach


def specs_of(fn: Any) -> Specs:
    """The declarations attached by `declares` ({} for a function that declares nothing)."""
    return getattr(fn, "metric_specs", MappingProxyType({}))


def prefixed(specs: Mapping[str, MetricSpec], prefix: str) -> dict[str, MetricSpec]:
    """{"acceptance_rate": s} -> {"sampler/acceptance_rate": s}: keys as they are logged."""
    return {f"{prefix}{k}": v for k, v in specs.items()}


def specs_record(specs: Mapping[str, MetricSpec]) -> dict[str, dict[str, str | None]]:
    """The JSON form stored in result.json: {key: {"display": ..., "goal": ...}}."""
    return {k: v.as_record() for k, v in specs.items()}


def lookup_spec(key: str, declarations: Iterable[Mapping[str, MetricSpec]]) -> MetricSpec | None:
    """The spec of `key` in the first declaration map that has it; None when nothing declares it.

    `declarations` may be a lazy iterable (later maps are not built once a match is found)."""
    for specs in declarations:
        if key in specs:
            return specs[key]
    return None


def conflicting_specs(declarations: Iterable[Mapping[str, MetricSpec]]) -> dict[str, set[str | None]]:
    """Keys declared with different goals by different maps (a key must mean one thing everywhere)."""
    goals: dict[str, set[str | None]] = {}
    for specs in declarations:
        for key, spec in specs.items():
            goals.setdefault(key, set()).add(spec.goal)
    return {k: g for k, g in goals.items() if len(g) > 1}
