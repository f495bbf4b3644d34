"""``--seq-lens``: a grid axis beside the batch size, its own series in every report,
and tokens/s read from the points (tokens_per_step ÷ the point's step time)."""

from __future__ import annotations

import random

import pytest

from batchscope.core.plan import Plan, TrialSpec, parse_seq_lens
from batchscope.core.results import RunResult, StepStats, TrialResult
from batchscope.core.series import series_view
from batchscope.core.tokens import stamp_token_rates, stamp_tokens
from batchscope.errors import UsageError


def test_seq_lens_multiply_the_grid_and_reach_each_trials_workload() -> None:
    plan = Plan(workload="gpt", batch_sizes=[4, 8], seq_lens=[256, 128], repeats=2)
    trials = plan.trials()
    assert len(trials) == 2 * 2 * 2
    assert len({t.key for t in trials}) == len(trials)  # resume tells them apart
    assert {(t.batch_size, t.seq_len) for t in trials} == {
        (b, s) for b in (4, 8) for s in (128, 256)
    }
    for t in trials:
        assert t.key.endswith(f"|seq={t.seq_len}")
        assert t.workload_options["extra"]["seq_len"] == t.seq_len
        assert TrialSpec.from_dict(t.to_dict()) == t
    assert plan.workload_options == {}  # the plan's own options are not touched


def test_without_seq_lens_keys_and_options_are_unchanged() -> None:
    (trial,) = Plan(workload="linear", batch_sizes=[4]).trials()
    assert trial.seq_len is None and trial.key == "cpu|bs=4|r=0"
    assert "extra" not in trial.workload_options


def test_seq_lens_parse_sorted_and_refuse_bad_items() -> None:
    assert parse_seq_lens("512, 128,256,128") == [128, 256, 512]
    for bad in ("", "0", "128,-1", "12.5", "abc"):
        with pytest.raises(UsageError, match="--seq-lens"):
            parse_seq_lens(bad)


def test_seq_lens_are_refused_for_frameworks() -> None:
    with pytest.raises(UsageError, match="--seq-lens.*keras"):
        Plan(workload="m:f", batch_sizes=[4], seq_lens=[128], framework="keras")


def _trial(b: int, seq: int, rng: random.Random, status: str = "ok") -> TrialResult:
    spec = TrialSpec(workload="gpt", device="cpu", batch_size=b, seq_len=seq)
    if status != "ok":
        return TrialResult.from_spec(spec, status=status)
    steps = [0.001 * b * seq * rng.lognormvariate(0, 0.05) for _ in range(30)]
    result = TrialResult.from_spec(
        spec, step_times_s=steps, step_time_s=StepStats.from_samples(steps)
    )
    stamp_tokens(result, seq)
    stamp_token_rates(result)
    return result


def test_each_seq_len_is_a_series_and_points_give_tokens_per_s() -> None:
    from batchscope.analyse.explain import analyse_run

    rng = random.Random(7)
    trials = [_trial(b, s, rng) for s in (16, 32) for b in (2, 4, 8)]
    trials.append(_trial(16, 32, rng, status="oom"))
    run = RunResult(
        run_id="r", created="now", workload={"name": "gpt"}, settings={}, environment={}
    )
    run.trials = trials
    view = series_view(run)
    assert view.devices == ["cpu seq=16", "cpu seq=32"]
    assert series_view(view).devices == view.devices  # idempotent
    oom = [t for t in view.trials if t.status == "oom"]
    assert oom[0].device == "cpu seq=32"  # a failed trial stays in its length's series
    analysis = analyse_run(run)
    for device in analysis.devices:
        seq = int(device.device.split("seq=")[1])
        for b in (2, 4, 8):
            p = device.point(b)
            assert p is not None and p.tokens_per_step == b * seq
            assert p.tokens_per_s == pytest.approx(b * seq / p.step_time_s)
            assert p.tokens_per_s_low == pytest.approx(b * seq / p.step_time_high_s)
            trial = next(t for t in trials if t.batch_size == b and t.seq_len == seq)
            assert trial.tokens_per_s == pytest.approx(b * seq / trial.step_time_s.median)


def test_token_fields_round_trip_and_old_results_load_without_them() -> None:
    rng = random.Random(1)
    t = _trial(4, 64, rng)
    t.flops_per_step = 6400
    stamp_token_rates(t)
    assert t.flops_per_token == 25.0
    again = TrialResult.from_dict(t.to_dict())
    assert again == t
    old = t.to_dict()
    for key in ("seq_len", "tokens_per_step", "tokens_per_s", "flops_per_token", "val_perplexity"):
        old.pop(key)
    assert TrialResult.from_dict(old).tokens_per_s is None
