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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchscope.analyse.causes import measured_causes
from batchscope.analyse.curves import CurveFit, fit_throughput_model, fit_time_model
from batchscope.analyse.efficiency import (
    EfficiencyVerdict,
    PointEfficiency,
    efficiency_verdict,
    series_efficiency,
)
from batchscope.analyse.points import NO_STEP_TIMES, Drift, Point, series_points
from batchscope.analyse.ranking import NEAR_BEST, NearBest, Ranking, rank, smallest_near_best
from batchscope.analyse.recommend import Choice, Recommendation, memory_fit, recommend, recommended
from batchscope.analyse.speedup import Side, Speedup, compare
from batchscope.analyse.stats import Finding, group_findings, step_findings
from batchscope.analyse.ushape import UShape, u_shape_test
from batchscope.core.results import RunResult, json_safe
from batchscope.core.target import Quality, quality, soonest_to_target

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

#: the fits need this many batch sizes with intervals (3 parameters)
MIN_POINTS_TO_FIT = 3
#: a point known less precisely than this (half its 95 % interval) gets a warning
IMPRECISE = 0.05


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
    #: per batch size with a FLOP count: achieved FLOP/s and MFU (analyse.efficiency)
    efficiency: list[PointEfficiency] = field(default_factory=list)
    #: the fastest size's MFU and whether the device is saturated beyond it
    efficiency_verdict: EfficiencyVerdict | None = None

    def point_efficiency(self, batch_size: int) -> PointEfficiency | None:
        return next((e for e in self.efficiency if e.batch_size == batch_size), None)

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
        return json_safe(
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
                "efficiency": {
                    "verdict": self.efficiency_verdict.to_dict()
                    if self.efficiency_verdict
                    else None,
                    "points": [e.to_dict() for e in self.efficiency],
                },
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
            "speedups": [json_safe(s.to_dict()) for s in self.speedups],
            "best_vs_best": [json_safe(s.to_dict()) for s in self.best_vs_best],
        }


# ---------------------------------------------------------------- points


def device_points(run: RunResult, device: str) -> tuple[list[Point], dict[int, str]]:
    """The points of ``device`` (ascending batch size) and its failed batch sizes."""
    points, failed, _ = series_points([t for t in run.trials if t.device == device])
    return points, failed


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
        sizes = ", ".join(f"b={b}" for b in left_out)
        notes.append(f"the fits leave out {sizes}: no 95 % interval to weight them by")
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
    mem_fit = memory_fit(points)
    recommendation = recommend(
        points, failed, ranking, near, memory_limit_bytes=limit, memory_fit=mem_fit
    )
    soonest = soonest_to_target(trials)
    if soonest is not None:
        recommendation.reaches_target_soonest = Choice(soonest.batch_size, soonest.reason)
    recommendation.recommended = recommended(
        ranking,
        near,
        recommendation.largest_that_fits if failed else None,
        recommendation.reaches_target_soonest,
        points,
    )
    if run.workload.get("framework") == "torch-loop":  # batchscope.measure: Python's names
        from batchscope.analyse.stats import for_python

        warnings = [for_python(w) for w in warnings]
        notes = [for_python(n) for n in notes]
    efficiency = series_efficiency(points, [t for t in trials if t.ok])
    return DeviceAnalysis(
        device=device,
        points=points,
        failed=failed,
        time_fit=time_fit,
        throughput_fit=throughput_fit,
        memory_fit=mem_fit,
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
        efficiency=efficiency,
        efficiency_verdict=efficiency_verdict(device, efficiency, ranking, points),
    )


# ---------------------------------------------------------------- across series


def side(run: RunResult, d: DeviceAnalysis, p: Point, name: str | None = None) -> Side:
    """One side of a speedup: a point of ``d`` with its raw per-sample step times (per
    token for a sequence workload's point)."""
    unit = p.tokens_per_step or p.batch_size
    per_sample = [
        x / unit
        for t in run.trials
        if t.device == d.device and t.batch_size == p.batch_size and t.ok
        for x in t.step_times_s
    ]
    return Side(
        name or d.device, p, per_sample, d.drift, "token" if p.tokens_per_step else "sample"
    )


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
    :func:`batchscope.core.series.series_view`), analysed like devices.
    """
    from batchscope.core.series import series_view

    run = series_view(run)
    devices = [analyse_device(run, d) for d in run.devices]
    return RunAnalysis(
        devices=devices,
        speedups=per_batch_speedups(run, devices),
        best_vs_best=best_vs_best(run, devices),
    )


# ---------------------------------------------------------------- two runs


@dataclass
class Comparison:
    """Run B against run A at one batch size of one pair of series (per sample)."""

    series_a: str
    series_b: str
    #: the batch size both ran (None: each at its best)
    batch_size: int | None
    #: time per sample of B ÷ that of A, with its 95 % interval (None: not determined)
    b_over_a: float
    low: float | None
    high: float | None

    @property
    def slower_beyond(self) -> float | None:
        """By how much B is slower than A at least (the interval's low end − 1), if it is."""
        return None if self.low is None or self.low <= 1.0 else self.low - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "series_a": self.series_a,
            "series_b": self.series_b,
            "batch_size": self.batch_size,
            "b_time_over_a": self.b_over_a,
            "low": self.low,
            "high": self.high,
            "b_faster": self.b_over_a < 1.0,
        }


def compare_runs(a: RunResult, b: RunResult) -> list[Comparison]:
    """B's time per sample over A's, per common batch size and best against best.

    Series are paired by name (``cpu`` with ``cpu``), else in order. The interval is the
    speedup's (a bootstrap of the ratio of medians, widened by each run's drift).
    """
    from batchscope.core.series import series_view

    a, b = series_view(a), series_view(b)
    ana_a, ana_b = analyse_run(a), analyse_run(b)
    names_a, names_b = [d.device for d in ana_a.devices], [d.device for d in ana_b.devices]
    common = [n for n in names_a if n in names_b]
    pairs = [(n, n) for n in common] or list(zip(names_a, names_b, strict=False))
    out = []
    for na, nb in pairs:
        sa, sb = ana_a.device(na), ana_b.device(nb)
        assert sa is not None and sb is not None
        todo: list[tuple[int | None, Point, Point]] = [
            (p.batch_size, p, q) for p in sa.points if (q := sb.point(p.batch_size)) is not None
        ]
        best_a, best_b = sa.best_point(), sb.best_point()
        if best_a is not None and best_b is not None:
            todo.append((None, best_a, best_b))
        for size, pa, pb in todo:
            s = compare(side(a, sa, pa, "A"), side(b, sb, pb, "B"), size)
            b_slower = s.fast == "A"  # ratio = slow ÷ fast time per sample
            ratio = s.ratio if b_slower else 1.0 / s.ratio
            low, high = (
                (s.low, s.high)
                if b_slower
                else (
                    None if s.high is None else 1.0 / s.high,
                    None if s.low is None else 1.0 / s.low,
                )
            )
            out.append(Comparison(na, nb, size, ratio, low, high))
    return out
