"""--target: parsing, when a trial reached it, and the time-to-target recommendation."""

from __future__ import annotations

import pytest

from batchscope.analyse.explain import analyse_run
from batchscope.core.plan import Plan, TrialSpec
from batchscope.core.results import EpochRecord, RunResult, StepStats, TrialResult
from batchscope.core.target import (
    Target,
    apply_target,
    evaluate_target,
    is_loss_like,
    parse_target,
    quality,
    soonest_to_target,
)
from batchscope.engine.trial import run_trial
from batchscope.errors import UsageError
from batchscope.report.markdown import render_markdown, report_document
from batchscope.report.plots import PLOTS, render_plots


def epochs(values: list[float], metric: str = "accuracy", time_s: float = 2.0) -> list[EpochRecord]:
    return [
        EpochRecord(
            epoch=i + 1,
            frozen=False,
            time_s=time_s,
            samples=100,
            train_loss=1.0,
            val_loss=v if metric == "val_loss" else 1.0 - v,
            metrics={} if metric == "val_loss" else {metric: v},
        )
        for i, v in enumerate(values)
    ]


# ---------------------------------------------------------------- parsing


def test_parse_target() -> None:
    assert parse_target("accuracy=0.95") == Target("accuracy", 0.95)
    assert parse_target(" val_loss = 0.2 ") == Target("val_loss", 0.2)
    assert parse_target("error_rate=5e-2").value == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("accuracy", "not METRIC=VALUE"),
        ("=0.9", "not METRIC=VALUE"),
        ("accuracy=", "not METRIC=VALUE"),
        ("accuracy=high", "not a number"),
        ("accuracy=nan", "finite"),
        ("a=b=c", "not a number"),
    ],
)
def test_parse_errors_are_one_line(text: str, match: str) -> None:
    with pytest.raises(UsageError, match=match) as info:
        parse_target(text)
    assert "\n" not in str(info.value)


def test_direction() -> None:
    for name in ("val_loss", "train_loss", "error", "top1_error", "error_rate"):
        assert is_loss_like(name), name
    for name in ("accuracy", "f1", "error_rate_inverse"):
        assert not is_loss_like(name), name
    assert Target("val_loss", 0.3).text == "val_loss ≤ 0.3"
    assert Target("accuracy", 0.9).text == "accuracy ≥ 0.9"


def test_plan_needs_epochs_and_valid_syntax() -> None:
    with pytest.raises(UsageError, match="needs --epochs"):
        Plan(workload="linear", batch_sizes=[16], target="accuracy=0.9")
    with pytest.raises(UsageError, match="METRIC=VALUE"):
        Plan(workload="linear", batch_sizes=[16], epochs=2, target="accuracy")
    plan = Plan(workload="linear", batch_sizes=[16, 32], epochs=2, target="val_loss=0.5")
    assert {s.target for s in plan.trials()} == {"val_loss=0.5"}
    assert plan.settings()["target"] == "val_loss=0.5"


# ---------------------------------------------------------------- bookkeeping


def test_reached_at_the_first_epoch_that_meets_it() -> None:
    out = evaluate_target(parse_target("accuracy=0.95"), epochs([0.8, 0.96, 0.97], time_s=1.5))
    assert out["reached"] and out["epoch"] == 2
    assert out["time_s"] == pytest.approx(3.0) and out["samples"] == 200
    assert out["best"] == 0.96 and out["reported"]


def test_loss_like_means_at_most() -> None:
    out = evaluate_target(parse_target("val_loss=0.3"), epochs([0.5, 0.3, 0.1], "val_loss"))
    assert out["reached"] and out["epoch"] == 2 and out["lower_is_better"]
    # the same numbers as accuracy (higher is better) are reached at epoch 1
    acc = evaluate_target(parse_target("accuracy=0.3"), epochs([0.5, 0.3, 0.1]))
    assert acc["epoch"] == 1


def test_not_reached() -> None:
    out = evaluate_target(parse_target("accuracy=0.99"), epochs([0.8, 0.9, 0.85]))
    assert out["reached"] is False and out["epoch"] is None and out["time_s"] is None
    assert out["best"] == 0.9


def test_metric_not_reported_is_recorded_with_a_note() -> None:
    trial = TrialResult(device="cpu", batch_size=16, epochs=epochs([0.9]))
    apply_target(trial, "f1=0.5")
    assert trial.target is not None
    assert trial.target["reported"] is False and trial.target["reached"] is False
    assert "'f1' is not reported" in trial.notes[-1] and "accuracy" in trial.notes[-1]


def test_engine_records_the_target() -> None:
    """linear has val_loss only: reached at epoch 1 with the protocol's own time and samples."""
    spec = TrialSpec(
        workload="linear",
        workload_options={"images": 64},
        device="cpu",
        batch_size=16,
        epochs=2,
        warmup=0,
        sample_interval_s=0,
        target="val_loss=1e9",
    )
    result = run_trial(spec)
    assert result.target is not None and result.target["reached"]
    assert result.target["epoch"] == 1
    assert result.target["time_s"] == pytest.approx(result.epochs[0].time_s)
    assert result.target["samples"] == result.epochs[0].samples == 64
    spec.target = "accuracy=0.5"
    missed = run_trial(spec)
    assert missed.target is not None and missed.target["reported"] is False
    assert any("not reported" in n for n in missed.notes)
    assert TrialResult.from_dict(missed.to_dict()).target == missed.target


# ---------------------------------------------------------------- across trials


def _trial(b: int, repeat: int, values: list[float], time_s: float) -> TrialResult:
    t = TrialResult(
        device="cpu",
        batch_size=b,
        repeat=repeat,
        step_time_s=StepStats.from_samples([0.01 * b / 16] * 3),
        samples_per_s=1600.0,
        epochs=epochs(values, time_s=time_s),
    )
    apply_target(t, "accuracy=0.9")
    return t


def _run(trials: list[TrialResult]) -> RunResult:
    return RunResult(
        run_id="r",
        created="now",
        workload={"name": "w", "spec": "w"},
        settings={"epochs": 3, "target": "accuracy=0.9"},
        environment={},
        trials=trials,
    )


def test_soonest_needs_every_repeat() -> None:
    trials = [
        _trial(16, 0, [0.5, 0.95], 3.0),  # 6 s
        _trial(16, 1, [0.95], 3.0),  # 3 s → median 4.5
        _trial(32, 0, [0.95], 2.0),  # 2 s
        _trial(32, 1, [0.92], 2.5),  # 2.5 s → median 2.25
        _trial(64, 0, [0.99], 1.0),  # 1 s, but ...
        _trial(64, 1, [0.5, 0.6], 1.0),  # ... not reached in this repeat
    ]
    choice = soonest_to_target(trials)
    assert choice is not None and choice.batch_size == 32
    assert "2.25 s" in choice.reason and "2 of 2" in choice.reason
    assert "b=64 (1/2)" in choice.reason


def test_soonest_when_no_size_reached_it_every_time() -> None:
    trials = [_trial(16, 0, [0.95], 3.0), _trial(16, 1, [0.5], 3.0), _trial(32, 0, [0.5], 1.0)]
    choice = soonest_to_target(trials)
    assert choice is not None and choice.batch_size == 16
    assert "1 of 2" in choice.reason and "no batch size reached it in every repeat" in choice.reason
    assert soonest_to_target([_trial(16, 0, [0.5], 1.0)]) is None
    assert soonest_to_target([TrialResult(device="cpu", batch_size=8)]) is None


def test_recommendation_report_and_plot() -> None:
    run = _run(
        [
            _trial(16, 0, [0.7, 0.95], 2.0),
            _trial(64, 0, [0.6, 0.8, 0.91], 1.0),
            _trial(256, 0, [0.5, 0.6, 0.7], 0.5),
        ]
    )
    analysis = analyse_run(run)
    (device,) = analysis.devices
    rec = device.recommendation.reaches_target_soonest
    assert rec is not None and rec.batch_size == 64
    assert any(
        line.startswith("reaches the target soonest: b=64")
        for line in device.recommendation.lines()
    )
    assert device.to_dict()["choices"]["reaches_target_soonest"]["batch_size"] == 64
    assert device.to_dict()["recommendation"]["batch_size"] == 64  # the target decides
    q = device.quality
    assert q is not None and q.metric == "accuracy" and q.target == 0.9
    assert [p.final_values for p in q.points] == [[0.95], [0.91], [0.7]]
    assert q.points[1].curves[0] == [(1.0, 0.6), (2.0, 0.8), (3.0, 0.91)]
    text = render_markdown(report_document(run, analysis))
    assert "Reaches the target soonest" in text and "batch size 64" in text
    pngs = render_plots(analysis, workload="w")
    assert pngs["quality.png"].startswith(b"\x89PNG")
    # the same pixel size as every other figure (IHDR width and height)
    assert pngs["quality.png"][16:24] == pngs["throughput.png"][16:24]
    assert "quality" in [p.name for p in PLOTS]


def test_no_quality_plot_without_epochs() -> None:
    trial = TrialResult(device="cpu", batch_size=16, step_time_s=StepStats.from_samples([0.01] * 3))
    run = _run([trial])
    assert quality(run.trials) is None
    assert "quality.png" not in render_plots(analyse_run(run))
