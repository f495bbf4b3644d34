"""Achieved FLOP/s and MFU (batchscope.analyse.efficiency): the arithmetic, its intervals,
the per-point figures, and the verdict line — which says "saturated" only on the
ranking's word (its error rate checked by seeded simulation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analyse.simulate import binomial_upper, simulated_trials
from batchscope.analyse.efficiency import (
    achieved_flops,
    efficiency_verdict,
    format_mfu,
    mfu,
    series_efficiency,
    stamp_mfu,
)
from batchscope.analyse.explain import analyse_run
from batchscope.analyse.points import series_points
from batchscope.analyse.ranking import rank
from batchscope.core.results import RunResult, StepStats, TrialResult
from batchscope.report.wording import summary_lines

PEAK = {"flops_per_s": 100e9, "flops_per_s_low": 90e9, "flops_per_s_high": 125e9, "dtype": "fp32"}


def test_achieved_is_flops_over_the_median_and_its_interval_flips_the_ends() -> None:
    value, low, high = achieved_flops(2e9, 0.1, 0.08, 0.125)
    assert value == pytest.approx(20e9)
    assert low == pytest.approx(16e9)  # from the slow end of the step time
    assert high == pytest.approx(25e9)
    assert achieved_flops(2e9, 0.1) == (pytest.approx(20e9), None, None)
    assert achieved_flops(None, 0.1) == (None, None, None)
    assert achieved_flops(2e9, 0.0) == (None, None, None)


def test_mfu_interval_combines_both_intervals_conservatively() -> None:
    value, low, high = mfu(20e9, 16e9, 25e9, 100e9, 90e9, 125e9)
    assert value == pytest.approx(0.2)
    assert low == pytest.approx(16e9 / 125e9)  # achieved low ÷ peak high
    assert high == pytest.approx(25e9 / 90e9)  # achieved high ÷ peak low
    assert low < 16e9 / 100e9 and high > 25e9 / 100e9  # wider than either alone
    assert mfu(20e9, 16e9, 25e9, 100e9) == pytest.approx((0.2, 0.16, 0.25))  # exact peak
    assert mfu(20e9, None, None, 100e9, 90e9, 125e9)[1:] == (None, None)
    assert mfu(20e9, 16e9, 25e9, None) == (None, None, None)


def test_stamp_mfu_sets_every_field_from_the_trial_and_the_peak() -> None:
    trial = TrialResult(device="cpu", batch_size=10, flops_per_step=2_000_000_000)
    trial.step_time_s = StepStats(
        median=0.1, iqr=0.0, mean=0.1, stdev=0.0, min=0.08, max=0.125, n=20,
        median_low=0.08, median_high=0.125,
    )  # fmt: skip
    stamp_mfu(trial, PEAK)
    assert trial.achieved_flops_per_s == pytest.approx(20e9)
    assert (trial.achieved_flops_per_s_low, trial.achieved_flops_per_s_high) == (
        pytest.approx(16e9),
        pytest.approx(25e9),
    )
    assert trial.device_peak_flops == 100e9 and trial.device_peak_dtype == "fp32"
    assert (trial.mfu, trial.mfu_low, trial.mfu_high) == (
        pytest.approx(0.2),
        pytest.approx(0.128),
        pytest.approx(25 / 90),
    )
    plain = TrialResult(device="cpu", batch_size=10, flops_per_step=2_000_000_000)
    plain.step_time_s = trial.step_time_s
    stamp_mfu(plain, None)  # --no-peak: the achieved rate, no MFU
    assert plain.achieved_flops_per_s == pytest.approx(20e9) and plain.mfu is None


def test_format_mfu() -> None:
    assert format_mfu(0.41, 0.38, 0.44) == "41 % [38–44]"
    assert format_mfu(0.0034, 0.0023, 0.0051) == "0.34 % [0.23–0.51]"
    assert format_mfu(0.41) == "41 %"
    assert format_mfu(None) == "–"


def _run(time_per_sample: list[float], sizes: list[int], seed: int = 0, n: int = 30) -> RunResult:
    rng = np.random.default_rng(seed)
    trials = simulated_trials(rng, sizes, time_per_sample, (n,) * len(sizes), noise=0.03)
    for t in trials:
        t.flops_per_step = 1_000_000 * t.batch_size
        t.flops_per_sample = 1_000_000.0
        stamp_mfu(t, PEAK)
    return RunResult(
        run_id="r", created="c", workload={"name": "w"}, settings={}, environment={}, trials=trials
    )


def test_points_carry_mfu_from_flops_per_sample_times_samples_per_s() -> None:
    d = analyse_run(_run([1e-4, 5e-5, 2.5e-5], [16, 32, 64])).devices[0]
    for e in d.efficiency:
        p = d.point(e.batch_size)
        assert p is not None
        assert e.achieved == pytest.approx(1e6 * p.samples_per_s)
        assert e.mfu == pytest.approx(e.achieved / 100e9)
        assert e.mfu_low == pytest.approx(1e6 * (p.samples_per_s_low or math.nan) / 125e9)
        assert e.mfu_high == pytest.approx(1e6 * (p.samples_per_s_high or math.nan) / 90e9)
    verdict = d.efficiency_verdict
    assert verdict is not None and verdict.batch_size == 64 and verdict.beyond == "largest"
    assert "b=64 reaches" in verdict.reason and "this CPU's measured fp32 matmul peak" in (
        verdict.reason
    )
    assert "saturated" not in verdict.reason
    assert d.verdicts()["efficiency"]["verdict"]["saturated"] is False


def test_saturated_only_when_larger_sizes_are_no_faster() -> None:
    slower = analyse_run(_run([1e-4, 2.5e-5, 5e-5], [16, 64, 256])).devices[0]
    assert slower.efficiency_verdict is not None
    assert slower.efficiency_verdict.beyond == "slower"
    assert "grows with the batch (the device is saturated)" in slower.efficiency_verdict.reason
    assert "efficiency: b=64 reaches" in "\n".join(summary_lines(slower))
    no_peak = _run([1e-4, 2.5e-5], [16, 64])
    for t in no_peak.trials:
        t.mfu = t.device_peak_flops = None
    d = analyse_run(no_peak).devices[0]
    assert d.efficiency and d.efficiency[0].mfu is None and d.efficiency_verdict is None


def test_a_flat_curve_beyond_the_fastest_is_never_called_growing_too_often() -> None:
    """Equal true time per sample at b=64 and b=128: "the time per sample grows" (every
    larger size slower beyond the noise) must come out in at most 5 % of runs — the
    ranking's family-wise rate, which the verdict reads."""
    runs, grows, flat = 400, 0, 0
    for seed in range(runs):
        trials = _run([1e-4, 2.5e-5, 2.5e-5], [16, 64, 128], seed=seed, n=12).trials
        points, _, _ = series_points(trials)
        ranking = rank(points)
        v = efficiency_verdict("cpu", series_efficiency(points, trials), ranking, points)
        assert v is not None
        grows += v.beyond == "slower"
        flat += v.beyond == "flat"
    assert grows / runs <= binomial_upper(0.05, runs)
    assert flat > 0.5 * runs  # mostly: "no longer falls (b=… within the noise)"
