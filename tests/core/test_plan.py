"""The plan: batch-size and device parsing, validation, and the trial grid."""

from __future__ import annotations

import json

import pytest

from batchscope.core.plan import (
    Plan,
    TrialSpec,
    check_device_names,
    parse_batch_sizes,
    parse_devices,
)
from batchscope.errors import BatchscopeError, DeviceError, UsageError

# --------------------------------------------------------------------------- batch sizes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16,32,64", [16, 32, 64]),
        ("16..256", [16, 32, 64, 128, 256]),
        ("8,16..64", [8, 16, 32, 64]),
        ("64,16,32", [16, 32, 64]),  # sorted
        ("32,32,16..32", [16, 32]),  # deduplicated
        (" 16 , 32 ", [16, 32]),  # spaces tolerated
        ("7", [7]),
        ("1..1", [1]),
        ("3..20", [3, 6, 12]),  # doubling from the start, never past the end
        ("+4", [4]),
    ],
)
def test_parse_batch_sizes(text: str, expected: list[int]) -> None:
    assert parse_batch_sizes(text) == expected


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("0", "0"),
        ("-4", "-4"),
        ("16,-4", "-4"),
        ("abc", "abc"),
        ("1.5", "1.5"),
        ("16,abc", "abc"),
        ("16,,32", "16,,32"),
        ("16,", "16,"),
        ("256..16", "256..16"),
        ("16..abc", "abc"),
        ("0..16", "0"),
    ],
)
def test_parse_batch_sizes_rejects_with_the_bad_value(text: str, named: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_batch_sizes(text)
    message = str(info.value)
    assert named in message
    assert "\n" not in message


@pytest.mark.parametrize("text", ["", "   "])
def test_parse_batch_sizes_rejects_empty(text: str) -> None:
    with pytest.raises(UsageError, match="empty"):
        parse_batch_sizes(text)


def test_usage_error_is_a_batchscope_error_with_exit_status_2() -> None:
    with pytest.raises(BatchscopeError) as info:
        parse_batch_sizes("x")
    assert info.value.exit_code == 2


# --------------------------------------------------------------------------- devices


def test_parse_devices_cpu_auto_and_dedupe() -> None:
    assert parse_devices("cpu", ["cpu"]) == ["cpu"]
    assert parse_devices("CPU", ["cpu"]) == ["cpu"]
    assert parse_devices("auto", ["cpu"]) == ["cpu"]
    assert parse_devices("auto", ["cpu", "cuda:0", "cuda:1"]) == ["cpu", "cuda:0", "cuda:1"]
    assert parse_devices("cpu,auto", ["cpu", "cuda:0"]) == ["cpu", "cuda:0"]
    assert parse_devices("cuda,cpu", ["cpu", "cuda:0"]) == ["cuda:0", "cpu"]
    assert parse_devices("cuda:1", ["cpu", "cuda:0", "cuda:1"]) == ["cuda:1"]


def test_absent_cuda_is_a_device_error_naming_it() -> None:
    with pytest.raises(DeviceError) as info:
        parse_devices("cuda", ["cpu"])
    assert "'cuda'" in str(info.value)
    assert "cpu" in str(info.value)  # says what is present
    with pytest.raises(DeviceError, match="cuda:3"):
        parse_devices("cuda:3", ["cpu", "cuda:0"])


@pytest.mark.parametrize("text", ["tpu", "cpu,tpu", "gpu0", "cuda:x"])
def test_unknown_device_is_a_device_error_naming_it(text: str) -> None:
    bad = text.split(",")[-1]
    with pytest.raises(DeviceError) as info:
        parse_devices(text, ["cpu", "cuda:0"])
    assert repr(bad) in str(info.value)


def test_empty_devices_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        parse_devices("", ["cpu"])


def test_check_device_names_refuses_only_unknown_names() -> None:
    # known names pass whether or not this machine has them: presence is checked later
    check_device_names("cpu,cuda,cuda:3,mps,xpu:1,auto")
    with pytest.raises(DeviceError, match="'tpu'"):
        check_device_names("cpu,tpu")
    with pytest.raises(UsageError, match="empty"):
        check_device_names(" ")


# --------------------------------------------------------------------------- plan validation


def test_plan_defaults_to_adaptive_steps() -> None:
    plan = Plan(workload="linear", batch_sizes=[8])
    assert plan.steps is None and plan.epochs is None and plan.adaptive
    assert (plan.max_error, plan.max_time_s, plan.min_steps) == (0.02, 15.0, 10)
    assert plan.devices == ["cpu"]
    (spec,) = plan.trials()
    assert (spec.max_error, spec.max_time_s, spec.min_steps) == (0.02, 15.0, 10)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"batch_sizes": []}, "batch size"),
        ({"batch_sizes": [0]}, "0"),
        ({"batch_sizes": [8, -2]}, "-2"),
        ({"batch_sizes": [True]}, "True"),
        ({"batch_sizes": [1.5]}, "1.5"),
        ({"steps": 0}, "--steps 0"),
        ({"steps": -3}, "--steps -3"),
        ({"steps": 5, "epochs": 2}, "--epochs"),
        ({"freeze_epochs": 1}, "--freeze-epochs"),
        ({"epochs": 2, "freeze_epochs": -1}, "--freeze-epochs -1"),
        ({"epochs": -1}, "--epochs -1"),
        ({"epochs": 0}, "--epochs 0"),
        ({"warmup": -1}, "--warmup -1"),
        ({"threads": 0}, "--threads 0"),
        ({"workers": -1}, "--workers -1"),
        ({"repeats": 0}, "--repeats 0"),
        ({"max_error": 0}, "--max-error 0"),
        ({"max_error": 1.5}, "--max-error 1.5"),
        ({"max_time_s": 0}, "--max-time 0"),
        ({"min_steps": 0}, "--min-steps 0"),
        ({"max_rounds": 1}, "--max-rounds 1"),
    ],
)
def test_plan_validation(fields: dict, named: str) -> None:
    kwargs = {"workload": "linear", "batch_sizes": [8], **fields}
    with pytest.raises(UsageError) as info:
        Plan(**kwargs)
    assert named in str(info.value)


def test_plan_accepts_frozen_only_and_epoch_protocols() -> None:
    assert Plan(workload="linear", batch_sizes=[8], epochs=0, freeze_epochs=1).steps is None
    plan = Plan(workload="linear", batch_sizes=[8], epochs=3, freeze_epochs=1)
    assert (plan.steps, plan.epochs, plan.freeze_epochs) == (None, 3, 1)


def test_plan_trials_order_count_and_repeats() -> None:
    plan = Plan(
        workload="linear",
        workload_options={"images": 100},
        batch_sizes=[8, 16, 32],
        devices=["cpu", "cuda:0"],
        steps=5,
        warmup=1,
        seed=10,
        repeats=2,
        drop_last=True,
    )
    trials = plan.trials()
    assert len(trials) == 3 * 2 * 2
    # round by round; every round each device; the batch sizes rotated by one per round
    assert [(t.repeat, t.device, t.batch_size) for t in trials] == [
        (repeat, device, b)
        for repeat, order in ((0, (8, 16, 32)), (1, (16, 32, 8)))
        for device in ("cpu", "cuda:0")
        for b in order
    ]
    assert {t.seed for t in trials if t.repeat == 0} == {10}
    assert {t.seed for t in trials if t.repeat == 1} == {11}
    assert len({t.key for t in trials}) == len(trials)  # keys identify trials
    assert all(t.steps == 5 and t.warmup == 1 and t.drop_last for t in trials)
    # each trial owns its options: editing one does not edit the plan or another
    trials[0].workload_options["images"] = 1
    assert plan.workload_options == {"images": 100}
    assert trials[1].workload_options == {"images": 100}


def test_plan_settings_exclude_the_workload() -> None:
    settings = Plan(workload="linear", batch_sizes=[8, 16], steps=4).settings()
    assert "workload" not in settings
    assert settings["batch_sizes"] == [8, 16]
    assert settings["steps"] == 4
    json.dumps(settings)  # plain data


def test_trial_spec_round_trip_through_json() -> None:
    spec = TrialSpec(
        workload="path/to/file.py:make",
        workload_options={"data": "/x", "images": None, "seed": 3, "extra": {"k": [1, 2]}},
        device="cpu",
        batch_size=32,
        epochs=2,
        freeze_epochs=1,
        warmup=0,
        threads=2,
        seed=3,
        drop_last=True,
        workers=1,
        repeat=1,
        memory_limit_bytes=2**30,
    )
    again = TrialSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.key == spec.key == "cpu|bs=32|r=1"


def test_trial_spec_from_dict_ignores_unknown_fields() -> None:
    data = TrialSpec(workload="linear", workload_options={}, device="cpu", batch_size=4).to_dict()
    data["added_in_a_later_version"] = True
    assert TrialSpec.from_dict(data).batch_size == 4
