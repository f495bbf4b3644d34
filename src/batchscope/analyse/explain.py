"""Explain the curve: one run's measurements turned into fits, causes and a recommendation.

:func:`analyse_run` reads a :class:`~batchscope.core.results.RunResult` (it never runs
training) and returns a :class:`RunAnalysis`: per device, one :class:`Point` per batch
size with its repeats merged, the fits of the time per sample and the throughput
(:mod:`batchscope.analyse.curves`), the memory fit (:mod:`batchscope.analyse.memory_model`, when
present), the measured causes in plain words, a :class:`Recommendation` whose every
choice carries a one-line reason, and warnings about noisy or badly warmed-up
trials (:mod:`batchscope.analyse.stats`); across devices, the speedups per batch size and
best against best, with hyperfine's propagated uncertainty. Nothing here prints.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchscope.analyse.curves import (
    CurveFit,
    UShape,
    describe_fit,
    detect_u_shape,
    fit_throughput_model,
    fit_time_model,
)
from batchscope.analyse.speedup import Speedup, speedup
from batchscope.analyse.stats import (
    Finding,
    group_findings,
    merge_repeats,
    repeat_findings,
    step_findings,
)
from batchscope.core.results import RunResult, TrialResult
from batchscope.core.target import Quality, quality, soonest_to_target
from batchscope.units import format_bytes, format_seconds

if TYPE_CHECKING:
    from batchscope.analyse.memory_model import MemoryFit

#: the smallest batch size "near the best" gives at least this fraction of the best throughput
NEAR_BEST = 0.95
#: a peak at or above this fraction of --memory-limit is "near" it
NEAR_LIMIT = 0.80
#: the fits need this many successful batch sizes (3 parameters)
MIN_POINTS_TO_FIT = 3


@dataclass
class Point:
    """One batch size on one device, repeats merged.

    Times are medians over each trial's measured steps, then the median over
    repeats. ``time_per_sample_spread_s`` is the larger of the within-trial IQR and
    the IQR of the repeats' medians, per sample. The throughput's error-bar ends are
    the throughput at the median step time plus and minus half that spread (for one
    trial: roughly its quartiles).
    """

    batch_size: int
    n_trials: int
    time_per_sample_s: float
    time_per_sample_spread_s: float
    samples_per_s: float
    samples_per_s_low: float
    samples_per_s_high: float
    peak_memory_bytes: int | None
    data_wait_fraction: float | None
    samples_per_epoch: int | None
    #: median step time (median of the repeats' medians), seconds
    step_time_s: float = math.nan
    #: median of the repeats' step-time IQRs (spread within a trial), seconds
    step_time_iqr_s: float = 0.0
    #: max − min and IQR of the repeats' median step times (0 for one repeat), seconds
    across_repeats_range_s: float = 0.0
    across_repeats_iqr_s: float = 0.0
    #: pooled mean and stdev of every measured step, per sample (for hyperfine's formula)
    time_per_sample_mean_s: float = math.nan
    time_per_sample_stdev_s: float = 0.0
    #: measured steps over all repeats
    n_steps: int = 0
    #: repeats at this batch size that did not finish ok, as {status: count}
    failed_repeats: dict[str, int] = field(default_factory=dict)


@dataclass
class Choice:
    """A recommended batch size and its one-line reason."""

    batch_size: int
    reason: str


@dataclass
class Recommendation:
    best_throughput: Choice | None
    largest_that_fits: Choice | None
    smallest_near_best: Choice | None  # smallest batch within 5 % of the best throughput
    #: with --target: the smallest median time-to-target (target.soonest_to_target)
    reaches_target_soonest: Choice | None = None

    def lines(self) -> list[str]:
        """'fastest: b=64: highest throughput …', one per choice made."""
        out = []
        for label, choice in (
            ("fastest", self.best_throughput),
            ("largest that fits", self.largest_that_fits),
            (f"smallest within {1 - NEAR_BEST:.0%} of the fastest", self.smallest_near_best),
            ("reaches the target soonest", self.reaches_target_soonest),
        ):
            if choice is not None:
                out.append(f"{label}: b={choice.batch_size}: {choice.reason}")
        return out


@dataclass
class DeviceAnalysis:
    device: str
    points: list[Point]
    failed: dict[int, str]  # batch_size -> status ("oom", "crashed", ...)
    time_fit: CurveFit | None
    throughput_fit: CurveFit | None
    memory_fit: MemoryFit | None
    memory_limit_bytes: int | None  # the run's --memory-limit, or None
    u_shape: UShape | None
    causes: list[str]  # measured causes named in plain words
    recommendation: Recommendation
    warnings: list[str]  # noisy / outliers / warm-up too short, with hints
    #: the validation metric per batch size over training (--epochs runs), for the report
    quality: Quality | None = None

    def point(self, batch_size: int) -> Point | None:
        return next((p for p in self.points if p.batch_size == batch_size), None)

    def best_point(self) -> Point | None:
        """The point with the highest throughput (None without points)."""
        return max(self.points, key=lambda p: p.samples_per_s, default=None)

    def to_dict(self) -> dict[str, Any]:
        mf = self.memory_fit
        memory_fit: dict[str, Any] | None = None
        if mf is not None:
            if hasattr(mf, "to_dict"):
                memory_fit = mf.to_dict()
            else:  # pragma: no cover - a MemoryFit without to_dict
                memory_fit = {
                    k: getattr(mf, k, None)
                    for k in ("a_bytes", "m_bytes_per_sample", "r2", "residuals_bytes", "n")
                }
        return _jsonable(
            {
                "device": self.device,
                "points": [dataclasses.asdict(p) for p in self.points],
                "failed": {str(k): v for k, v in self.failed.items()},
                "time_fit": self.time_fit.to_dict() if self.time_fit else None,
                "throughput_fit": self.throughput_fit.to_dict() if self.throughput_fit else None,
                "memory_fit": memory_fit,
                "memory_limit_bytes": self.memory_limit_bytes,
                "u_shape": self.u_shape.to_dict() if self.u_shape else None,
                "causes": list(self.causes),
                "recommendation": {
                    k: dataclasses.asdict(v) if v is not None else None
                    for k, v in (
                        ("best_throughput", self.recommendation.best_throughput),
                        ("largest_that_fits", self.recommendation.largest_that_fits),
                        ("smallest_near_best", self.recommendation.smallest_near_best),
                        ("reaches_target_soonest", self.recommendation.reaches_target_soonest),
                    )
                },
                "warnings": list(self.warnings),
                "quality": dataclasses.asdict(self.quality) if self.quality else None,
            }
        )


@dataclass
class RunAnalysis:
    devices: list[DeviceAnalysis]
    speedups: list[Speedup]  # per batch size
    best_vs_best: list[Speedup]  # best throughput vs best throughput (batch_size None)

    def device(self, name: str) -> DeviceAnalysis | None:
        return next((d for d in self.devices if d.device == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "devices": [d.to_dict() for d in self.devices],
            "speedups": [_jsonable(dataclasses.asdict(s)) for s in self.speedups],
            "best_vs_best": [_jsonable(dataclasses.asdict(s)) for s in self.best_vs_best],
        }


def _jsonable(value: Any) -> Any:
    """Replace non-finite floats (JSON has none) by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# ---------------------------------------------------------------- points


def device_points(run: RunResult, device: str) -> tuple[list[Point], dict[int, str]]:
    """The merged points of ``device`` (ascending batch size) and its failed batch sizes.

    ``failed`` holds the batch sizes where no repeat finished ok, with the first
    failing repeat's status.
    """
    by_size: dict[int, list[TrialResult]] = {}
    for t in run.trials:
        if t.device == device:
            by_size.setdefault(t.batch_size, []).append(t)
    points: list[Point] = []
    failed: dict[int, str] = {}
    for b in sorted(by_size):
        trials = sorted(by_size[b], key=lambda t: t.repeat)
        good = [t for t in trials if t.ok and t.step_time_s is not None]
        bad: dict[str, int] = {}
        for t in trials:
            if not t.ok:
                bad[t.status] = bad.get(t.status, 0) + 1
        if not good:
            first_bad = next((t for t in trials if not t.ok), None)
            failed[b] = first_bad.status if first_bad else NO_STEP_TIMES
            continue
        points.append(_point(good, bad))
    return points, failed


#: the 'status' of a batch size whose trials finished but timed no full-size step
NO_STEP_TIMES = "no step times"


def _median(values: Sequence[float]) -> float:
    from batchscope.analyse.stats import median

    return median(values)


def _point(good: list[TrialResult], bad: dict[str, int]) -> Point:
    b = good[0].batch_size
    rs = merge_repeats(good)
    spread_step = rs.spread_s
    m = rs.median_s
    peaks = [t.peak_memory_bytes for t in good if t.peak_memory_bytes is not None]
    waits = [t.data_wait_fraction for t in good if t.data_wait_fraction is not None]
    epochs = [t.samples_per_epoch for t in good if t.samples_per_epoch is not None]
    slow_end = m + spread_step / 2
    fast_end = m - spread_step / 2
    return Point(
        batch_size=b,
        n_trials=len(good),
        time_per_sample_s=m / b,
        time_per_sample_spread_s=spread_step / b,
        samples_per_s=b / m if m > 0 else math.inf,
        samples_per_s_low=b / slow_end if slow_end > 0 else math.inf,
        samples_per_s_high=b / fast_end if fast_end > 0 else math.inf,
        peak_memory_bytes=max(peaks) if peaks else None,
        data_wait_fraction=_median(waits) if waits else None,
        samples_per_epoch=epochs[0] if epochs else None,
        step_time_s=m,
        step_time_iqr_s=rs.within_iqr_s,
        across_repeats_range_s=rs.across_range_s,
        across_repeats_iqr_s=rs.across_iqr_s,
        time_per_sample_mean_s=rs.mean_s / b,
        time_per_sample_stdev_s=rs.stdev_s / b,
        n_steps=rs.n_steps,
        failed_repeats=bad,
    )


# ---------------------------------------------------------------- memory


def _memory_fit(points: list[Point]) -> MemoryFit | None:
    """The memory model through the points' peaks, or None (module missing, < 2 sizes)."""
    try:
        from batchscope.analyse.memory_model import fit_memory_model
    except ImportError:
        return None
    pts = [p for p in points if p.peak_memory_bytes is not None]
    if len({p.batch_size for p in pts}) < 2:
        return None
    try:
        return fit_memory_model(
            [p.batch_size for p in pts], [float(p.peak_memory_bytes or 0) for p in pts]
        )
    except (ValueError, ArithmeticError):
        return None


def _predicted_max_batch(fit: MemoryFit, limit: int) -> int | None:
    try:
        from batchscope.analyse.memory_model import predict_max_batch

        return predict_max_batch(fit, float(limit))
    except (ImportError, ValueError):
        m = getattr(fit, "m_bytes_per_sample", 0.0)
        a = getattr(fit, "a_bytes", 0.0)
        if m <= 0:
            return None
        return max(0, math.floor((limit - a) / m))


# ---------------------------------------------------------------- recommendation


def _fmt_rate(x: float) -> str:
    if not math.isfinite(x):
        return "–"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.3g}"


def recommend(
    points: list[Point],
    failed: dict[int, str],
    *,
    memory_limit_bytes: int | None = None,
    memory_fit: MemoryFit | None = None,
) -> Recommendation:
    """Pick the fastest, the largest that fits (when known) and the smallest near the best."""
    if not points:
        return Recommendation(
            None, _largest_that_fits(points, failed, memory_limit_bytes, None), None
        )
    best = max(points, key=lambda p: p.samples_per_s)
    ties = [
        p.batch_size
        for p in points
        if p is not best and p.samples_per_s_high >= best.samples_per_s_low
    ]
    if math.isfinite(best.samples_per_s_high):
        span = f"{_fmt_rate(best.samples_per_s_low)}–{_fmt_rate(best.samples_per_s_high)}"
    else:  # the spread is wider than the median: no upper end
        span = f"{_fmt_rate(best.samples_per_s_low)} or more"
    reason = (
        f"highest throughput, {_fmt_rate(best.samples_per_s)} samples/s ({span}), "
        f"{format_seconds(best.time_per_sample_s)} per sample"
    )
    if ties:
        sizes = ", ".join(f"b={b}" for b in ties)
        reason += f"; {sizes} overlap{'s' if len(ties) == 1 else ''} it within the spread"
    best_choice = Choice(best.batch_size, reason)

    near = [p for p in points if p.samples_per_s >= NEAR_BEST * best.samples_per_s]
    small = min(near, key=lambda p: p.batch_size)
    if small is best:
        near_choice = Choice(
            best.batch_size,
            f"the fastest itself: no smaller batch size reaches {NEAR_BEST:.0%} of its throughput",
        )
    else:
        frac = small.samples_per_s / best.samples_per_s
        text = f"{frac:.1%} of the best throughput (b={best.batch_size})"
        if small.peak_memory_bytes is not None and best.peak_memory_bytes:
            saved = best.peak_memory_bytes - small.peak_memory_bytes
            if saved > 0:
                text += (
                    f" with {saved / best.peak_memory_bytes:.0%} less peak memory "
                    f"({format_bytes(small.peak_memory_bytes)} vs "
                    f"{format_bytes(best.peak_memory_bytes)}, {format_bytes(saved)} saved)"
                )
            else:
                text += " (its peak memory is not lower)"
        else:
            text += "; a smaller batch for about the same speed"
        near_choice = Choice(small.batch_size, text)
    return Recommendation(
        best_choice,
        _largest_that_fits(points, failed, memory_limit_bytes, memory_fit),
        near_choice,
    )


def _largest_that_fits(
    points: list[Point],
    failed: dict[int, str],
    limit: int | None,
    memory_fit: MemoryFit | None,
) -> Choice | None:
    oom_sizes = sorted(
        {b for b, status in failed.items() if status == "oom"}
        | {p.batch_size for p in points if p.failed_repeats.get("oom")}
    )
    if oom_sizes:
        first_oom = oom_sizes[0]
        below = [p for p in points if p.batch_size < first_oom and not p.failed_repeats.get("oom")]
        where = (
            f"b={first_oom} ran out of memory"
            if first_oom in failed
            else f"b={first_oom} ran out of memory in "
            f"{next(p for p in points if p.batch_size == first_oom).failed_repeats['oom']} "
            "repeat(s)"
        )
        if not below:
            return None
        fit = max(below, key=lambda p: p.batch_size)
        mem = (
            f" (peak {format_bytes(fit.peak_memory_bytes)})"
            if fit.peak_memory_bytes is not None
            else ""
        )
        return Choice(
            fit.batch_size,
            f"the largest that ran{mem}; {where} (measured: the smallest oom)",
        )
    if limit:
        measured = [p for p in points if p.peak_memory_bytes is not None]
        if memory_fit is not None:
            predicted = _predicted_max_batch(memory_fit, limit)
            if predicted is not None and predicted > 0:
                r2 = getattr(memory_fit, "r2", math.nan)
                return Choice(
                    predicted,
                    f"predicted by the memory fit ({format_bytes(memory_fit.a_bytes)} + "
                    f"{format_bytes(memory_fit.m_bytes_per_sample)} × b, R² {r2:.3g}) to stay "
                    f"under --memory-limit {format_bytes(limit)}; not measured, run it to be sure",
                )
        if measured:
            top = max(measured, key=lambda p: p.batch_size)
            assert top.peak_memory_bytes is not None
            return Choice(
                top.batch_size,
                f"the largest measured, and it fits: peak {format_bytes(top.peak_memory_bytes)}, "
                f"{top.peak_memory_bytes / limit:.0%} of --memory-limit {format_bytes(limit)} "
                "(larger sizes were not tried)",
            )
    return None


# ---------------------------------------------------------------- causes


def measured_causes(
    points: list[Point],
    failed: dict[int, str],
    trials: Sequence[TrialResult],
    memory_limit_bytes: int | None,
) -> list[str]:
    """What the measurements themselves say shapes the curve, with the figures."""
    causes: list[str] = []
    waits = [p for p in points if p.data_wait_fraction is not None]
    if len(waits) >= 2:
        first, last = waits[0], waits[-1]
        f0, f1 = first.data_wait_fraction or 0.0, last.data_wait_fraction or 0.0
        peak = max(waits, key=lambda p: p.data_wait_fraction or 0.0)
        if f1 - f0 >= 0.05 and f1 >= 1.5 * f0:
            causes.append(
                f"waiting for data grows with batch size: {f0:.0%} of the step time at "
                f"b={first.batch_size}, {f1:.0%} at b={last.batch_size}; the input pipeline, "
                "not the model, slows large batches (try more --workers or faster storage)"
            )
        elif (peak.data_wait_fraction or 0.0) >= 0.25:
            causes.append(
                f"waiting for data takes {peak.data_wait_fraction:.0%} of the step time at "
                f"b={peak.batch_size}: the input pipeline limits the speed (try more --workers)"
            )
    if any(t.drop_last for t in trials if t.ok):
        epochs = [p for p in points if p.samples_per_epoch is not None]
        if len({p.samples_per_epoch for p in epochs}) > 1:
            most = max(epochs, key=lambda p: p.samples_per_epoch or 0)
            least = min(epochs, key=lambda p: p.samples_per_epoch or 0)
            assert most.samples_per_epoch is not None and least.samples_per_epoch is not None
            lost = most.samples_per_epoch - least.samples_per_epoch
            causes.append(
                f"drop_last leaves out the last partial batch: an epoch holds "
                f"{most.samples_per_epoch} samples at b={most.batch_size} but "
                f"{least.samples_per_epoch} at b={least.batch_size} ({lost} fewer, "
                f"{lost / most.samples_per_epoch:.0%}); per-epoch times shrink for that reason "
                "alone, so compare per sample"
            )
    if memory_limit_bytes:
        close = [
            p
            for p in points
            if p.peak_memory_bytes is not None
            and p.peak_memory_bytes >= NEAR_LIMIT * memory_limit_bytes
        ]
        if close:
            p = min(close, key=lambda p: p.batch_size)
            assert p.peak_memory_bytes is not None
            causes.append(
                f"peak memory at b={p.batch_size} is {format_bytes(p.peak_memory_bytes)}, "
                f"{p.peak_memory_bytes / memory_limit_bytes:.0%} of --memory-limit "
                f"{format_bytes(memory_limit_bytes)}: larger batches are near what fits"
            )
    by_status: dict[str, list[int]] = {}
    for b, status in sorted(failed.items()):
        by_status.setdefault(status, []).append(b)
    ok_sizes = [p.batch_size for p in points]
    for status, sizes in by_status.items():
        names = ", ".join(f"b={b}" for b in sizes)
        if status == "oom":
            larger = ok_sizes and min(sizes) > max(ok_sizes)
            where = ", every size above the largest that ran" if larger else ""
            causes.append(f"{names} ran out of memory (oom){where}")
        elif status == NO_STEP_TIMES:
            for b in sizes:
                epoch = next(
                    (t.samples_per_epoch for t in trials if t.batch_size == b and t.ok), None
                )
                held = f" (an epoch holds {epoch} samples)" if epoch is not None else ""
                causes.append(
                    f"b={b} ran, but no step had a full batch of {b}{held}: it has no step "
                    "times, only the protocol's time; use more data or --steps for them"
                )
        else:
            errors = [
                t.error for t in trials if t.batch_size in sizes and t.status == status and t.error
            ]
            detail = f": {errors[0]}" if errors else ""
            causes.append(f"{names} ended with status {status!r}{detail}")
    return causes


# ---------------------------------------------------------------- per device


def analyse_device(run: RunResult, device: str) -> DeviceAnalysis:
    trials = [t for t in run.trials if t.device == device]
    points, failed = device_points(run, device)
    limit_raw = run.settings.get("memory_limit_bytes")
    limit = int(limit_raw) if limit_raw else None
    findings: list[Finding] = []
    for t in sorted(trials, key=lambda t: (t.batch_size, t.repeat)):
        findings += step_findings(t)
    for p in points:
        good = [t for t in trials if t.batch_size == p.batch_size and t.ok and t.step_time_s]
        findings += repeat_findings(merge_repeats(good))
    # one line per kind of problem, so a noisy machine does not bury the table in warnings
    warnings = group_findings(findings)
    for p in points:
        if p.failed_repeats:
            what = ", ".join(f"{n} {status}" for status, n in p.failed_repeats.items())
            warnings.append(
                f"{device}, batch size {p.batch_size}: {what} among its repeats; the figures "
                f"use the {p.n_trials} that finished"
            )
    time_fit = throughput_fit = None
    u_shape = None
    if len(points) >= MIN_POINTS_TO_FIT:
        bs = [p.batch_size for p in points]
        tps = [p.time_per_sample_s for p in points]
        spreads = [p.time_per_sample_spread_s for p in points]
        time_fit = fit_time_model(bs, tps, spreads)
        u_shape = time_fit.u_shape or detect_u_shape(bs, tps, spreads)
        xs = [p.samples_per_s for p in points]
        x_spreads = [max(p.samples_per_s_high - p.samples_per_s_low, 0.0) for p in points]
        x_spreads = [s if math.isfinite(s) else 0.0 for s in x_spreads]
        throughput_fit = fit_throughput_model(bs, xs, x_spreads)
    else:
        n = len(points)
        warnings.append(
            f"{device}: {n} batch size{'s' if n != 1 else ''} ran successfully; the curve "
            f"fits need at least {MIN_POINTS_TO_FIT} (T(b) = c/b^α + T_min has 3 parameters)"
        )
    memory_fit = _memory_fit(points)
    recommendation = recommend(points, failed, memory_limit_bytes=limit, memory_fit=memory_fit)
    soonest = soonest_to_target(trials)
    if soonest is not None:
        recommendation.reaches_target_soonest = Choice(soonest.batch_size, soonest.reason)
    return DeviceAnalysis(
        device=device,
        points=points,
        failed=failed,
        time_fit=time_fit,
        throughput_fit=throughput_fit,
        memory_fit=memory_fit,
        memory_limit_bytes=limit,
        u_shape=u_shape,
        causes=measured_causes(points, failed, trials, limit),
        recommendation=recommendation,
        warnings=warnings,
        quality=quality(trials),
    )


# ---------------------------------------------------------------- across devices


def _oriented(a: str, pa: Point, b: str, pb: Point, batch_size: int | None) -> Speedup:
    """``a`` is the base device: whichever is faster becomes ``fast``."""
    am, asd = pa.time_per_sample_mean_s, pa.time_per_sample_stdev_s
    bm, bsd = pb.time_per_sample_mean_s, pb.time_per_sample_stdev_s
    ratio, err = speedup(am, asd, bm, bsd)
    if ratio >= 1:
        return Speedup(b, a, batch_size, ratio, err, pb.batch_size, pa.batch_size)
    ratio, err = speedup(bm, bsd, am, asd)
    return Speedup(a, b, batch_size, ratio, err, pa.batch_size, pb.batch_size)


def per_batch_speedups(devices: list[DeviceAnalysis]) -> list[Speedup]:
    """Per batch size, every other device against the first (as ``device_speedups``),
    from the time per sample's pooled mean and stdev over all repeats."""
    if len(devices) < 2:
        return []
    base = devices[0]
    out = []
    for other in devices[1:]:
        for p in other.points:
            q = base.point(p.batch_size)
            if q is not None:
                out.append(_oriented(base.device, q, other.device, p, p.batch_size))
    return out


def best_vs_best(devices: list[DeviceAnalysis]) -> list[Speedup]:
    """Each other device's best time per sample against the first device's best.

    The seeds compute their speedups this way: 425.7 s / 9.3 s = 45.77 (seed 000),
    71.60 s / 7.18 s = 9.97 (seed 003). ``batch_size`` is None; ``fast_batch_size`` and
    ``slow_batch_size`` say which batch size was best on each.
    """
    if len(devices) < 2:
        return []
    base = devices[0]
    base_best = base.best_point()
    if base_best is None:
        return []
    out = []
    for other in devices[1:]:
        best = other.best_point()
        if best is not None:
            out.append(_oriented(base.device, base_best, other.device, best, None))
    return out


def analyse_run(run: RunResult) -> RunAnalysis:
    """Everything a report says about ``run``, computed once.

    Variant trials form series of their own ("cpu bf16", see
    :func:`batchscope.engine.variants.series_view`), analysed like devices.
    """
    from batchscope.engine.variants import series_view

    run = series_view(run)
    devices = [analyse_device(run, d) for d in run.devices]
    return RunAnalysis(
        devices=devices,
        speedups=per_batch_speedups(devices),
        best_vs_best=best_vs_best(devices),
    )


# ---------------------------------------------------------------- wording for reports


def summary_lines(d: DeviceAnalysis) -> list[str]:
    """The compact lines printed under a device's table: recommendation, fits, causes."""
    lines = d.recommendation.lines()
    if d.time_fit is not None:
        lines.append(describe_fit(d.time_fit))
    if d.throughput_fit is not None:
        lines.append(describe_fit(d.throughput_fit))
    if d.u_shape is not None and (d.u_shape.present or d.u_shape.rise > 0):
        lines.append(f"shape: {d.u_shape.message}")
    mf = d.memory_fit
    if mf is not None:
        lines.append(
            f"memory: peak ≈ {format_bytes(mf.a_bytes)} + {format_bytes(mf.m_bytes_per_sample)}"
            f" × b (R² {mf.r2:.3g}, {mf.n} points)"
        )
    lines += [f"cause: {c}" for c in d.causes]
    return lines


def speedup_text(s: Speedup) -> str:
    """hyperfine's phrasing, for per-batch and best-vs-best speedups alike."""
    text = f"{s.fast} ran {s.ratio:.3g} ± {s.error:.2g} times faster than {s.slow}"
    if s.batch_size is not None:
        return text + f" at batch size {s.batch_size} (per sample)"
    return (
        text + f", best against best (b={s.fast_batch_size} vs b={s.slow_batch_size}, per sample)"
    )
