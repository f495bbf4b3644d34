"""The U-shape test: does the time per sample fall to a minimum and rise again, beyond the noise?

The data are points ``(b_i, y_i = log time per sample, s_i = its standard error)``.
A U shape is an interior minimum: some ``k`` with a point on its left significantly
above it (the falling arm) and a point on its right significantly above it (the
rising arm). The statistic is ``max_k min(F_k, R_k)`` with ``F_k = max_{i<k} z_ik``,
``R_k = max_{j>k} z_jk`` and ``z_ab = (y_a − y_b) / √(s_a² + s_b²)``.

Its critical values come from the least favourable curves without a U — a steep
fall then flat (only the rising arm can be a false alarm) and its mirror — by
simulating flat stretches with the observed standard errors (a fixed seed, so the
verdict is deterministic). The false-alarm rate is then at most 5 % whatever the
true curve, provided the standard errors are right; ``tests/analyse/test_ushape_simulation.py``
measures it, and the power, on simulated sweeps.

A curve that rises beyond the noise and comes back within the noise of its minimum
at the largest batch size is called a bump, not a U (a U's rising arm holds to the end).
Points without a known spread are left out, and with fewer than 3 judged points the
verdict is ``"not_judged"``, naming the points that lack an interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

#: the test's level: at most this share of curves without a U are called U-shaped
ALPHA = 0.05
#: simulated flat stretches behind each critical value
DRAWS = 10_000
#: the verdicts, as the JSON names them
VERDICTS = ("u", "no_u", "not_judged")


@dataclass
class UShape:
    """The U-shape verdict on one series' time per sample."""

    #: "u", "no_u" or "not_judged"
    verdict: str
    #: one sentence saying what the data show and why that is the verdict
    message: str
    #: batch size of the (judged) minimum; None without judged points
    b_min: int | None = None
    #: largest relative rise after the minimum (0.2 for +20 %), 0.0 when none
    rise: float = 0.0
    #: where that largest rise is reached
    b_rise: int | None = None
    #: the statistic and its critical values (normal units), when the test ran
    statistic: float | None = None
    critical_falling: float | None = None
    critical_rising: float | None = None

    @property
    def present(self) -> bool:
        return self.verdict == "u"

    @property
    def judged(self) -> bool:
        return self.verdict != "not_judged"

    @property
    def reason(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reason": self.message,
            "present": self.present,
            "b_min": self.b_min,
            "rise": self.rise,
            "b_rise": self.b_rise,
            "statistic": self.statistic,
            "critical_falling": self.critical_falling,
            "critical_rising": self.critical_rising,
        }


def _pct(x: float) -> str:
    return f"{x:+.0%}" if abs(x) >= 0.01 else f"{x:+.1%}"


@lru_cache(maxsize=512)
def _max_pair_quantile(shape: tuple[float, ...], alpha: float) -> float:
    """(1 − alpha) quantile of ``max_{k<j} (y_j − y_k)/√(s_j² + s_k²)`` for flat y ~ N(0, s²)."""
    import numpy as np

    s = np.asarray(shape, dtype=float)
    if len(s) < 2:
        return math.inf
    rng = np.random.default_rng(20_260_101)
    y = rng.standard_normal((DRAWS, len(s))) * s
    k, j = np.triu_indices(len(s), 1)
    z = (y[:, j] - y[:, k]) / np.sqrt(s[j] ** 2 + s[k] ** 2)
    return float(np.quantile(z.max(axis=1), 1.0 - alpha))


def critical_value(standard_errors: Sequence[float], alpha: float = ALPHA) -> float:
    """The critical value for one arm over a flat stretch with these standard errors.

    Only the ratios of the errors matter; they are rounded to a tenth of the largest
    (at least 0.1) so that the cache serves nearby layouts; the seed is fixed, so the
    verdict is reproducible. The simulation tests measure the test with this rounding.
    """
    top = max(standard_errors)
    if top <= 0:
        return math.inf
    shape = tuple(max(round(s / top, 1), 0.1) for s in standard_errors)
    return _max_pair_quantile(shape, alpha)


def _z(y: Sequence[float], s: Sequence[float], a: int, b: int) -> float:
    """How many standard errors point a lies above point b."""
    d = math.hypot(s[a], s[b])
    if d == 0:
        return math.inf if y[a] > y[b] else (-math.inf if y[a] < y[b] else 0.0)
    return (y[a] - y[b]) / d


def _describe_unjudged(
    pts: Sequence[tuple[int, float, float | None]], what: str
) -> tuple[str, int | None, float, int | None]:
    """What a curve without intervals shows: its lowest point and the rise after it."""
    if len(pts) < 2:
        return "", (pts[0][0] if pts else None), 0.0, None
    i = min(range(len(pts)), key=lambda j: pts[j][1])
    b_min = int(pts[i][0])
    after = [(math.expm1(pts[j][1] - pts[i][1]), int(pts[j][0])) for j in range(i + 1, len(pts))]
    rise, b_rise = max(after, default=(0.0, None))
    if i == len(pts) - 1:
        return f"; {what} falls to the largest batch size (b={b_min})", b_min, 0.0, None
    if i == 0:
        return (
            f"; {what} rises from the smallest batch size on ({_pct(rise)} by b={b_rise})",
            b_min,
            rise,
            b_rise,
        )
    return (
        f"; {what} is lowest at b={b_min} and rises {_pct(rise)} by b={b_rise}",
        b_min,
        rise,
        b_rise,
    )


def u_shape_test(
    batch_sizes: Sequence[int],
    log_times: Sequence[float],
    log_se: Sequence[float | None],
    *,
    alpha: float = ALPHA,
    not_judged_reasons: Sequence[str] = (),
    what: str = "the time per sample",
) -> UShape:
    """The verdict on points with log times and their standard errors (None: unknown)."""
    pts = sorted(zip(batch_sizes, log_times, log_se, strict=True))
    judged = [(b, y, s) for b, y, s in pts if s is not None]
    left_out = [b for b, _, s in pts if s is None]
    if len(judged) < 3:
        why = "; ".join(not_judged_reasons) if not_judged_reasons else ""
        if left_out and not why:
            why = "b=" + ", b=".join(str(b) for b in left_out) + " lack a 95 % interval"
        n = len(judged)
        shows, b_min, rise, b_rise = _describe_unjudged(pts, what)
        return UShape(
            "not_judged",
            f"not judged: {n} batch size{'s' if n != 1 else ''} with a 95 % interval, a U "
            f"shape needs at least 3" + (f" ({why})" if why else "") + shows,
            b_min=b_min,
            rise=rise,
            b_rise=b_rise,
        )
    bs = [int(b) for b, _, _ in judged]
    y = [float(v) for _, v, _ in judged]
    s = [float(e or 0.0) for _, _, e in judged]
    skipped = f" (left out, no interval: b={', b='.join(map(str, left_out))})" if left_out else ""
    n = len(y)
    c_rise = critical_value(s[1:], alpha)
    c_fall = critical_value(s[:-1][::-1], alpha)
    i_min = min(range(n), key=lambda i: y[i])
    b_min = bs[i_min]
    rises = [(math.expm1(y[j] - y[i_min]), bs[j]) for j in range(i_min + 1, n)]
    rise, b_rise = max(rises, default=(0.0, None))
    rise = max(rise, 0.0)
    best_k, best_stat = None, -math.inf
    for k in range(1, n - 1):
        f = max(_z(y, s, i, k) for i in range(k))
        r = max(_z(y, s, j, k) for j in range(k + 1, n))
        stat = min(f - c_fall, r - c_rise)
        if stat > best_stat:
            best_k, best_stat = k, stat
    common: dict[str, Any] = dict(
        b_min=b_min,
        rise=rise,
        b_rise=b_rise if rise > 0 else None,
        critical_falling=c_fall,
        critical_rising=c_rise,
        statistic=None if best_k is None else best_stat,
    )

    def no_u(text: str) -> UShape:
        return UShape("no_u", f"no U shape: {text}{skipped}", **common)

    if best_k is not None and best_stat > 0:
        k = best_k
        b_k = bs[k]
        k_rise, b_top = max((math.expm1(y[j] - y[k]), bs[j]) for j in range(k + 1, n))
        k_fall, b_from = max((math.expm1(y[i] - y[k]), bs[i]) for i in range(k))
        last = _z(y, s, n - 1, k)
        if last <= -c_fall:
            return no_u(
                f"{what} falls on to the largest batch size (b={bs[-1]}), with a bump on the way "
                f"({_pct(k_rise)} after b={b_k}, beyond the noise)"
            )
        if last < c_rise:
            back = math.expm1(y[-1] - y[k])
            return no_u(
                f"a bump: {what} rises after b={b_k} ({_pct(k_rise)} by b={b_top}, beyond the "
                f"noise) but is back within the noise of it at b={bs[-1]} ({_pct(back)})"
            )
        common.update(b_min=b_k, rise=k_rise, b_rise=b_top)
        return UShape(
            "u",
            f"a U shape: {what} falls from b={b_from} to b={b_k} "
            f"({_pct(-k_fall / (1 + k_fall))}) and rises again ({_pct(k_rise)} by b={b_top}), "
            f"both beyond the noise{skipped}",
            **common,
        )
    # no U: say what the curve does
    falls = i_min > 0 and max(_z(y, s, i, i_min) for i in range(i_min)) >= c_fall
    rises_beyond = i_min < n - 1 and max(_z(y, s, j, i_min) for j in range(i_min + 1, n)) >= c_rise
    if i_min == n - 1:
        return no_u(f"{what} keeps falling to the largest batch size (b={b_min})")
    if rises_beyond and not falls:
        where = "from the smallest batch size on" if i_min == 0 else f"after b={b_min}"
        return no_u(
            f"{what} rises {where} ({_pct(rise)} by b={b_rise}, beyond the noise), and "
            "falls before it only within the noise: no falling arm"
        )
    if falls:
        return no_u(
            f"{what} falls to b={b_min}, and the rise after it ({_pct(rise)} by b={b_rise}) "
            "is within the noise"
        )
    return no_u(f"{what} is flat within the noise")


def detect_u_shape(
    batch_sizes: Sequence[float] | Any,
    times: Sequence[float] | Any,
    standard_errors: Sequence[float] | Any | None = None,
    *,
    what: str = "the time per sample",
) -> UShape:
    """The U-shape verdict on a table of times with the standard errors of those times.

    ``standard_errors`` are the errors of each *time* (the standard error of a median,
    not the spread of raw steps); without them nothing is judged.
    """
    if len(batch_sizes) != len(times) or len(times) == 0:
        raise ValueError("detect_u_shape needs as many times as batch sizes, at least one")
    ys = [math.log(float(t)) for t in times]
    if standard_errors is None:
        ses: list[float | None] = [None] * len(times)
        reasons = ["no standard errors were given"]
    else:
        if len(standard_errors) != len(times):
            raise ValueError("detect_u_shape needs one standard error per time")
        ses = [
            float(e) / float(t) if e is not None and math.isfinite(e) and e > 0 else None
            for e, t in zip(standard_errors, times, strict=True)
        ]
        reasons = []
    return u_shape_test(
        [int(round(b)) for b in batch_sizes], ys, ses, not_judged_reasons=reasons, what=what
    )
