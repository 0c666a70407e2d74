"""The numbers behind a row and behind a comparison of rows, on plain arrays of per-seed values:
- seed_stats: mean, sample std, t-interval and best seed of one row;
- Difference (welch_interval / bootstrap_interval): the difference of two rows' means with a confidence
  interval over seeds, whether it excludes zero, and which row the metric's direction says is better;
- rank_stability / per_seed_ranks: how firmly the seeds support a leaderboard's order.
Resampling is seeded (RESAMPLES draws from numpy's default_rng(SEED)): a table prints the same numbers
every time."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

RESAMPLES = 2000
SEED = 0
CI_METHODS = ("welch", "bootstrap")


@dataclass(frozen=True)
class SeedStats:
    n: int
    mean: float | None
    std: float | None  # sample std (ddof = 1); None with one seed
    ci_low: float | None  # two-sided t-interval for the mean; None with one seed or non-finite values
    ci_high: float | None
    best: float | None


EMPTY = SeedStats(0, None, None, None, None, None)


def seed_stats(values: Sequence[float], goal: str | None = "min", level: float = 0.95) -> SeedStats:
    """Mean, sample std, t-interval (n - 1 degrees of freedom) and best value over seeds (None when the
    metric has no direction)."""
    x = np.asarray(list(values), dtype=float)
    n = len(x)
    if n == 0:
        return EMPTY
    with np.errstate(invalid="ignore"):
        mean = float(np.mean(x))
    best = None if goal is None else float(np.min(x) if goal == "min" else np.max(x))
    if n < 2:
        return SeedStats(1, mean, None, None, None, best)
    if not np.all(np.isfinite(x)):
        return SeedStats(n, mean, math.nan, None, None, best)
    std = float(np.std(x, ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))
    return SeedStats(n, mean, std, mean - half, mean + half, best)


# ----------------------------------------------------------------------------------------------------------
# Differences between two rows


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) over seeds with a confidence interval; `low`/`high` are None (with `reason`) when
    no interval can be given (fewer than two seeds on a side, non-finite values, no spread at all)."""

    estimate: float | None
    low: float | None
    high: float | None
    goal: str | None
    method: str
    level: float = 0.95
    reason: str = ""

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    @property
    def verdict(self) -> str:
        """'better' / 'worse' (a against b, in the metric's direction) when the interval excludes zero; ''
        when it does not or the metric has no direction."""
        if not self.excludes_zero or self.goal not in ("min", "max"):
            return ""
        a_lower = self.high is not None and self.high < 0
        return "better" if a_lower == (self.goal == "min") else "worse"

    @property
    def mark(self) -> str:
        return "*" if self.excludes_zero else ""

    def as_dict(self) -> dict[str, Any]:
        return {"diff": self.estimate, "ci_low": self.low, "ci_high": self.high,
                "excludes_zero": self.excludes_zero, "verdict": self.verdict or None, "method": self.method,
                "level": self.level, "reason": self.reason or None}


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """Welch's t-interval for mean(a) - mean(b): unequal variances, Welch-Satterthwaite degrees of freedom."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    va, vb = np.var(x, ddof=1) / len(x), np.var(y, ddof=1) / len(y)
    se2 = va + vb
    if se2 <= 0:
        return None
    df = se2 ** 2 / (va ** 2 / (len(x) - 1) + vb ** 2 / (len(y) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df) * math.sqrt(se2))
    diff = float(x.mean() - y.mean())
    return diff - half, diff + half


def bootstrap_means(values: Sequence[float], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `resamples` resamples (with replacement) of the values: one array of length `resamples`."""
    x = np.asarray(values, dtype=float)
    return x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)


def bootstrap_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95,
                       resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float] | None:
    """Percentile bootstrap interval for mean(a) - mean(b), resampling seeds within each row."""
    rng = np.random.default_rng(seed)
    diffs = bootstrap_means(a, resamples, rng) - bootstrap_means(b, resamples, rng)
    low, high = np.quantile(diffs, [0.5 - level / 2, 0.5 + level / 2])
    if low == high:
        return None
    return float(low), float(high)


def difference(a: Sequence[float], b: Sequence[float], goal: str | None, method: str = "welch",
               level: float = 0.95) -> Difference:
    """Difference of two rows' means over seeds, with a `method` interval (welch or bootstrap)."""
    if method not in CI_METHODS:
        raise ValueError(f"unknown interval method {method!r}; one of {', '.join(CI_METHODS)}")
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) == 0 or len(y) == 0:
        return Difference(None, None, None, goal, method, level, "no values")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return Difference(None, None, None, goal, method, level, "non-finite values")
    estimate = float(x.mean() - y.mean())
    if min(len(x), len(y)) < 2:
        return Difference(estimate, None, None, goal, method, level, "one seed on a side")
    ci = welch_interval(x, y, level) if method == "welch" else bootstrap_interval(x, y, level)
    if ci is None:
        return Difference(estimate, None, None, goal, method, level, "no spread over seeds")
    return Difference(estimate, ci[0], ci[1], goal, method, level)


# ----------------------------------------------------------------------------------------------------------
# Rank stability


def competition_ranks(scores: np.ndarray) -> np.ndarray:
    """1 + the number of strictly better entries along the last axis (lower score = better)."""
    return 1 + (scores[..., None, :] < scores[..., :, None]).sum(axis=-1)


def rank_stability(samples: Sequence[Sequence[float]], goal: str, resamples: int = RESAMPLES,
                   seed: int = SEED) -> tuple[list[int], list[float]]:
    """Each row's rank by its mean, and the fraction of seed resamples (with replacement, within each row)
    in which it keeps that rank. A row of one seed always draws the same mean."""
    sign = 1.0 if goal == "min" else -1.0
    means = np.array([np.mean(s) for s in samples]) * sign
    observed = competition_ranks(means)
    rng = np.random.default_rng(seed)
    drawn = np.stack([bootstrap_means(s, resamples, rng) for s in samples], axis=1) * sign
    kept = (competition_ranks(drawn) == observed).mean(axis=0)
    return [int(r) for r in observed], [float(k) for k in kept]


def per_seed_ranks(by_seed: Sequence[Mapping[Any, float]], goal: str) -> tuple[list[Any], list[list[int]]]:
    """The rows' ranks seed by seed, over the seeds every row has (sorted): (seeds, ranks per row)."""
    common = set.intersection(*(set(s) for s in by_seed)) if by_seed else set()
    seeds = sorted(common, key=lambda s: (str(type(s)), s))
    if not seeds:
        return [], [[] for _ in by_seed]
    sign = 1.0 if goal == "min" else -1.0
    scores = np.array([[row[s] for row in by_seed] for s in seeds]) * sign  # (seeds, rows)
    ranks = competition_ranks(scores)
    return seeds, [[int(r) for r in ranks[:, i]] for i in range(len(by_seed))]
