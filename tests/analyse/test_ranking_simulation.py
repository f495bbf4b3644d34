"""Fastest, tied and within 5 %: error rates measured on seeded simulated sweeps.

* the truly fastest batch size is in ``{fastest} ∪ tied_with`` in at least 95 % of
  runs (multiple comparisons with the best), whatever the curve;
* on a flat curve, a size is called slower than the fastest beyond the noise in at
  most 5 % of runs;
* "within 5 % of the fastest" is confirmed for a size that is truly 10 % slower in
  at most 5 % of runs, and for one that is truly as fast in most runs;
* the rules hold with rounds and run-to-run drift.
"""

from __future__ import annotations

import numpy as np
import pytest

from analyse.simulate import binomial_lower, binomial_upper, simulated_trials
from batchscope.analyse.points import series_points
from batchscope.analyse.ranking import rank, smallest_near_best

RUNS = 400
SIZES = [16, 32, 64, 128]


def _rankings(curve, *, noise=0.1, steps=20, rounds=1, drift=0.0, own=0.0, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(RUNS):
        trials = simulated_trials(
            rng,
            SIZES,
            curve,
            (steps,) * len(SIZES),
            noise=noise,
            rounds=rounds,
            drift=drift,
            own=own,
        )
        points, _, _ = series_points(trials)
        yield rank(points)


CURVES = {
    "flat": [1e-3, 1e-3, 1e-3, 1e-3],
    "one best": [1.3e-3, 1.0e-3, 1.1e-3, 1.2e-3],
    "two close": [1.2e-3, 1.0e-3, 1.02e-3, 1.3e-3],
    "falling": [2e-3, 1.5e-3, 1.2e-3, 1.0e-3],
}


@pytest.mark.parametrize("name", list(CURVES))
@pytest.mark.parametrize(
    "rounds,drift,own", [(1, 0.0, 0.0), (3, 0.05, 0.03)], ids=["1 round", "3 rounds + drift"]
)
def test_the_fastest_set_holds_the_true_fastest(
    name: str, rounds: int, drift: float, own: float
) -> None:
    curve = CURVES[name]
    best = SIZES[int(np.argmin(curve))]
    hits = sum(
        best in r.fastest_set
        for r in _rankings(curve, rounds=rounds, drift=drift, own=own, seed=len(name))
    )
    assert hits / RUNS >= binomial_lower(0.95, RUNS), f"true best in the set {hits / RUNS:.1%}"


def test_on_a_flat_curve_every_size_is_tied_with_the_fastest() -> None:
    """A size excluded from the fastest set is a false claim 'slower beyond the noise'."""
    claims = sum(len(SIZES) - len(r.fastest_set) > 0 for r in _rankings(CURVES["flat"], seed=3))
    assert claims / RUNS <= binomial_upper(0.05, RUNS), f"false 'slower' in {claims / RUNS:.1%}"


def test_a_clear_difference_is_found() -> None:
    """b=16 is 30 % slower than the fastest: excluded from the set in most runs."""
    found = sum(16 not in r.fastest_set for r in _rankings(CURVES["one best"], seed=4))
    assert found / RUNS >= 0.80


def test_within_five_percent_is_not_confirmed_for_a_size_ten_percent_slower() -> None:
    curve = [1.1e-3, 1.0e-3, 1.0e-3, 1.0e-3]  # b=16: 91 % of the fastest's throughput
    wrong = sum(
        smallest_near_best(r).batch_size == 16 and smallest_near_best(r).status == "confirmed"
        for r in _rankings(curve, noise=0.05, seed=5)
    )
    assert wrong / RUNS <= binomial_upper(0.05, RUNS), f"false 'within 5 %' in {wrong / RUNS:.1%}"


def test_within_five_percent_is_confirmed_for_a_size_as_fast() -> None:
    """At ±1 % precision (100 steps of 5 % noise) a size as fast is confirmed."""
    curve = [1.0e-3, 1.0e-3, 0.99e-3, 1.2e-3]
    found = sum(
        smallest_near_best(r).status == "confirmed" and smallest_near_best(r).batch_size <= 32
        for r in _rankings(curve, noise=0.05, steps=100, seed=6)
    )
    assert found / RUNS >= 0.80
