"""--world-sizes and --global-batch-sizes as plan data: parsing, refusals, the grid."""

from __future__ import annotations

import dataclasses

import pytest

from batchscope.core.plan import Plan, parse_world_sizes
from batchscope.core.results import RunResult, TrialResult
from batchscope.core.series import series_view
from batchscope.errors import UsageError


def test_parse_world_sizes() -> None:
    assert parse_world_sizes("4, 1,2,2") == [1, 2, 4]
    for bad in ("", "0", "1,,2", "two", "-1"):
        with pytest.raises(UsageError, match="world-sizes"):
            parse_world_sizes(bad)


def test_weak_grid_runs_every_world_size_per_batch_size_one_rank_first() -> None:
    plan = Plan(workload="linear", batch_sizes=[8, 32], world_sizes=[2, 1], steps=3)
    specs = plan.trials()
    assert [(s.batch_size, s.world_size) for s in specs] == [(8, 1), (8, 2), (32, 1), (32, 2)]
    assert specs[1].key == "cpu|bs=8|r=0|ws=2"
    assert Plan(workload="linear", batch_sizes=[8]).trials()[0].key == "cpu|bs=8|r=0"


def test_strong_grid_divides_the_global_batch() -> None:
    plan = Plan(
        workload="linear",
        batch_sizes=[64],
        world_sizes=[1, 2, 4],
        scaling_mode="strong",
        accumulate=2,
        steps=3,
    )
    assert [(s.batch_size, s.world_size) for s in plan.trials()] == [(32, 1), (16, 2), (8, 4)]
    spec = plan.trials()[2]
    trial = TrialResult.from_spec(spec)
    assert (trial.per_device_batch_size, trial.global_batch_size) == (8, 64)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            dict(batch_sizes=[42], world_sizes=[4], scaling_mode="strong", accumulate=3),
            "global batch size 42 in --global-batch-sizes is not divisible by world size 4 "
            "× --accumulate 3: use multiples of 12",
        ),
        (dict(batch_sizes=[8], scaling_mode="strong"), "--global-batch-sizes needs --world"),
        (dict(batch_sizes=[8], world_sizes=[2], epochs=1), "--epochs cannot be combined"),
        (dict(batch_sizes=[8], world_sizes=[3], nnodes=2), "world size 3 is not divisible"),
        (dict(batch_sizes=[8], world_sizes=[2], nnodes=2), "needs --rdzv-endpoint"),
    ],
)
def test_refusals_are_one_line(fields: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        Plan(workload="linear", **fields)  # type: ignore[arg-type]
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_each_world_size_is_a_series_of_its_own_at_its_global_batch() -> None:
    spec = Plan(workload="linear", batch_sizes=[8], world_sizes=[2], steps=3).trials()[0]
    trial = dataclasses.replace(TrialResult.from_spec(spec), flops_per_sample=10.0)
    run = RunResult(run_id="r", created="now", workload={}, settings={}, environment={})
    run.trials = [trial, TrialResult(device="cpu", batch_size=8)]
    view = series_view(run)
    assert view.devices == ["cpu 2 ranks", "cpu"]
    folded = view.trials[0]
    assert (folded.batch_size, folded.world_size, folded.flops_per_sample) == (16, None, 5.0)
    assert series_view(view).devices == view.devices  # idempotent


def test_new_fields_round_trip() -> None:
    spec = Plan(workload="linear", batch_sizes=[8], world_sizes=[2], steps=3).trials()[0]
    trial = TrialResult.from_spec(spec, comm_fraction=0.1, scaling_efficiency=0.9)
    again = TrialResult.from_dict(trial.to_dict())
    assert again == trial and again.world_size == 2 and again.scaling_mode == "weak"
