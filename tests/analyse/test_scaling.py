"""Scaling efficiency and exposed communication: definitions, reference matching, wording,
and the error rates of their intervals by seeded simulation (no torch, no timing)."""

from __future__ import annotations

import numpy as np
import pytest

from analyse.simulate import binomial_lower, binomial_upper
from batchscope.analyse.scaling import headline, reference_for, scaling_figures, stamp_scaling
from batchscope.core.results import RunResult, StepStats, TrialResult
from batchscope.engine.ddp import comm_fraction_from
from batchscope.report.scaling import scaling_lines, scaling_rows
from batchscope.report.wording import scaling_line


def _trial(
    world: int, per_device: int, times: list[float], *, mode: str = "weak", repeat: int = 0
) -> TrialResult:
    stats = StepStats.from_samples(times)
    glob = per_device * world
    return TrialResult(
        device="cpu",
        batch_size=per_device,
        repeat=repeat,
        step_time_s=stats,
        step_times_s=times,
        samples_per_s=glob / stats.median,
        world_size=world,
        per_device_batch_size=per_device,
        global_batch_size=glob,
        scaling_mode=mode,
    )


def _steps(median: float, n: int = 30) -> list[float]:
    return [median * (1 + 0.01 * ((i * 7) % 11 - 5)) for i in range(n)]


def test_weak_efficiency_is_global_throughput_over_world_times_one_rank() -> None:
    one = _trial(1, 32, _steps(0.010))
    two = _trial(2, 32, _steps(0.0125))  # twice the samples in 1.25× the time: 80 %
    stamp_scaling(one, [])
    stamp_scaling(two, [one])
    assert one.scaling_efficiency == 1.0
    assert two.scaling_efficiency == pytest.approx(0.8, rel=1e-9)
    assert two.scaling_efficiency_low is not None and two.scaling_efficiency_high is not None
    assert two.scaling_efficiency_low < 0.8 < two.scaling_efficiency_high


def test_the_reference_is_the_same_round_and_per_device_or_global_batch() -> None:
    weak_ref = _trial(1, 32, _steps(0.01))
    other_round = _trial(1, 32, _steps(0.01), repeat=1)
    assert reference_for(_trial(2, 32, _steps(0.01)), [other_round]) is None
    assert reference_for(_trial(2, 32, _steps(0.01)), [other_round, weak_ref]) is weak_ref
    # strong scaling: 2 ranks × 16 compare with one rank at the global batch 32
    strong_ref = _trial(1, 32, _steps(0.01), mode="strong")
    half = _trial(2, 16, _steps(0.006), mode="strong")
    assert reference_for(half, [_trial(1, 16, _steps(0.01), mode="strong"), strong_ref]) is (
        strong_ref
    )
    stamp_scaling(half, [strong_ref])
    assert half.scaling_efficiency == pytest.approx(0.01 / (2 * 0.006), rel=1e-9)


def test_a_failed_reference_leaves_the_efficiency_unset() -> None:
    ref = TrialResult(device="cpu", batch_size=32, status="oom", world_size=1)
    two = _trial(2, 32, _steps(0.01))
    stamp_scaling(two, [ref])
    assert two.scaling_efficiency is None


def test_verdict_line_and_table_appear_only_with_more_than_one_world_size() -> None:
    one, two = _trial(1, 64, _steps(0.010)), _trial(2, 64, _steps(0.0111))
    stamp_scaling(one, [])
    stamp_scaling(two, [one])
    two.comm_fraction, two.comm_fraction_low, two.comm_fraction_high = 0.12, 0.08, 0.16
    run = RunResult(run_id="r", created="now", workload={}, settings={}, environment={})
    run.trials = [one]
    assert scaling_rows(run) == [] and scaling_lines(run) == []
    run.trials = [one, two]
    (line,) = scaling_lines(run)
    assert line.startswith("cpu: 2 ranks reach 1.8× one rank at b=64 per device: 90 % [")
    assert line.endswith("weak-scaling efficiency; 12 % of each step is exposed all-reduce")
    rows = scaling_rows(run)
    assert [r[2] for r in rows] == ["1", "2"] and rows[1][3] == "128"
    (figure,) = headline(scaling_figures(run))
    figure.comm_fraction = None
    assert "exposed all-reduce not determined (within the noise; at most 16 %)" in (
        scaling_line(figure)
    )


def test_comm_fraction_is_one_minus_the_median_ratio() -> None:
    synced, free = _steps(0.010, 12), _steps(0.007, 12)
    value, low, high = comm_fraction_from(synced, free)
    assert value == pytest.approx(0.3, rel=1e-9)
    assert low is not None and high is not None and low < 0.3 < high
    assert comm_fraction_from(synced[:5], free) == (None, None, None)


#: simulated trials per claim; lognormal step noise of 5 %, 12 steps of each kind (as measured)
REPS = 400


def test_comm_fraction_is_rarely_called_determined_when_there_is_none() -> None:
    rng = np.random.default_rng(16)
    determined = 0
    for _ in range(REPS):
        a = list(0.01 * np.exp(rng.normal(0, 0.05, 12)))
        b = list(0.01 * np.exp(rng.normal(0, 0.05, 12)))
        determined += comm_fraction_from(a, b)[0] is not None
    # one-sided 2.5 % at most for a 95 % interval; the conservative combination is lower
    assert determined / REPS <= binomial_upper(0.025, REPS)


def test_comm_fraction_interval_covers_the_true_share_and_finds_a_real_one() -> None:
    rng = np.random.default_rng(17)
    covered = found = 0
    for _ in range(REPS):
        a = list(0.01 * np.exp(rng.normal(0, 0.05, 12)))
        b = list(0.007 * np.exp(rng.normal(0, 0.05, 12)))
        value, low, high = comm_fraction_from(a, b)
        assert low is not None and high is not None
        covered += low <= 0.3 <= high
        found += value is not None
    assert covered / REPS >= binomial_lower(0.95, REPS)
    assert found / REPS >= 0.95  # 30 % exposed against 5 % noise: determined nearly always


def test_efficiency_interval_covers_the_true_efficiency() -> None:
    rng = np.random.default_rng(18)
    covered = 0
    for _ in range(REPS):
        one = _trial(1, 32, list(0.010 * np.exp(rng.normal(0, 0.05, 20))))
        two = _trial(2, 32, list(0.0125 * np.exp(rng.normal(0, 0.05, 20))))
        stamp_scaling(two, [one])
        low, high = two.scaling_efficiency_low, two.scaling_efficiency_high
        assert low is not None and high is not None
        covered += low <= 0.8 <= high
    assert covered / REPS >= binomial_lower(0.95, REPS)
