"""Derived figures: relative performance and speedups with propagated uncertainty.

Analysis reads results; it never runs training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .results import RunResult, TrialResult


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


def device_speedups(run: RunResult) -> list[Speedup]:
    """Per batch size, every other device against the first device (usually the CPU)."""
    from .variants import series_view

    run = series_view(run)  # variants compare as series of their own ("cpu bf16")
    devices = run.devices
    if len(devices) < 2:
        return []
    base = devices[0]
    out: list[Speedup] = []
    base_by_bs = {t.batch_size: t for t in ok_trials(run, base) if t.repeat == 0}
    for other in devices[1:]:
        for t in ok_trials(run, other):
            if t.repeat != 0 or t.batch_size not in base_by_bs:
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
