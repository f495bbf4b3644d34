"""Derived figures: relative performance and speedups with propagated uncertainty.

Analysis reads results; it never runs training.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from batchscope.core.results import RunResult, StepStats, TrialResult


@dataclass(frozen=True)
class Speedup:
    """``fast`` ran ``ratio ± error`` times faster than ``slow`` (hyperfine's formula)."""

    fast: str
    slow: str
    batch_size: int | None
    ratio: float
    error: float
    #: the batch size each side ran at (they differ for a best-vs-best comparison)
    fast_batch_size: int | None = None
    slow_batch_size: int | None = None


def speedup(
    slow_mean: float, slow_stdev: float, fast_mean: float, fast_stdev: float
) -> tuple[float, float]:
    """Ratio of means and its error by first-order propagation of relative errors."""
    ratio = slow_mean / fast_mean
    error = ratio * math.sqrt((slow_stdev / slow_mean) ** 2 + (fast_stdev / fast_mean) ** 2)
    return ratio, error


def ok_trials(run: RunResult, device: str) -> list[TrialResult]:
    return [t for t in run.trials if t.device == device and t.ok and t.step_time_s is not None]


def best_throughput(trials: list[TrialResult]) -> float | None:
    values = [t.samples_per_s for t in trials if t.samples_per_s]
    return max(values) if values else None


def relative_performance(trial: TrialResult, best: float | None) -> float | None:
    """Throughput as a fraction of the device's best (seed 003's 'Relative Performance')."""
    if not best or not trial.samples_per_s:
        return None
    return trial.samples_per_s / best


def per_sample(trial: TrialResult) -> tuple[float, float]:
    """Mean and stdev of the time per sample, so different batch sizes compare fairly."""
    assert trial.step_time_s is not None
    return trial.step_time_s.mean / trial.batch_size, trial.step_time_s.stdev / trial.batch_size


def merge_repeats(run: RunResult) -> RunResult:
    """One trial per (device, batch size), the ok repeats' raw step times pooled.

    Comparisons (speedups, ``compare``) then rest on every measured step, not on
    repeat 0 alone. A size with no ok repeat keeps its first trial (its status);
    repeats without raw step times (old results) keep the first ok one.
    """
    groups: dict[tuple[str, int], list[TrialResult]] = {}
    for t in run.trials:
        groups.setdefault((t.device, t.batch_size), []).append(t)
    merged: list[TrialResult] = []
    for trials in groups.values():
        good = [t for t in trials if t.ok and t.step_time_s is not None]
        if len(good) < 2 or not all(t.step_times_s for t in good):
            merged.append(good[0] if good else trials[0])
            continue
        pooled = [x for t in good for x in t.step_times_s]
        stats = StepStats.from_samples(pooled)
        merged.append(
            dataclasses.replace(
                good[0],
                repeat=0,
                step_times_s=pooled,
                step_time_s=stats,
                measured_steps=len(pooled),
                samples_per_s=good[0].batch_size / stats.median,
                notes=[*good[0].notes, f"{len(good)} repeats pooled ({len(pooled)} steps)"],
            )
        )
    return dataclasses.replace(run, trials=merged)


def device_speedups(run: RunResult) -> list[Speedup]:
    """Per batch size, every other device against the first device (usually the CPU).

    Repeats are pooled (:func:`merge_repeats`) and variants compare as series of
    their own (``cpu bf16`` against ``cpu``).
    """
    from batchscope.engine.variants import series_view

    run = merge_repeats(series_view(run))
    devices = run.devices
    if len(devices) < 2:
        return []
    base = devices[0]
    out: list[Speedup] = []
    base_by_bs = {t.batch_size: t for t in ok_trials(run, base)}
    for other in devices[1:]:
        for t in ok_trials(run, other):
            if t.batch_size not in base_by_bs:
                continue
            slow, fast = base_by_bs[t.batch_size], t
            sm, ss = per_sample(slow)
            fm, fs = per_sample(fast)
            ratio, err = speedup(sm, ss, fm, fs)
            if ratio >= 1:
                out.append(Speedup(other, base, t.batch_size, ratio, err))
            else:
                ratio, err = speedup(fm, fs, sm, ss)
                out.append(Speedup(base, other, t.batch_size, ratio, err))
    return out
