"""The fits' goodness of fit under the true model, measured on seeded simulated sweeps.

When the data come from ``T(b) = c/b^α + T_min`` with lognormal step noise, the
chi-square p-values of the fit (weighted by the points' standard errors) are close
to uniform: their 5 % and 50 % quantiles near 0.05 and 0.5 and the share below 0.01
(the "does not fit" threshold) at most about 1 % — where the IQR-weighted fit of
earlier versions gave 0.88/0.94/0.97 at the 5/25/50 % quantiles. The Maritz–Jarrett
errors are slightly conservative for small samples, which moves the p-values up a
little, never down; the bounds below allow for that and for the simulation's size.
"""

from __future__ import annotations

import numpy as np
import pytest

from analyse.simulate import binomial_upper, simulated_trials
from batchscope.analyse.curves import CHI2_P_THRESHOLD, fit_time_model
from batchscope.analyse.points import series_points

RUNS = 300
SIZES = [16, 32, 64, 128, 256]


def _p_values(
    c: float,
    alpha: float,
    t_min: float,
    *,
    steps: int,
    noise: float,
    rounds: int = 1,
    seed: int = 0,
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    truth = [c / b**alpha + t_min for b in SIZES]
    out = []
    for _ in range(RUNS):
        trials = simulated_trials(
            rng,
            SIZES,
            truth,
            (steps,) * len(SIZES),
            noise=noise,
            rounds=rounds,
            own=0.02 if rounds > 1 else 0.0,
        )
        points, _, _ = series_points(trials)
        fit = fit_time_model(
            [p.batch_size for p in points],
            [p.time_per_sample_s for p in points],
            [p.time_per_sample_s * (p.log_se_relative or 0.0) for p in points],
        )
        assert fit.chi2_p is not None
        out.append(fit.chi2_p)
    return np.asarray(out)


@pytest.mark.parametrize(
    "model",
    [(2e-2, 0.8, 1e-3), (2e-3, 1.0, 1e-3), (2e-4, 0.5, 1e-3)],
    ids=["strong fall", "alpha 1", "nearly flat"],
)
@pytest.mark.parametrize("steps,noise", [(20, 0.10), (40, 0.05)])
def test_p_values_are_close_to_uniform_under_the_true_model(
    model, steps: int, noise: float
) -> None:
    p = _p_values(*model, steps=steps, noise=noise, seed=steps)
    q05, q50 = np.quantile(p, [0.05, 0.5])
    assert 0.01 <= q05 <= 0.15, f"5 % quantile {q05:.3f}"
    assert 0.35 <= q50 <= 0.70, f"median {q50:.3f}"
    rejected = float(np.mean(p < CHI2_P_THRESHOLD))
    assert rejected <= binomial_upper(CHI2_P_THRESHOLD, RUNS), f"'does not fit' in {rejected:.1%}"


def test_p_values_stay_close_to_uniform_with_rounds() -> None:
    p = _p_values(2e-2, 0.8, 1e-3, steps=20, noise=0.10, rounds=3, seed=9)
    q05, q50 = np.quantile(p, [0.05, 0.5])
    assert 0.01 <= q05 <= 0.15 and 0.35 <= q50 <= 0.75, f"quantiles {q05:.3f} {q50:.3f}"


def test_a_u_shaped_curve_does_not_fit() -> None:
    rng = np.random.default_rng(1)
    truth = [1.3e-3, 1.0e-3, 1.0e-3, 1.25e-3, 1.6e-3]
    misses = 0
    for _ in range(100):
        trials = simulated_trials(rng, SIZES, truth, (20,) * 5, noise=0.05)
        points, _, _ = series_points(trials)
        fit = fit_time_model(
            [p.batch_size for p in points],
            [p.time_per_sample_s for p in points],
            [p.time_per_sample_s * (p.log_se_relative or 0.0) for p in points],
        )
        misses += fit.ok
    assert misses <= 20, f"the falling-only model 'fits' a U in {misses} of 100 runs"
