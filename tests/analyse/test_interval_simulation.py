"""The intervals' coverage, measured on seeded simulations.

* a median's 95 % interval (Maritz–Jarrett, :mod:`batchscope.core.precision`) covers
  the true median in 93–99 % of samples from 6 steps on, for lognormal, skewed and
  outlier-ridden step times;
* a point's interval covers its true time per sample with run-to-run drift, once
  rounds measure the drift (two or more rounds, pooled over the batch sizes);
* with one round the drift is not measured: the analysis says so in a note;
* speedups: the bootstrap interval of the ratio covers the true ratio.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import mstats

from analyse.simulate import binomial_lower, simulated_trials
from batchscope.analyse.explain import analyse_run
from batchscope.analyse.points import series_points
from batchscope.core.precision import maritz_jarrett_se, median_precision
from batchscope.core.results import RunResult

SIMS = 600


def _draw(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    if kind == "lognormal":
        return np.exp(rng.normal(0.0, 0.1, n))
    if kind == "skewed":
        return 1.0 + rng.gamma(2.0, 0.05, n)
    x = np.exp(rng.normal(0.0, 0.1, n))
    return np.where(rng.random(n) < 0.05, 3.0 * x, x)


TRUE_MEDIAN = {"lognormal": 1.0}


def _true_median(kind: str) -> float:
    if kind not in TRUE_MEDIAN:
        rng = np.random.default_rng(99)
        TRUE_MEDIAN[kind] = float(np.median(_draw(rng, kind, 2_000_000)))
    return TRUE_MEDIAN[kind]


def test_our_maritz_jarrett_is_scipys() -> None:
    rng = np.random.default_rng(0)
    for n in (6, 7, 10, 31, 200):
        x = np.sort(rng.lognormal(0.0, 0.2, n))
        assert maritz_jarrett_se(x) == pytest.approx(float(mstats.mjci(x, prob=[0.5])[0]))


@pytest.mark.parametrize("kind", ["lognormal", "skewed", "outliers"])
@pytest.mark.parametrize("n", [6, 10, 20, 50])
def test_the_median_interval_covers_the_true_median(kind: str, n: int) -> None:
    rng = np.random.default_rng(n)
    truth = _true_median(kind)
    hits = 0
    for _ in range(SIMS):
        interval = median_precision(list(_draw(rng, kind, n))).interval()
        assert interval is not None
        hits += interval[0] <= truth <= interval[1]
    # a true coverage of at least 93 % (one-sided 99 % binomial bound), and not far above
    assert binomial_lower(0.93, SIMS) <= hits / SIMS <= 0.995, f"coverage {hits / SIMS:.3f}"


def test_fewer_than_six_steps_have_no_interval() -> None:
    assert median_precision([1.0, 1.1, 0.9, 1.05, 0.95]).interval() is None
    assert median_precision([1.0, 1.1, 0.9, 1.05, 0.95, 1.0]).interval() is not None


def _point_coverage(rounds: int, drift: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    sizes, truth = [16, 32, 64, 128], [1.2e-3, 1.0e-3, 1.0e-3, 1.1e-3]
    hits = total = 0
    for _ in range(300):
        trials = simulated_trials(
            rng, sizes, truth, (20, 20, 20, 20), noise=0.1, rounds=rounds, drift=drift
        )
        points, _, _ = series_points(trials)
        for p, t in zip(points, truth, strict=True):
            assert p.time_per_sample_low_s is not None and p.time_per_sample_high_s is not None
            hits += p.time_per_sample_low_s <= t <= p.time_per_sample_high_s
            total += 1
    return hits / total


@pytest.mark.parametrize("rounds", [2, 3])
def test_point_intervals_cover_with_drift_once_rounds_measure_it(rounds: int) -> None:
    coverage = _point_coverage(rounds, drift=0.08, seed=rounds)
    assert coverage >= binomial_lower(0.93, 1200), f"coverage {coverage:.3f} with {rounds} rounds"


def test_point_intervals_cover_without_drift_in_one_round() -> None:
    assert _point_coverage(1, drift=0.0, seed=1) >= binomial_lower(0.93, 1200)


def test_one_round_says_the_drift_is_not_measured() -> None:
    rng = np.random.default_rng(0)
    trials = simulated_trials(rng, [16, 32, 64], [1e-3] * 3, (20, 20, 20), noise=0.1)
    run = RunResult(
        run_id="r", created="now", workload={}, settings={}, environment={}, trials=trials
    )
    notes = analyse_run(run).devices[0].notes
    assert any("run-to-run variation" in n and "--repeats" in n for n in notes)


def test_speedup_intervals_cover_the_true_ratio() -> None:
    rng = np.random.default_rng(5)
    hits = 0
    sims = 150
    for _ in range(sims):
        cpu = simulated_trials(
            rng, [16, 32], [1e-3, 1e-3], (20, 20), noise=0.1, rounds=2, drift=0.05
        )
        gpu = simulated_trials(
            rng,
            [16, 32],
            [2.5e-5, 2.5e-5],
            (20, 20),
            noise=0.1,
            rounds=2,
            drift=0.05,
            device="cuda:0",
        )
        run = RunResult(
            run_id="r", created="now", workload={}, settings={}, environment={}, trials=cpu + gpu
        )
        for s in analyse_run(run).speedups:
            assert s.low is not None and s.high is not None
            hits += s.low <= 40.0 <= s.high
    assert hits / (2 * sims) >= binomial_lower(0.93, 2 * sims), f"coverage {hits / (2 * sims):.3f}"


def test_a_speedup_without_enough_steps_is_not_determined() -> None:
    rng = np.random.default_rng(2)
    cpu = simulated_trials(rng, [16], [1e-3], (3,), noise=0.1)
    gpu = simulated_trials(rng, [16], [2.5e-5], (20,), noise=0.1, device="cuda:0")
    run = RunResult(
        run_id="r", created="now", workload={}, settings={}, environment={}, trials=cpu + gpu
    )
    (s,) = analyse_run(run).speedups
    assert s.low is None and s.high is None and not s.determined
    assert math.isclose(s.ratio, s.ratio)  # the ratio itself is still reported
