"""What limits a step (batchscope.analyse.efficiency): the share of a step its bytes take
at the measured copy bandwidth, and the compute / memory / overhead call made from it and
the MFU — on interval ends, so that noise alone does not make the call."""

from __future__ import annotations

import numpy as np
import pytest

from analyse.simulate import simulated_trials
from batchscope.analyse.efficiency import (
    BOUND_SHARE,
    bandwidth_fraction,
    bound_of,
    stamp_mfu,
)
from batchscope.analyse.explain import analyse_run
from batchscope.core.results import RunResult, StepStats, TrialResult

PEAK = {"flops_per_s": 1e11, "dtype": "fp32", "copy_bytes_per_s": 1e10}


def test_bandwidth_fraction_is_bytes_at_the_copy_rate_over_the_step() -> None:
    share, low, high = bandwidth_fraction(5e8, 1e10, 0.1, 0.08, 0.125)
    assert share == pytest.approx(0.5)  # 50 ms of traffic in a 100 ms step
    assert low == pytest.approx(0.05 / 0.125) and high == pytest.approx(0.05 / 0.08)
    assert bandwidth_fraction(5e8, 1e10, 0.1) == (pytest.approx(0.5), None, None)
    assert bandwidth_fraction(None, 1e10, 0.1) == (None, None, None)
    assert bandwidth_fraction(5e8, 0.0, 0.1) == (None, None, None)


@pytest.mark.parametrize(
    ("m", "m_low", "b", "b_low", "expected"),
    [
        (0.8, 0.7, 0.1, 0.08, "compute"),
        (0.1, 0.08, 0.8, 0.7, "memory"),
        (0.1, 0.08, 0.1, 0.08, "overhead"),
        # an interval that reaches below the share is not called bound
        (0.1, 0.08, 0.55, 0.4, None),
        (0.55, 0.4, 0.1, 0.08, None),
        (None, None, 0.8, 0.7, None),
        (0.8, 0.7, None, None, None),
    ],
)
def test_bound_is_called_on_the_low_ends(
    m: float | None, m_low: float | None, b: float | None, b_low: float | None, expected: str
) -> None:
    assert bound_of(m, m_low, b, b_low) == expected


def test_stamp_mfu_sets_the_copy_rate_and_the_bandwidth_share() -> None:
    trial = TrialResult(device="cpu", batch_size=10, flops_per_step=10**9, bytes_per_step=5 * 10**8)
    trial.step_time_s = StepStats(
        median=0.1, iqr=0.0, mean=0.1, stdev=0.0, min=0.08, max=0.125, n=20,
        median_low=0.08, median_high=0.125,
    )  # fmt: skip
    stamp_mfu(trial, PEAK)
    assert trial.device_copy_bytes_per_s == 1e10
    assert trial.bandwidth_fraction == pytest.approx(0.5)
    assert trial.bandwidth_fraction_low == pytest.approx(0.4)
    assert trial.bandwidth_fraction_high == pytest.approx(0.625)
    assert TrialResult.from_dict(trial.to_dict()).bandwidth_fraction == pytest.approx(0.5)


def _run(flops_per_sample: float, bytes_per_sample: float, seed: int = 0) -> RunResult:
    """Simulated trials at 100 µs a sample (10,000 samples/s) against PEAK."""
    rng = np.random.default_rng(seed)
    sizes = [16, 64, 256]
    trials = simulated_trials(rng, sizes, [1e-4] * 3, (30,) * 3, noise=0.03)
    for t in trials:
        t.flops_per_step = round(flops_per_sample * t.batch_size)
        t.flops_per_sample = flops_per_sample
        t.bytes_per_step = round(bytes_per_sample * t.batch_size)
        stamp_mfu(t, PEAK)
    return RunResult(
        run_id="r", created="c", workload={"name": "w"}, settings={}, environment={}, trials=trials
    )


@pytest.mark.parametrize(
    ("flops", "bytes_", "bound", "phrase"),
    [
        (8e6, 1e4, "compute", "Compute-bound"),  # 80 % of the peak
        (1e6, 8e5, "memory", "Memory-bound"),  # 80 % of the step is traffic
        (1e6, 1e4, "overhead", "overheads"),  # 10 % and 1 %: neither explains it
    ],
)
def test_the_verdict_says_what_limits_the_step(
    flops: float, bytes_: float, bound: str, phrase: str
) -> None:
    d = analyse_run(_run(flops, bytes_)).devices[0]
    for e in d.efficiency:
        assert e.bytes_per_sample == pytest.approx(bytes_)
        assert e.bandwidth_fraction == pytest.approx(bytes_ * 1e4 / 1e10, rel=0.1)
    verdict = d.efficiency_verdict
    assert verdict is not None and verdict.bound == bound
    assert phrase in verdict.reason
    assert d.verdicts()["efficiency"]["verdict"]["bound"] == bound


def test_noise_alone_rarely_makes_a_step_at_the_threshold_look_bound() -> None:
    """Steps whose traffic is exactly at the share: with 3 % noise, the call must not be
    'memory' in more than half the runs (the low end must clear the share)."""
    calls = [
        analyse_run(_run(1e5, BOUND_SHARE * 1e10 * 1e-4, seed=s)).devices[0].efficiency[-1].bound
        for s in range(40)
    ]
    assert calls.count("memory") <= 20
