"""Achieved FLOP/s and model FLOPs utilisation (MFU): plain arithmetic on measured figures.

A trial's achieved rate is its counted step FLOPs (:mod:`batchscope.engine.flops`) over
its median step time; its MFU is that rate over the device's matmul peak *measured
here* (:mod:`batchscope.hardware.peak`). Both have intervals, and the MFU's combines
them conservatively: its low end is the achieved rate's low end over the peak's high
end, its high end the achieved high over the peak low — wider than either, never
narrower than the truth allows.

Beside the FLOPs, a trial's estimated bytes moved per step (``bytes_per_step``) over the
device's measured copy bandwidth is the time memory traffic alone would take; its share
of the median step is the ``bandwidth_fraction``. :func:`bound_of` reads both shares:
a step whose FLOPs at the peak take at least half its time is *compute-bound*, one whose
bytes at the copy bandwidth do (and more than its FLOPs) is *memory-bound*, and one
that neither explains spends its time elsewhere: Python, kernel launches, small ops,
data handling — a larger batch spreads those over more samples. One half is a
convention (the share at which one cause accounts for most of the step), not a fitted
threshold; the call uses the shares' interval ends, so noise alone does not make it.

Per batch size (a :class:`~batchscope.analyse.points.Point`, rounds combined) the
achieved rate is ``flops_per_sample × samples/s`` over the point's interval, so the MFU
column reads the same uncertainty model as every other figure. :func:`efficiency_verdict`
says how far the fastest batch size gets and whether the device is saturated beyond it —
reading the ranking's verdicts (:mod:`batchscope.analyse.ranking`), not a test of its own.

No torch here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from batchscope.analyse.points import Point
from batchscope.analyse.ranking import Ranking
from batchscope.core.results import TrialResult
from batchscope.units import format_flops

Interval = tuple[float | None, float | None, float | None]


def _ok(x: float | None) -> bool:
    return x is not None and math.isfinite(x) and x > 0


def achieved_flops(
    flops_per_step: float | None,
    median_s: float | None,
    median_low_s: float | None = None,
    median_high_s: float | None = None,
) -> Interval:
    """(rate, low, high) FLOP/s of ``flops_per_step`` per median step; the low end comes
    from the step time's high end. (None, None, None) without a count or a time; an end
    is None without the step time's interval."""
    return _per_median_step(flops_per_step, median_s, median_low_s, median_high_s)


def _per_median_step(
    amount: float | None,
    median_s: float | None,
    median_low_s: float | None,
    median_high_s: float | None,
) -> Interval:
    """(amount ÷ median, ÷ its high end, ÷ its low end): a per-step amount over the step
    time, the interval's ends swapped; (None, None, None) without both parts."""
    if not _ok(amount) or not _ok(median_s):
        return None, None, None
    assert amount is not None and median_s is not None
    low = amount / median_high_s if median_high_s and _ok(median_high_s) else None
    high = amount / median_low_s if median_low_s and _ok(median_low_s) else None
    return amount / median_s, low, high


def mfu(
    achieved: float | None,
    achieved_low: float | None,
    achieved_high: float | None,
    peak: float | None,
    peak_low: float | None = None,
    peak_high: float | None = None,
) -> Interval:
    """(mfu, low, high): achieved ÷ peak, low = achieved_low ÷ peak_high, high =
    achieved_high ÷ peak_low. An end is None where either of its parts is unknown
    (a peak without an interval counts as exact: its own value at both ends)."""
    if not _ok(achieved) or not _ok(peak):
        return None, None, None
    assert achieved is not None and peak is not None
    p_low = peak_low if _ok(peak_low) else peak
    p_high = peak_high if _ok(peak_high) else peak
    assert p_low is not None and p_high is not None
    low = achieved_low / p_high if achieved_low and _ok(achieved_low) else None
    high = achieved_high / p_low if achieved_high and _ok(achieved_high) else None
    return achieved / peak, low, high


def bandwidth_fraction(
    bytes_per_step: float | None,
    copy_bytes_per_s: float | None,
    median_s: float | None,
    median_low_s: float | None = None,
    median_high_s: float | None = None,
) -> Interval:
    """(share, low, high) of the median step that ``bytes_per_step`` takes at the copy
    bandwidth; the low end from the step's high end. (None, None, None) without parts."""
    if not _ok(bytes_per_step) or not _ok(copy_bytes_per_s):
        return None, None, None
    assert bytes_per_step is not None and copy_bytes_per_s is not None
    memory_s = bytes_per_step / copy_bytes_per_s
    return _per_median_step(memory_s, median_s, median_low_s, median_high_s)


#: a cause "explains" the step when it accounts for at least this share of it
BOUND_SHARE = 0.5


def bound_of(
    mfu_value: float | None,
    mfu_low: float | None,
    bandwidth: float | None,
    bandwidth_low: float | None,
) -> str | None:
    """ "compute", "memory", "overhead" (neither explains the step), or None (unknown).

    Judged on the interval's low end where there is one, its value otherwise: compute-
    bound when the FLOPs at the peak take ≥ :data:`BOUND_SHARE` of the step, memory-bound
    when the bytes at the copy bandwidth do and take more of it than the FLOPs; overhead
    when the high-side values of both are below the share."""
    if mfu_value is None or bandwidth is None:
        return None
    m = mfu_low if mfu_low is not None else mfu_value
    b = bandwidth_low if bandwidth_low is not None else bandwidth
    if m >= BOUND_SHARE and m >= b:
        return "compute"
    if b >= BOUND_SHARE and bandwidth > mfu_value:
        return "memory"
    if mfu_value < BOUND_SHARE and bandwidth < BOUND_SHARE:
        return "overhead"
    return None


def stamp_achieved(trial: TrialResult) -> None:
    """Set ``achieved_flops_per_s`` (and its interval) from the trial's count and steps."""
    s = trial.step_time_s
    if not trial.ok or s is None or trial.flops_per_step is None:
        return
    value, low, high = achieved_flops(trial.flops_per_step, s.median, s.median_low, s.median_high)
    trial.achieved_flops_per_s = value
    trial.achieved_flops_per_s_low = low
    trial.achieved_flops_per_s_high = high


def stamp_mfu(trial: TrialResult, peak: dict[str, Any] | None) -> None:
    """Stamp the achieved rate and, with a ``peak`` (a PeakResult as a dict), the device
    peak and the MFU with its interval on an ok trial."""
    stamp_achieved(trial)
    if peak is None:
        return
    s = trial.step_time_s
    if trial.ok and s is not None and _ok(peak.get("copy_bytes_per_s")):
        trial.device_copy_bytes_per_s = float(peak["copy_bytes_per_s"])
        if trial.bytes_per_step:
            (
                trial.bandwidth_fraction,
                trial.bandwidth_fraction_low,
                trial.bandwidth_fraction_high,
            ) = bandwidth_fraction(
                trial.bytes_per_step,
                trial.device_copy_bytes_per_s,
                s.median,
                s.median_low,
                s.median_high,
            )
    if not _ok(peak.get("flops_per_s")):
        return
    trial.device_peak_flops = float(peak["flops_per_s"])
    trial.device_peak_flops_low = peak.get("flops_per_s_low")
    trial.device_peak_flops_high = peak.get("flops_per_s_high")
    trial.device_peak_dtype = peak.get("dtype")
    if trial.achieved_flops_per_s is None:
        return
    trial.mfu, trial.mfu_low, trial.mfu_high = mfu(
        trial.achieved_flops_per_s,
        trial.achieved_flops_per_s_low,
        trial.achieved_flops_per_s_high,
        trial.device_peak_flops,
        trial.device_peak_flops_low,
        trial.device_peak_flops_high,
    )


# ---------------------------------------------------------------- per batch size


@dataclass(frozen=True)
class PointEfficiency:
    """One batch size's FLOPs, achieved FLOP/s and MFU, its rounds combined."""

    batch_size: int
    flops_per_sample: float
    achieved: float
    achieved_low: float | None
    achieved_high: float | None
    peak: float | None = None
    peak_low: float | None = None
    peak_high: float | None = None
    peak_dtype: str | None = None
    mfu: float | None = None
    mfu_low: float | None = None
    mfu_high: float | None = None
    bytes_per_sample: float | None = None
    bandwidth_fraction: float | None = None
    bandwidth_fraction_low: float | None = None
    bandwidth_fraction_high: float | None = None

    @property
    def bound(self) -> str | None:
        """What limits this batch size's step (:func:`bound_of`)."""
        return bound_of(
            self.mfu, self.mfu_low, self.bandwidth_fraction, self.bandwidth_fraction_low
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "flops_per_sample": self.flops_per_sample,
            "achieved_flops_per_s": self.achieved,
            "achieved_flops_per_s_low": self.achieved_low,
            "achieved_flops_per_s_high": self.achieved_high,
            "device_peak_flops": self.peak,
            "device_peak_flops_low": self.peak_low,
            "device_peak_flops_high": self.peak_high,
            "device_peak_dtype": self.peak_dtype,
            "mfu": self.mfu,
            "mfu_low": self.mfu_low,
            "mfu_high": self.mfu_high,
            "bytes_per_sample": self.bytes_per_sample,
            "bandwidth_fraction": self.bandwidth_fraction,
            "bandwidth_fraction_low": self.bandwidth_fraction_low,
            "bandwidth_fraction_high": self.bandwidth_fraction_high,
            "bound": self.bound,
        }


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


def point_efficiency(p: Point, trials: Sequence[TrialResult]) -> PointEfficiency | None:
    """``p``'s efficiency from its ok trials' FLOP counts and peak; None without a count.

    ``trials`` are the series' trials at ``p``'s batch size (rounds); FLOPs per sample
    are their median (the count is the same in every round), the peak the first one
    recorded (one per run, device and dtype).
    """
    good = [t for t in trials if t.ok and t.flops_per_sample]
    if not good or not _ok(p.samples_per_s):
        return None
    fps = _median([float(t.flops_per_sample or 0.0) for t in good])
    low = fps * p.samples_per_s_low if p.samples_per_s_low is not None else None
    high = fps * p.samples_per_s_high if p.samples_per_s_high is not None else None
    achieved = fps * p.samples_per_s
    memory = _point_bandwidth(p, good)
    peaked = next((t for t in good if _ok(t.device_peak_flops)), None)
    if peaked is None:
        return PointEfficiency(p.batch_size, fps, achieved, low, high, **memory)
    value, m_low, m_high = mfu(
        achieved,
        low,
        high,
        peaked.device_peak_flops,
        peaked.device_peak_flops_low,
        peaked.device_peak_flops_high,
    )
    return PointEfficiency(
        p.batch_size,
        fps,
        achieved,
        low,
        high,
        peaked.device_peak_flops,
        peaked.device_peak_flops_low,
        peaked.device_peak_flops_high,
        peaked.device_peak_dtype,
        value,
        m_low,
        m_high,
        **memory,
    )


def _point_bandwidth(p: Point, good: Sequence[TrialResult]) -> dict[str, Any]:
    """The point's bytes per sample and bandwidth fraction: bytes per sample × samples/s
    over the copy bandwidth, on the point's samples/s interval (empty without parts)."""
    counted = [t for t in good if t.bytes_per_step and _ok(t.device_copy_bytes_per_s)]
    if not counted:
        return {}
    per_sample = _median(
        [float(t.bytes_per_step or 0) / (t.effective_batch_size or t.batch_size) for t in counted]
    )
    copy = float(counted[0].device_copy_bytes_per_s or 0.0)

    def share(rate: float | None) -> float | None:
        return per_sample * rate / copy if rate is not None else None

    return {
        "bytes_per_sample": per_sample,
        "bandwidth_fraction": share(p.samples_per_s),
        "bandwidth_fraction_low": share(p.samples_per_s_low),
        "bandwidth_fraction_high": share(p.samples_per_s_high),
    }


def series_efficiency(
    points: Sequence[Point], trials: Sequence[TrialResult]
) -> list[PointEfficiency]:
    """Every point's :class:`PointEfficiency` that has a FLOP count, ascending batch size."""
    out = []
    for p in points:
        e = point_efficiency(p, [t for t in trials if t.batch_size == p.batch_size])
        if e is not None:
            out.append(e)
    return out


# ---------------------------------------------------------------- the verdict


def format_mfu(value: float | None, low: float | None = None, high: float | None = None) -> str:
    """'41 % [38–44]', '41 %' without an interval, '–' without a value (3 significant
    figures below 10 %: '0.412 %')."""
    if value is None or not math.isfinite(value):
        return "–"

    def pct(x: float) -> str:
        x *= 100
        return f"{x:.0f}" if x >= 9.5 else f"{x:.2g}" if x >= 0.095 else f"{x:.1g}"

    text = f"{pct(value)} %"
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        text += f" [{pct(low)}–{pct(high)}]"
    return text


@dataclass(frozen=True)
class EfficiencyVerdict:
    """How much of the measured peak the fastest batch size reaches, and what lies beyond."""

    batch_size: int
    mfu: float
    mfu_low: float | None
    mfu_high: float | None
    peak: float
    peak_dtype: str
    device: str
    #: beyond the fastest: "slower" (every larger size slower beyond the noise), "flat"
    #: (some larger size within the noise of it), "largest" (no larger size measured),
    #: None (no ranking: the points have no intervals)
    beyond: str | None
    #: the one-line verdict
    reason: str
    #: what limits the step at that batch size (:func:`bound_of`), and the share of it
    #: that its bytes take at the measured copy bandwidth
    bound: str | None = None
    bandwidth_fraction: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "mfu": self.mfu,
            "mfu_low": self.mfu_low,
            "mfu_high": self.mfu_high,
            "device_peak_flops": self.peak,
            "device_peak_dtype": self.peak_dtype,
            "saturated": self.beyond in ("slower", "flat"),
            "beyond_fastest": self.beyond,
            "bound": self.bound,
            "bandwidth_fraction": self.bandwidth_fraction,
            "reason": self.reason,
        }


def _device_phrase(device: str) -> str:
    kind = device.split()[0]
    return "this CPU's" if kind == "cpu" else f"{kind}'s"


def efficiency_verdict(
    series: str, efficiency: Sequence[PointEfficiency], ranking: Ranking, points: Sequence[Point]
) -> EfficiencyVerdict | None:
    """The MFU of the fastest batch size (or, unranked, the highest MFU) and whether the
    device is saturated beyond it, in one line; None without an MFU.

    "Saturated" is said only where the ranking supports it: a larger batch size was
    measured and none of them is faster (the ranking's fastest is below them); "the time
    per sample grows" only where every larger one is slower beyond the noise.
    """
    with_mfu = {e.batch_size: e for e in efficiency if e.mfu is not None and e.peak}
    if not with_mfu:
        return None
    fastest = ranking.fastest
    if fastest is not None and fastest.batch_size in with_mfu:
        e = with_mfu[fastest.batch_size]
        larger = [
            p.batch_size
            for p in points
            if p.judged and p.batch_size > fastest.batch_size and p is not fastest
        ]
        tied = [b for b in larger if b in ranking.tied_with]
        beyond = "largest" if not larger else "flat" if tied else "slower"
    else:
        e = max(with_mfu.values(), key=lambda x: x.mfu or 0.0)
        beyond = None
    assert e.mfu is not None and e.peak is not None
    dtype = e.peak_dtype or "fp32"
    line = (
        f"b={e.batch_size} reaches {format_mfu(e.mfu, e.mfu_low, e.mfu_high)} of "
        f"{_device_phrase(series)} measured {dtype} matmul peak ({format_flops(e.peak)}; "
        f"{format_flops(e.achieved)} achieved)"
    )
    if beyond == "slower":
        line += (
            "; beyond it the time per sample grows with the batch (the device is "
            "saturated): a larger batch buys nothing"
        )
    elif beyond == "flat":
        sizes = ", ".join(f"b={b}" for b in tied)
        line += (
            f"; beyond it the time per sample no longer falls ({sizes} within the noise of "
            "it: the device is saturated): a larger batch buys nothing measurable"
        )
    elif beyond == "largest":
        line += "; it is the largest batch size measured: a larger one may reach more"
    line += _bound_phrase(e)
    return EfficiencyVerdict(
        batch_size=e.batch_size,
        mfu=e.mfu,
        mfu_low=e.mfu_low,
        mfu_high=e.mfu_high,
        peak=e.peak,
        peak_dtype=dtype,
        device=series,
        beyond=beyond,
        reason=line,
        bound=e.bound,
        bandwidth_fraction=e.bandwidth_fraction,
    )


def _bound_phrase(e: PointEfficiency) -> str:
    """The verdict's second sentence: what the step's time goes to ('' when unknown)."""
    if e.bandwidth_fraction is None:
        return ""
    share = format_mfu(e.bandwidth_fraction, e.bandwidth_fraction_low, e.bandwidth_fraction_high)
    moved = f"its bytes moved at the measured copy bandwidth take {share} of a step"
    if e.bound == "memory":
        return f". Memory-bound: {moved}"
    if e.bound == "compute":
        return f". Compute-bound ({moved})"
    if e.bound == "overhead":
        return (
            f". Neither the FLOPs nor the memory traffic explain the step ({moved}): "
            "its time goes to overheads (Python, kernel launches, small ops)"
        )
    return f" ({moved})"
