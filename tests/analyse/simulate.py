"""Seeded simulated sweeps for the verdicts' error rates (no torch, no timing).

A simulated round of one batch size draws ``n`` step times
``μ_b · exp(τ·g + ω·h) · exp(σ·ε)``: ``μ_b`` the true median step, ``g`` one draw
per round shared by every batch size (the machine's drift), ``h`` one draw per
trial (its own variation), ``ε`` one draw per step (lognormal step noise),
optionally with a share of outliers three times slower. The trials go
through the same code as measured ones (:func:`batchscope.analyse.points.series_points`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from batchscope.core.results import StepStats, TrialResult


def simulated_trials(
    rng: np.random.Generator,
    batch_sizes: Sequence[int],
    time_per_sample: Sequence[float],
    steps: Sequence[int],
    *,
    noise: float,
    rounds: int = 1,
    drift: float = 0.0,
    own: float = 0.0,
    outliers: float = 0.0,
    device: str = "cpu",
) -> list[TrialResult]:
    """Trials of one series: ``rounds`` rounds of every batch size."""
    trials = []
    for r in range(rounds):
        shift = rng.normal(0.0, drift) if drift else 0.0
        for b, t, n in zip(batch_sizes, time_per_sample, steps, strict=True):
            mine = rng.normal(0.0, own) if own else 0.0
            x = t * b * np.exp(shift + mine + rng.normal(0.0, noise, n))
            if outliers:
                x = np.where(rng.random(n) < outliers, 3.0 * x, x)
            times = [float(v) for v in x]
            stats = StepStats.from_samples(times)
            trials.append(
                TrialResult(
                    device=device,
                    batch_size=int(b),
                    repeat=r,
                    step_times_s=times,
                    step_time_s=stats,
                    samples_per_s=b / stats.median,
                    samples_per_epoch=1000,
                )
            )
    return trials


def binomial_upper(rate: float, n: int, z: float = 2.326) -> float:
    """The largest observed rate consistent, one-sided at 99 %, with a true ``rate``."""
    return rate + z * float(np.sqrt(rate * (1 - rate) / n))


def binomial_lower(rate: float, n: int, z: float = 2.326) -> float:
    """The smallest observed rate consistent, one-sided at 99 %, with a true ``rate``."""
    return rate - z * float(np.sqrt(rate * (1 - rate) / n))
