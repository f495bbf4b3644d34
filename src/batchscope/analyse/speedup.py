"""Speedups: ratios of median times per sample, with a bootstrap 95 % interval.

``cuda:0 ran 45.8× [44.9–46.7] faster than cpu at b=64``: the ratio is the two
points' time per sample (:mod:`batchscope.analyse.points`), its interval the
percentile bootstrap of the ratio of the two medians (:func:`scipy.stats.bootstrap`,
each side's step times resampled on their own, a fixed seed), widened on the log
scale by each side's run-to-run variation when rounds measured it. A side without a
known spread (fewer than 6 steps) gives a ratio that is *not determined*: it is
reported as measured, without an interval, and no verdict rests on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from batchscope.analyse.points import Drift, Point
from batchscope.core.precision import MIN_STEPS_FOR_INTERVAL, Z95

#: bootstrap resamples behind each interval
RESAMPLES = 2000
#: the bootstrap's seed: the same data give the same interval
SEED = 20_260_101


@dataclass(frozen=True)
class Speedup:
    """``fast`` ran ``ratio`` [``low``–``high``] times faster than ``slow`` (per sample)."""

    fast: str
    slow: str
    #: the batch size both ran at; None for best against best
    batch_size: int | None
    ratio: float
    #: the 95 % interval of the ratio (None when a side has no known spread)
    low: float | None
    high: float | None
    #: the batch size each side ran at (they differ for a best-vs-best comparison)
    fast_batch_size: int | None = None
    slow_batch_size: int | None = None
    #: the unit both sides are compared per: "sample", or "token" between sequence series
    #: (``--seq-lens``: a sample of 256 tokens is not a sample of 128)
    per: str = "sample"

    @property
    def determined(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def faster_beyond_noise(self) -> bool:
        """The interval excludes 1: ``fast`` is faster beyond the noise."""
        return self.low is not None and self.low > 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "fast": self.fast,
            "slow": self.slow,
            "batch_size": self.batch_size,
            "ratio": self.ratio,
            "low": self.low,
            "high": self.high,
            "determined": self.determined,
            "fast_batch_size": self.fast_batch_size,
            "slow_batch_size": self.slow_batch_size,
            "per": self.per,
        }


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a point, its raw per-sample times, its series' drift."""

    name: str
    point: Point
    #: every measured step time of the point's rounds divided by its batch size (by its
    #: tokens per step when ``per`` is "token")
    per_sample_s: Sequence[float]
    drift: Drift
    per: str = "sample"


def per_unit(p: Point, per: str) -> float:
    """The point's time per sample, or per token (``per == "token"``)."""
    if per == "token" and p.tokens_per_step:
        return p.step_time_s / p.tokens_per_step
    return p.time_per_sample_s


def bootstrap_log_ratio(slow: Sequence[float], fast: Sequence[float]) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of log(median(slow) / median(fast))."""
    import numpy as np
    from scipy import stats

    def stat(a: Any, b: Any, axis: int = -1) -> Any:
        return np.log(np.median(a, axis=axis)) - np.log(np.median(b, axis=axis))

    res = stats.bootstrap(
        (np.asarray(slow, dtype=float), np.asarray(fast, dtype=float)),
        stat,
        n_resamples=RESAMPLES,
        vectorized=True,
        paired=False,
        method="percentile",
        rng=np.random.default_rng(SEED),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def compare(base: Side, other: Side, batch_size: int | None) -> Speedup:
    """Whichever side is faster per sample (per token between sequence series), and by
    how much, with its interval."""
    a, b = base.point, other.point
    per = "token" if base.per == other.per == "token" else "sample"
    log_ratio = math.log(per_unit(a, per)) - math.log(per_unit(b, per))  # > 0: other faster
    fast, slow = (other, base) if log_ratio >= 0 else (base, other)
    ratio = math.exp(abs(log_ratio))
    low = high = None
    enough = all(
        s.point.judged and len(s.per_sample_s) >= MIN_STEPS_FOR_INTERVAL for s in (base, other)
    )
    if enough:
        lo, hi = bootstrap_log_ratio(slow.per_sample_s, fast.per_sample_s)
        centre = math.log(ratio)
        # the bootstrap's spread, re-centred on the points' ratio and widened by drift
        boot_mid = 0.5 * (lo + hi)
        down, up = boot_mid - lo, hi - boot_mid
        drift_var = sum(
            s.drift.tau**2 / max(s.point.n_trials, 1) for s in (base, other) if s.drift.known
        )
        widen = (Z95**2) * drift_var
        low = math.exp(centre - math.sqrt(down**2 + widen))
        high = math.exp(centre + math.sqrt(up**2 + widen))
    return Speedup(
        fast=fast.name,
        slow=slow.name,
        batch_size=batch_size,
        ratio=ratio,
        low=low,
        high=high,
        fast_batch_size=fast.point.batch_size,
        slow_batch_size=slow.point.batch_size,
        per=per,
    )
