"""Explain the curve: a run's measurements turned into verdicts, fits, causes, a recommendation.

:func:`analyse_run` reads a :class:`~batchscope.core.results.RunResult` (it never runs
training) and returns a :class:`RunAnalysis`: per series (a device, or a device with a
variant), the points with their intervals (:mod:`.points`), the ranking — fastest, tied,
within 5 % (:mod:`.ranking`) — the U-shape verdict (:mod:`.ushape`), the fits
(:mod:`.curves`), the memory model, the measured causes in words, a
:class:`Recommendation` whose every choice carries a one-line reason, and warnings;
across series, the speedups per batch size and best against best (:mod:`.speedup`).

Every table, plot, report and the JSON ``analysis`` object read their figures from
here: each figure is computed once. Nothing here prints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchscope.analyse.curves import CurveFit, fit_throughput_model, fit_time_model
from batchscope.analyse.points import NO_STEP_TIMES, Drift, Point, series_points
from batchscope.analyse.ranking import NEAR_BEST, NearBest, Ranking, rank, smallest_near_best
from batchscope.analyse.speedup import Side, Speedup, compare
from batchscope.analyse.stats import Finding, group_findings, step_findings
from batchscope.analyse.ushape import UShape, u_shape_test
from batchscope.core.results import RunResult, TrialResult
from batchscope.core.target import Quality, quality, soonest_to_target
from batchscope.units import format_bytes, format_seconds

if TYPE_CHECKING:
    from batchscope.analyse.memory_model import MemoryFit

__all__ = [
    "NEAR_BEST",
    "NO_STEP_TIMES",
    "Choice",
    "DeviceAnalysis",
    "Recommendation",
    "RunAnalysis",
    "analyse_device",
    "analyse_run",
    "device_points",
]

#: a peak at or above this fraction of --memory-limit is "near" it
NEAR_LIMIT = 0.80
#: the fits need this many batch sizes with intervals (3 parameters)
MIN_POINTS_TO_FIT = 3
#: a point known less precisely than this (half its 95 % interval) gets a warning
IMPRECISE = 0.05


@dataclass
class Choice:
    """A recommended batch size and its one-line reason."""

    batch_size: int
    reason: str


@dataclass
class Recommendation:
    best_throughput: Choice | None
    largest_that_fits: Choice | None
    smallest_near_best: Choice | None  # smallest batch confirmed within 5 % of the best
    #: with --target: the smallest median time-to-target (target.soonest_to_target)
    reaches_target_soonest: Choice | None = None
    #: the one batch size to use, and why
    recommended: Choice | None = None

    def lines(self) -> list[str]:
        """'fastest: b=64: …', one per choice made, the recommendation first."""
        out = []
        for label, choice in (
            ("use", self.recommended),
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
    """One series ("cpu", "cuda:0", "cpu bf16"): its points and every verdict on them."""

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
    warnings: list[str]  # imprecise points, outliers, warm-up too short, with hints
    #: the validation metric per batch size over training (--epochs runs), for the report
    quality: Quality | None = None
    ranking: Ranking = field(default_factory=lambda: Ranking(None))
    near_best: NearBest | None = None
    drift: Drift = field(default_factory=Drift)
    #: caveats about what the intervals include (e.g. one round: no run-to-run variation)
    notes: list[str] = field(default_factory=list)
    #: failed batch size -> the first failing trial's error line
    errors: dict[int, str] = field(default_factory=dict)

    def point(self, batch_size: int) -> Point | None:
        return next((p for p in self.points if p.batch_size == batch_size), None)

    def best_point(self) -> Point | None:
        """The fastest judged point, else the point with the highest measured throughput."""
        if self.ranking.fastest is not None:
            return self.ranking.fastest
        return max(self.points, key=lambda p: p.samples_per_s, default=None)

    def relative(self, batch_size: int) -> float | None:
        """A point's throughput as a fraction of the best point's (the table's figure)."""
        best, p = self.best_point(), self.point(batch_size)
        if best is None or p is None or best.samples_per_s <= 0:
            return None
        return p.samples_per_s / best.samples_per_s

    def verdicts(self) -> dict[str, Any]:
        """The machine-readable verdicts: the JSON ``analysis`` object of this series."""
        best = self.ranking.fastest
        rec = self.recommendation
        fastest: dict[str, Any] | None = None
        if best is not None:
            fastest = {
                "batch_size": best.batch_size,
                "samples_per_s": {
                    "value": best.samples_per_s,
                    "low": best.samples_per_s_low,
                    "high": best.samples_per_s_high,
                },
                "tied_with": list(self.ranking.tied_with),
                "reason": rec.best_throughput.reason if rec.best_throughput else None,
            }
        return _jsonable(
            {
                "fastest": fastest,
                "recommendation": (
                    {"batch_size": rec.recommended.batch_size, "reason": rec.recommended.reason}
                    if rec.recommended
                    else None
                ),
                "choices": {
                    k: {"batch_size": v.batch_size, "reason": v.reason} if v is not None else None
                    for k, v in (
                        ("fastest", rec.best_throughput),
                        ("largest_that_fits", rec.largest_that_fits),
                        ("smallest_near_best", rec.smallest_near_best),
                        ("reaches_target_soonest", rec.reaches_target_soonest),
                    )
                },
                "relative": [r.to_dict() for r in self.ranking.ratios],
                "not_judged": {str(b): why for b, why in self.ranking.not_judged.items()},
                "u_shape": (
                    self.u_shape.to_dict()
                    if self.u_shape
                    else {"verdict": "not_judged", "reason": "fewer than 3 batch sizes ran"}
                ),
                "fits": {
                    "time_per_sample": self.time_fit.to_dict() if self.time_fit else None,
                    "throughput": self.throughput_fit.to_dict() if self.throughput_fit else None,
                },
                "memory_model": _memory_dict(self.memory_fit),
                "run_to_run_variation": self.drift.to_dict(),
                "points": [p.to_dict() for p in self.points],
                "failed": {
                    str(k): {"status": v, "error": self.errors.get(k) or None}
                    for k, v in self.failed.items()
                },
                "causes": list(self.causes),
                "warnings": list(self.warnings),
                "notes": list(self.notes),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, **self.verdicts()}


def _memory_dict(mf: MemoryFit | None) -> dict[str, Any] | None:
    if mf is None:
        return None
    return mf.to_dict() if hasattr(mf, "to_dict") else None


@dataclass
class RunAnalysis:
    devices: list[DeviceAnalysis]
    speedups: list[Speedup]  # per batch size
    best_vs_best: list[Speedup]  # best throughput vs best throughput (batch_size None)

    def device(self, name: str) -> DeviceAnalysis | None:
        return next((d for d in self.devices if d.device == name), None)

    def verdicts(self) -> dict[str, Any]:
        """``{"cpu": {...}, "cuda:0": {...}}``: the results JSON's ``analysis`` object."""
        return {d.device: d.verdicts() for d in self.devices}

    def to_dict(self) -> dict[str, Any]:
        return {
            "devices": [d.to_dict() for d in self.devices],
            "speedups": [_jsonable(s.to_dict()) for s in self.speedups],
            "best_vs_best": [_jsonable(s.to_dict()) for s in self.best_vs_best],
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
    """The points of ``device`` (ascending batch size) and its failed batch sizes."""
    points, failed, _ = series_points([t for t in run.trials if t.device == device])
    return points, failed


# ---------------------------------------------------------------- memory


def _memory_fit(points: list[Point]) -> MemoryFit | None:
    """The memory model through the points' peaks, or None (< 2 sizes)."""
    from batchscope.analyse.memory_model import fit_memory_model

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
    from batchscope.analyse.memory_model import predict_max_batch

    try:
        return predict_max_batch(fit, float(limit))
    except ValueError:
        return None


# ---------------------------------------------------------------- recommendation


def _fmt_rate(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.3g}"


def _sizes(sizes: Sequence[int]) -> str:
    return ", ".join(f"b={b}" for b in sizes)


def _fastest_choice(ranking: Ranking, points: list[Point]) -> Choice | None:
    best = ranking.fastest
    if best is None:
        top = max(points, key=lambda p: p.samples_per_s, default=None)
        if top is None:
            return None
        return Choice(
            top.batch_size,
            f"the highest measured throughput, {_fmt_rate(top.samples_per_s)} samples/s, but not "
            f"judged: {top.not_judged_reason or 'no interval'}",
        )
    reason = (
        f"highest throughput, {_fmt_rate(best.samples_per_s)} samples/s "
        f"[{_fmt_rate(best.samples_per_s_low)}–{_fmt_rate(best.samples_per_s_high)}], "
        f"{format_seconds(best.time_per_sample_s)} per sample"
    )
    if ranking.tied_with:
        reason += (
            f"; tied with {_sizes(ranking.tied_with)} (cannot be told apart at the 95 % level)"
        )
    else:
        others = [r for r in ranking.ratios if r.batch_size != best.batch_size]
        if others:
            reason += "; faster than every other size beyond the noise"
    faster_unjudged = [
        p.batch_size for p in points if not p.judged and p.samples_per_s > best.samples_per_s
    ]
    if faster_unjudged:
        reason += (
            f" ({_sizes(faster_unjudged)} measured faster but "
            f"{'is' if len(faster_unjudged) == 1 else 'are'} not judged: too few steps)"
        )
    return Choice(best.batch_size, reason)


def _near_choice(near: NearBest, ranking: Ranking, points: list[Point]) -> Choice | None:
    best = ranking.fastest
    if best is None or near.batch_size is None:
        return None
    undetermined = ""
    if near.undetermined:
        parts = []
        for b in near.undetermined:
            r = ranking.ratio(b)
            if r is not None:
                parts.append(f"b={b} at {r.value:.0%} [{r.low:.0%}–{r.high:.0%}]")
        undetermined = (
            f"; not determined for {', '.join(parts)}: the data cannot place "
            f"{'it' if len(parts) == 1 else 'them'} either side of {NEAR_BEST:.0%}"
        )
    if near.status == "fastest":
        return Choice(
            best.batch_size,
            f"the fastest itself: no smaller batch size is confirmed within "
            f"{1 - NEAR_BEST:.0%} of it" + undetermined,
        )
    small = next(p for p in points if p.batch_size == near.batch_size)
    r = near.ratio
    assert r is not None
    text = (
        f"{r.value:.1%} [{r.low:.1%}–{r.high:.1%}] of the fastest's throughput "
        f"(b={best.batch_size})"
    )
    if small.peak_memory_bytes is not None and best.peak_memory_bytes:
        saved = best.peak_memory_bytes - small.peak_memory_bytes
        if saved > 0:
            text += (
                f" with {saved / best.peak_memory_bytes:.0%} less peak memory "
                f"({format_bytes(small.peak_memory_bytes)} vs "
                f"{format_bytes(best.peak_memory_bytes)})"
            )
    return Choice(near.batch_size, text + undetermined)


def _recommended(
    ranking: Ranking,
    near: NearBest,
    fits: Choice | None,
    soonest: Choice | None,
    points: list[Point],
) -> Choice | None:
    """One batch size to use: the smallest that is as fast as the fastest within the noise."""
    if soonest is not None:
        return Choice(soonest.batch_size, f"it reached the target soonest ({soonest.reason})")
    if ranking.fastest is None:
        return None
    candidates = set(ranking.fastest_set)
    if near.status == "confirmed" and near.batch_size is not None:
        candidates.add(near.batch_size)
    limit = fits.batch_size if fits is not None else None
    usable = sorted(b for b in candidates if limit is None or b <= limit)
    if not usable:
        return None
    b = usable[0]
    if (
        b == ranking.fastest.batch_size
        and len(ranking.fastest_set) == 1
        and near.status != "confirmed"
    ):
        return Choice(b, "the fastest, beyond the noise")
    others = [x for x in sorted(candidates) if x != b]
    why = (
        "the smallest batch size as fast as the fastest within the noise"
        if b in ranking.fastest_set
        else f"the smallest batch size confirmed within {1 - NEAR_BEST:.0%} of the fastest"
    )
    return Choice(b, f"{why} ({_sizes(others)} no faster beyond it); it needs the least memory")


def recommend(
    points: list[Point],
    failed: dict[int, str],
    ranking: Ranking,
    near: NearBest,
    *,
    memory_limit_bytes: int | None = None,
    memory_fit: MemoryFit | None = None,
) -> Recommendation:
    """Pick the fastest, the largest that fits (when known), the smallest near the best."""
    fits = _largest_that_fits(points, failed, memory_limit_bytes, memory_fit)
    return Recommendation(
        best_throughput=_fastest_choice(ranking, points),
        largest_that_fits=fits,
        smallest_near_best=_near_choice(near, ranking, points),
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
        if memory_fit is not None and getattr(memory_fit, "can_predict", True):
            predicted = _predicted_max_batch(memory_fit, limit)
            if predicted is not None and predicted > 0:
                return Choice(
                    predicted,
                    f"predicted by the memory fit ({format_bytes(memory_fit.a_bytes)} + "
                    f"{format_bytes(memory_fit.m_bytes_per_sample)} × b, R² "
                    f"{memory_fit.r2:.3g}) to stay under --memory-limit {format_bytes(limit)}; "
                    "not measured, run it to be sure",
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


# ---------------------------------------------------------------- per series


def _precision_warnings(device: str, points: list[Point], drift: Drift) -> list[str]:
    """Points known less precisely than ±5 %, and a machine that varied between rounds."""
    out = []
    loose = [
        p for p in points if p.relative_half_width is not None and p.relative_half_width > IMPRECISE
    ]
    if loose:
        where = ", ".join(
            f"±{p.relative_half_width:.0%} at b={p.batch_size} (n={p.n_steps})" for p in loose
        )
        out.append(
            f"{device}: imprecise medians: {where}; verdicts near them may come out tied: "
            "give each trial more time (--max-time), more rounds (--repeats), or a quieter machine"
        )
    if drift.known and drift.tau > IMPRECISE / 2:
        out.append(
            f"{device}: the machine varied from round to round by about "
            f"±{math.expm1(drift.tau):.0%} beyond the step noise (one standard deviation of a "
            f"trial's median: ±{math.expm1(drift.shared):.0%} shared by a whole round, "
            f"±{math.expm1(drift.own):.0%} each trial's own); every interval includes it"
        )
    return out


def _fits(
    points: list[Point], notes: list[str]
) -> tuple[CurveFit | None, CurveFit | None, list[Point]]:
    judged = [p for p in points if p.judged]
    use = judged if len(judged) >= MIN_POINTS_TO_FIT else []
    if not use and len(points) >= MIN_POINTS_TO_FIT and not judged:
        use = points  # no intervals at all: fitted, but not judged against noise
    if len(use) < MIN_POINTS_TO_FIT:
        return None, None, use
    left_out = [p.batch_size for p in points if p not in use]
    if left_out:
        notes.append(f"the fits leave out {_sizes(left_out)}: no 95 % interval to weight them by")
    bs = [p.batch_size for p in use]
    weighted = all(p.log_se_relative is not None for p in use)
    tps = [p.time_per_sample_s for p in use]
    t_se = [p.time_per_sample_s * (p.log_se_relative or 0.0) for p in use] if weighted else None
    xs = [p.samples_per_s for p in use]
    x_se = [p.samples_per_s * (p.log_se_relative or 0.0) for p in use] if weighted else None
    return fit_time_model(bs, tps, t_se), fit_throughput_model(bs, xs, x_se), use


def analyse_device(run: RunResult, device: str) -> DeviceAnalysis:
    trials = [t for t in run.trials if t.device == device]
    points, failed, drift = series_points(trials)
    limit_raw = run.settings.get("memory_limit_bytes")
    limit = int(limit_raw) if limit_raw else None
    findings: list[Finding] = []
    for t in sorted(trials, key=lambda t: (t.batch_size, t.repeat)):
        findings += [f for f in step_findings(t) if f.kind in ("warmup", "outliers")]
    warnings = group_findings(findings) + _precision_warnings(device, points, drift)
    stopped = [t for t in trials if t.ok and t.stopped_by == "time_limit"]
    if stopped:
        where = ", ".join(
            f"b={t.batch_size}" + (f" (±{t.precision_reached:.1%})" if t.precision_reached else "")
            for t in sorted(stopped, key=lambda t: (t.batch_size, t.repeat))
        )
        warnings.append(f"{device}: stopped at --max-time before reaching --max-error: {where}")
    for p in points:
        if p.failed_repeats:
            what = ", ".join(f"{n} {status}" for status, n in p.failed_repeats.items())
            warnings.append(
                f"{device}, batch size {p.batch_size}: {what} among its repeats; the figures "
                f"use the {p.n_trials} that finished"
            )
    notes: list[str] = []
    if points and not drift.known:
        notes.append(
            "one round: the intervals hold each trial's own noise but not the machine's "
            "run-to-run variation; --repeats 3 (or auto) would measure it"
        )
    ranking = rank(points)
    near = smallest_near_best(ranking)
    time_fit, throughput_fit, used = _fits(points, notes)
    u_shape = None
    if len(points) >= 2:
        u_shape = u_shape_test(
            [p.batch_size for p in points],
            [math.log(p.time_per_sample_s) for p in points],
            [p.log_se_relative for p in points],
            not_judged_reasons=[p.not_judged_reason for p in points if p.not_judged_reason],
        )
    if len(points) < MIN_POINTS_TO_FIT:
        n = len(points)
        warnings.append(
            f"{device}: {n} batch size{'s' if n != 1 else ''} ran successfully; the curve "
            f"fits need at least {MIN_POINTS_TO_FIT} (T(b) = c/b^α + T_min has 3 parameters)"
        )
    memory_fit = _memory_fit(points)
    recommendation = recommend(
        points, failed, ranking, near, memory_limit_bytes=limit, memory_fit=memory_fit
    )
    soonest = soonest_to_target(trials)
    if soonest is not None:
        recommendation.reaches_target_soonest = Choice(soonest.batch_size, soonest.reason)
    recommendation.recommended = _recommended(
        ranking,
        near,
        recommendation.largest_that_fits if failed else None,
        recommendation.reaches_target_soonest,
        points,
    )
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
        ranking=ranking,
        near_best=near,
        drift=drift,
        notes=notes,
        errors={
            b: next((t.error for t in trials if t.batch_size == b and not t.ok and t.error), "")
            for b in failed
        },
    )


# ---------------------------------------------------------------- across series


def side(run: RunResult, d: DeviceAnalysis, p: Point, name: str | None = None) -> Side:
    """One side of a speedup: a point of ``d`` with its raw per-sample step times."""
    per_sample = [
        x / p.batch_size
        for t in run.trials
        if t.device == d.device and t.batch_size == p.batch_size and t.ok
        for x in t.step_times_s
    ]
    return Side(name or d.device, p, per_sample, d.drift)


def per_batch_speedups(run: RunResult, devices: list[DeviceAnalysis]) -> list[Speedup]:
    """Per batch size, every other series against the first (usually the CPU)."""
    if len(devices) < 2:
        return []
    base = devices[0]
    out = []
    for other in devices[1:]:
        for p in other.points:
            q = base.point(p.batch_size)
            if q is not None:
                out.append(compare(side(run, base, q), side(run, other, p), p.batch_size))
    return out


def best_vs_best(run: RunResult, devices: list[DeviceAnalysis]) -> list[Speedup]:
    """Each other series' best time per sample against the first series' best.

    The seeds compute their speedups this way: 425.7 s / 9.3 s = 45.77 (seed 000),
    71.60 s / 7.18 s = 9.97 (seed 003).
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
            out.append(compare(side(run, base, base_best), side(run, other, best), None))
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
        speedups=per_batch_speedups(run, devices),
        best_vs_best=best_vs_best(run, devices),
    )
