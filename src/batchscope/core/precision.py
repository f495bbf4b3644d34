"""How well a sample of step times pins down its median: the one rule every stage uses.

The median step time is batchscope's figure for a trial. Its uncertainty is the
Maritz–Jarrett standard error (:func:`scipy.stats.mstats.mjci`: a weighted sum of
the order statistics, distribution-free, calibrated in simulation from 6 steps on).
Intervals are symmetric on the log scale — ``median × exp(± z·se/median)`` — because
step times are positive and compared as ratios (per sample, between batch sizes,
between devices). Fewer than :data:`MIN_STEPS_FOR_INTERVAL` steps have no 95 %
interval at all (even the widest order-statistic interval covers less), so such a
median has an *unknown* spread and no verdict rests on it.

The engine's adaptive stopping rule (``--max-error``) and the analysis read the
same functions, so "±2 %" means the same thing when a trial stops and when a
report judges it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

#: fewer steps than this have no 95 % interval of their median (1 − 2·0.5^n < 0.95)
MIN_STEPS_FOR_INTERVAL = 6
#: two-sided 95 % normal quantile
Z95 = 1.959963984540054
#: the step clock's resolution (``time.perf_counter``), the smallest error a median can have
CLOCK_RESOLUTION_S = time.get_clock_info("perf_counter").resolution


@dataclass(frozen=True)
class MedianPrecision:
    """A sample's median with its standard error on the log scale (None: unknown)."""

    median: float
    n: int
    #: standard error of log(median): the relative standard error of the median
    log_se: float | None

    @property
    def known(self) -> bool:
        return self.log_se is not None

    @property
    def relative_half_width(self) -> float | None:
        """Half the 95 % interval as a fraction of the median (0.02 for ±2 %)."""
        if self.log_se is None:
            return None
        return math.expm1(Z95 * self.log_se)

    def interval(self, z: float = Z95) -> tuple[float, float] | None:
        """The (low, high) 95 % interval of the median, or None when unknown."""
        if self.log_se is None:
            return None
        return self.median * math.exp(-z * self.log_se), self.median * math.exp(z * self.log_se)


def median_precision(samples: Sequence[float]) -> MedianPrecision:
    """The median of ``samples`` and its Maritz–Jarrett relative standard error.

    Raises ValueError for an empty sample; returns an unknown spread (``log_se``
    None) below :data:`MIN_STEPS_FOR_INTERVAL` values or for a non-positive median.
    """
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(float(s) for s in samples)
    n = len(ordered)
    mid = n // 2
    median = ordered[mid] if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])
    if n < MIN_STEPS_FOR_INTERVAL or median <= 0:
        return MedianPrecision(median, n, None)
    # never a zero-width interval: the clock cannot tell apart times closer than its resolution
    se = max(maritz_jarrett_se(ordered), CLOCK_RESOLUTION_S)
    return MedianPrecision(median, n, se / median)


def maritz_jarrett_se(values: Sequence[float]) -> float:
    """The Maritz–Jarrett standard error of the median of sorted ``values``.

    The same estimator as :func:`scipy.stats.mstats.mjci` (tested against it): a
    weighted sum of the order statistics with Beta-distribution weights, which depend
    only on ``n`` and are computed once per ``n`` (a trial checks its precision often).
    """
    import numpy as np

    data = np.asarray(values, dtype=float)
    if data.size < 2 or float(data[-1] - data[0]) == 0.0:
        return 0.0
    w = _mj_weights(int(data.size))
    c1 = float(np.dot(w, data))
    c2 = float(np.dot(w, data * data))
    return math.sqrt(max(c2 - c1 * c1, 0.0))


@lru_cache(maxsize=4096)
def _mj_weights(n: int) -> Any:
    import numpy as np
    from scipy.special import betainc

    m = int(0.5 * n + 0.5)
    x = np.arange(1, n + 1, dtype=float) / n
    w = betainc(m - 1, n - m, x) - betainc(m - 1, n - m, x - 1.0 / n)
    w.setflags(write=False)
    return w
