"""The results contract: step statistics and the JSON round trip."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from batchscope.core.results import (
    SCHEMA,
    STATUSES,
    EpochRecord,
    RunResult,
    StepStats,
    TrialResult,
)


def test_step_stats_by_hand() -> None:
    # sorted: 1 2 3 4 10; q1 at position 1 -> 2, q3 at position 3 -> 4
    stats = StepStats.from_samples([4.0, 1.0, 10.0, 3.0, 2.0])
    assert stats.median == 3.0
    assert stats.iqr == 2.0
    assert stats.mean == 4.0
    assert stats.stdev == pytest.approx(math.sqrt((9 + 4 + 1 + 0 + 36) / 4))  # sample stdev
    assert (stats.min, stats.max, stats.n) == (1.0, 10.0, 5)


def test_step_stats_interpolates_quartiles_like_numpy() -> None:
    # even count: median and quartiles fall between samples
    stats = StepStats.from_samples([1.0, 2.0, 3.0, 4.0])
    assert stats.median == 2.5
    assert stats.iqr == pytest.approx(3.25 - 1.75)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20, 101])
def test_step_stats_match_numpy(n: int) -> None:
    rng = random.Random(n)
    samples = [rng.lognormvariate(-3, 0.5) for _ in range(n)]
    stats = StepStats.from_samples(samples)
    arr = np.asarray(samples)
    q1, med, q3 = np.percentile(arr, [25, 50, 75])  # linear interpolation (numpy's default)
    assert stats.median == pytest.approx(med, rel=1e-12)
    assert stats.iqr == pytest.approx(q3 - q1, rel=1e-9, abs=1e-15)
    assert stats.mean == pytest.approx(arr.mean(), rel=1e-12)
    assert stats.stdev == pytest.approx(arr.std(ddof=1) if n > 1 else 0.0, rel=1e-9)
    assert stats.min == arr.min()
    assert stats.max == arr.max()
    assert stats.n == n
    assert stats.min <= stats.median <= stats.max


def test_step_stats_single_sample_and_empty() -> None:
    one = StepStats.from_samples([0.25])
    assert (one.median, one.iqr, one.stdev, one.n) == (0.25, 0.0, 0.0, 1)
    with pytest.raises(ValueError):
        StepStats.from_samples([])


def test_relative_iqr() -> None:
    assert StepStats.from_samples([1.0, 2.0, 3.0, 4.0, 10.0]).relative_iqr == pytest.approx(2 / 3)
    zero = StepStats(median=0.0, iqr=0.0, mean=0.0, stdev=0.0, min=0.0, max=0.0, n=1)
    assert zero.relative_iqr == math.inf


def _trial(batch_size: int = 32, device: str = "cpu", **fields: object) -> TrialResult:
    times = [0.010, 0.011, 0.012, 0.013]
    base: dict = dict(
        device=device,
        batch_size=batch_size,
        step_time_s=StepStats.from_samples(times),
        data_wait_s=StepStats.from_samples([0.001] * 4),
        step_times_s=times,
        samples_per_s=batch_size / 0.0115,
        data_wait_fraction=0.09,
        samples_per_epoch=100,
        steps_per_epoch=4,
        total_time_s=0.2,
        epoch_time_s=[0.1, 0.1],
        final_train_loss=0.5,
        epochs=[
            EpochRecord(epoch=1, frozen=True, time_s=0.1, samples=100, train_loss=0.9),
            EpochRecord(
                epoch=2,
                frozen=False,
                time_s=0.1,
                samples=100,
                train_loss=0.5,
                val_loss=0.6,
                metrics={"accuracy": 0.8, "error_rate": 0.2},
            ),
        ],
        warmup_steps=3,
        measured_steps=4,
        setup_time_s=0.3,
        peak_memory_bytes=123456,
        peak_rss_bytes=7654321,
        threads=2,
        seed=5,
        drop_last=False,
        notes=["a note"],
    )
    base.update(fields)
    return TrialResult(**base)


def test_trial_result_round_trip_through_json() -> None:
    trial = _trial()
    again = TrialResult.from_dict(json.loads(json.dumps(trial.to_dict())))
    assert again == trial
    assert isinstance(again.step_time_s, StepStats)
    assert isinstance(again.epochs[1], EpochRecord)
    assert again.epochs[1].metrics["accuracy"] == 0.8


def test_failed_trial_round_trip_and_properties() -> None:
    failed = TrialResult(device="cpu", batch_size=512, status="oom", error="out of memory")
    again = TrialResult.from_dict(json.loads(json.dumps(failed.to_dict())))
    assert again == failed
    assert not again.ok
    assert again.step_time_s is None
    assert again.time_per_sample_s is None
    assert "oom" in STATUSES and "ok" in STATUSES


def test_trial_properties() -> None:
    trial = _trial(batch_size=10)
    assert trial.ok
    assert trial.time_per_sample_s == pytest.approx(trial.step_time_s.median / 10)


def test_trial_from_dict_ignores_fields_it_does_not_know() -> None:
    data = _trial().to_dict()
    data["field_from_the_future"] = 12.0  # a later version's field
    assert TrialResult.from_dict(data) == _trial()


def test_run_result_round_trip_through_json() -> None:
    run = RunResult(
        run_id="20250101-000000-abcd",
        created="2025-01-01T00:00:00+00:00",
        workload={"name": "linear", "spec": "linear", "parameters": 11},
        settings={"steps": 5, "batch_sizes": [32, 64]},
        environment={"cpu_model": "x", "gpus": []},
        trials=[_trial(32), _trial(64), _trial(32, device="cuda:0")],
    )
    data = json.loads(json.dumps(run.to_dict()))
    assert data["schema"] == SCHEMA == "batchscope.results/1"
    assert list(data) == [
        "schema",
        "run_id",
        "created",
        "workload",
        "settings",
        "environment",
        "trials",
    ]
    again = RunResult.from_dict(data)
    assert again == run
    assert again.devices == ["cpu", "cuda:0"]
