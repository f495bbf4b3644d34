"""The U-shape test's error rates, measured on seeded simulated sweeps.

False alarms: on curves without a U — flat, a fall then flat (the least favourable:
only the rising arm can be a false alarm), flat then a rise — at 5–20 % step noise,
with the demo's step layout (8/4/2/1), even layouts and mixed ones, with and without
rounds, the test says "U shape" in at most 5 % of runs (checked against the binomial
bound of 5 % at 99 %). Power: a true U that falls 30 % and rises 20 % is found in at
least 80 % of runs at 10 steps per size and 5–10 % noise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from analyse.simulate import binomial_upper, simulated_trials
from batchscope.analyse.points import series_points
from batchscope.analyse.ushape import u_shape_test

RUNS = 400


def u_rate(curve, steps, *, noise, rounds=1, drift=0.0, outliers=0.0, seed=0) -> float:
    rng = np.random.default_rng(seed)
    sizes = [16 * 2**i for i in range(len(curve))]
    hits = 0
    for _ in range(RUNS):
        trials = simulated_trials(
            rng, sizes, curve, steps, noise=noise, rounds=rounds, drift=drift, outliers=outliers
        )
        points, _, _ = series_points(trials)
        u = u_shape_test(
            [p.batch_size for p in points],
            [math.log(p.time_per_sample_s) for p in points],
            [p.log_se for p in points],
        )
        hits += u.verdict == "u"
    return hits / RUNS


def flat(k: int) -> list[float]:
    return [1e-3] * k


def fall_then_flat(k: int) -> list[float]:
    return [2e-3] + [1e-3] * (k - 1)


def flat_then_rise(k: int) -> list[float]:
    return [1e-3] * (k - 1) + [2e-3]


LIMIT = binomial_upper(0.05, RUNS)


@pytest.mark.parametrize("noise", [0.05, 0.10, 0.20])
@pytest.mark.parametrize(
    "steps",
    [(8, 4, 2, 1), (10, 10, 10, 10), (10, 10, 10, 10, 10), (40, 20, 10, 6, 6)],
    ids=["demo", "4x10", "5x10", "mixed"],
)
def test_flat_curves_are_rarely_called_u_shaped(noise: float, steps: tuple[int, ...]) -> None:
    rate = u_rate(flat(len(steps)), steps, noise=noise, seed=len(steps) + int(noise * 100))
    assert rate <= LIMIT, f"false U on a flat curve in {rate:.1%} of runs"


@pytest.mark.parametrize("shape", [fall_then_flat, flat_then_rise], ids=["fall-flat", "flat-rise"])
@pytest.mark.parametrize("noise", [0.05, 0.20])
def test_monotone_curves_are_rarely_called_u_shaped(shape, noise: float) -> None:
    steps = (10, 10, 10, 10, 10)
    rate = u_rate(shape(5), steps, noise=noise, seed=7 + int(noise * 100))
    assert rate <= LIMIT, f"false U on a monotone curve in {rate:.1%} of runs"


def test_rounds_with_drift_keep_the_false_alarm_rate() -> None:
    """Two rounds with 5 % run-to-run drift: the drift enters the intervals."""
    rate = u_rate(fall_then_flat(4), (10, 10, 10, 10), noise=0.10, rounds=2, drift=0.05, seed=3)
    assert rate <= LIMIT, f"false U with drift in {rate:.1%} of runs"


def test_outliers_do_not_make_a_u() -> None:
    rate = u_rate(flat(5), (20,) * 5, noise=0.10, outliers=0.05, seed=11)
    assert rate <= LIMIT


def test_the_demo_layout_is_not_judged_on_one_step() -> None:
    """8/4/2/1 steps: b=64 and b=128 have no interval, so nothing is judged on them."""
    rng = np.random.default_rng(0)
    trials = simulated_trials(rng, [16, 32, 64, 128], flat(4), (8, 4, 2, 1), noise=0.1)
    points, _, _ = series_points(trials)
    u = u_shape_test(
        [p.batch_size for p in points],
        [math.log(p.time_per_sample_s) for p in points],
        [p.log_se for p in points],
        not_judged_reasons=[p.not_judged_reason for p in points if p.not_judged_reason],
    )
    assert u.verdict == "not_judged"
    assert "b=128 has 1 measured step" in u.message


@pytest.mark.parametrize("noise", [0.05, 0.10])
@pytest.mark.parametrize("k", [4, 5])
def test_a_true_u_is_found(noise: float, k: int) -> None:
    """Falls 30 % to a minimum, rises 20 % after it, 10 steps per size."""
    curve = [1.3e-3] + [1.0e-3] * (k - 2) + [1.2e-3]
    power = u_rate(curve, (10,) * k, noise=noise, seed=100 + k)
    assert power >= 0.80, f"a true U found in only {power:.1%} of runs"


def test_a_true_u_with_rounds_and_drift_is_found() -> None:
    curve = [1.3e-3, 1.0e-3, 1.0e-3, 1.2e-3]
    power = u_rate(curve, (10,) * 4, noise=0.05, rounds=3, drift=0.02, seed=5)
    assert power >= 0.80
