"""Which batch size is fastest, which cannot be told apart from it, which are within 5 %.

All three are judged on the points' standard errors for comparisons within a
series (``log_se_relative``, :mod:`batchscope.analyse.points`: a round's shared
drift cancels), on the log scale of the time per sample, where a ratio of
throughputs is a difference:

* **fastest** is the point with the highest throughput; **tied_with** are the points
  that cannot be told apart from it: a point is tied unless it is slower by more
  than ``c`` standard errors of the difference, with ``c`` Tukey's studentized-range
  quantile for all the points (divided by √2). The claims "slower beyond the noise"
  then hold simultaneously at 95 %: on a flat curve no size is called slower in
  more than 5 % of runs, and the set ``{fastest} ∪ tied_with`` holds the truly
  fastest size in at least 95 %;
* **within 5 %** of the fastest is *confirmed* when the lower end of the ratio's
  interval (same ``c``) reaches 0.95, *ruled out* when its upper end stays below,
  and otherwise *not determined*: the data cannot tell.

Points without a known spread take part in no verdict; they are listed apart.
The error rates are measured by simulation in ``tests/analyse/test_ranking_simulation.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from batchscope.analyse.points import Point

#: the family-wise error rate of the comparisons with the best
ALPHA = 0.05
#: "within 5 % of the fastest" means at least this fraction of its throughput
NEAR_BEST = 0.95


@lru_cache(maxsize=64)
def comparison_quantile(n_points: int, alpha: float = ALPHA) -> float:
    """Tukey's critical value for comparing ``n_points`` points at once, in normal units.

    The (1 − alpha) quantile of the studentized range of ``n_points`` normals (infinite
    degrees of freedom: the standard errors are normal-equivalent), divided by √2 so it
    applies to a difference's own standard error. 1.96 for two points.
    """
    from scipy.stats import studentized_range

    k = max(n_points, 2)
    return float(studentized_range.ppf(1.0 - alpha, k, math.inf)) / math.sqrt(2.0)


@dataclass(frozen=True)
class Ratio:
    """A point's throughput as a fraction of the fastest's, with its interval."""

    batch_size: int
    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "value": self.value,
            "low": self.low,
            "high": self.high,
        }


@dataclass
class Ranking:
    """The fastest point, those tied with it, and the ratios of the rest to it."""

    #: the judged point with the highest throughput (None when no point is judged)
    fastest: Point | None
    #: judged batch sizes that cannot be told apart from the fastest
    tied_with: list[int] = field(default_factory=list)
    #: every judged point's throughput relative to the fastest, ascending batch size
    ratios: list[Ratio] = field(default_factory=list)
    #: points left out of every verdict (no interval), with the reason
    not_judged: dict[int, str] = field(default_factory=dict)
    #: the critical value the comparisons used (normal units)
    critical: float = math.nan

    def ratio(self, batch_size: int) -> Ratio | None:
        return next((r for r in self.ratios if r.batch_size == batch_size), None)

    @property
    def fastest_set(self) -> list[int]:
        """The fastest and every size tied with it, ascending."""
        if self.fastest is None:
            return []
        return sorted({self.fastest.batch_size, *self.tied_with})


def rank(points: Sequence[Point], *, alpha: float = ALPHA) -> Ranking:
    """Judge ``points`` (one series): fastest, ties, and ratios with 95 % intervals."""
    judged = [p for p in points if p.judged and p.log_se_relative is not None and p.step_time_s > 0]
    not_judged = {
        p.batch_size: p.not_judged_reason or "no interval" for p in points if not p.judged
    }
    if not judged:
        return Ranking(None, not_judged=not_judged)
    best = max(judged, key=lambda p: p.samples_per_s)
    c = comparison_quantile(len(judged), alpha)
    y_best = math.log(best.time_per_sample_s)
    s_best = best.log_se_relative or 0.0
    tied: list[int] = []
    ratios: list[Ratio] = []
    for p in sorted(judged, key=lambda p: p.batch_size):
        d = math.log(p.time_per_sample_s) - y_best  # ≥ 0: how much slower per sample
        se = math.hypot(p.log_se_relative or 0.0, s_best)
        if p is best:
            ratios.append(Ratio(p.batch_size, 1.0, 1.0, 1.0))
            continue
        ratios.append(
            Ratio(p.batch_size, math.exp(-d), math.exp(-d - c * se), math.exp(-d + c * se))
        )
        if d <= c * se:
            tied.append(p.batch_size)
    return Ranking(best, tied, ratios, not_judged, c)


@dataclass
class NearBest:
    """The smallest batch size within 5 % of the fastest, judged on intervals."""

    #: the smallest confirmed size (the fastest itself when no smaller one is confirmed)
    batch_size: int | None
    #: "confirmed", "fastest" (no smaller size confirmed) or "not_judged"
    status: str
    #: smaller sizes the data cannot place either side of 95 %, ascending
    undetermined: list[int] = field(default_factory=list)
    ratio: Ratio | None = None


def smallest_near_best(ranking: Ranking, near: float = NEAR_BEST) -> NearBest:
    """The smallest size confirmed at ≥ ``near`` of the fastest's throughput."""
    if ranking.fastest is None:
        return NearBest(None, "not_judged")
    best_b = ranking.fastest.batch_size
    undetermined: list[int] = []
    for r in ranking.ratios:
        if r.batch_size >= best_b:
            break
        if r.low >= near:
            return NearBest(r.batch_size, "confirmed", undetermined, r)
        if r.high >= near:
            undetermined.append(r.batch_size)
    return NearBest(best_b, "fastest", undetermined, ranking.ratio(best_b))
