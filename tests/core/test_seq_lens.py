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


def test_a_stored_plan_resumes_with_the_same_sequence_trials() -> None:
    from batchscope.run.resume import stored_plan

    plan = Plan(workload="gpt", batch_sizes=[4, 8], seq_lens=[128, 256])
    run = RunResult(
        run_id="r",
        created="now",
        workload={"spec": "gpt", "options": {}},
        settings=plan.settings(),
        environment={},
    )
    again = stored_plan(run)
    assert again.seq_lens == [128, 256]
    assert [t.key for t in again.trials()] == [t.key for t in plan.trials()]


def _run(trials: list[TrialResult]) -> RunResult:
    run = RunResult(
        run_id="r", created="now", workload={"name": "gpt"}, settings={}, environment={}
    )
    run.trials = trials
    return run


def test_speedups_between_sequence_lengths_are_per_token() -> None:
    from batchscope.analyse.explain import analyse_run

    rng = random.Random(3)
    # the step time is proportional to the tokens: per token both lengths are equally fast
    run = _run([_trial(b, s, rng) for s in (16, 32) for b in (2, 4, 8)])
    analysis = analyse_run(run)
    assert analysis.speedups and all(s.per == "token" for s in analysis.speedups)
    for s in analysis.speedups:
        assert s.ratio < 1.2  # per sample it would be ~2×: a sample of 32 tokens is two of 16
        assert s.low is not None and s.low < 1.0  # so never "faster beyond the noise"


def test_the_table_shows_tokens_for_a_sequence_run_only() -> None:
    from batchscope.core.series import series_view
    from batchscope.report.rows import device_rows, headers

    rng = random.Random(5)
    run = series_view(_run([_trial(b, 16, rng) for b in (2, 4, 8)]))
    wide, compact = headers(run), headers(run, wide=False)
    assert "Tokens/step" in wide and "Tokens/s [95 % CI]" in wide
    assert "Tokens/s" in compact and "Samples/s" not in compact
    rows = device_rows(run, "cpu seq=16")
    cells = dict(zip(wide, rows[0].cells(), strict=True))
    assert cells["Tokens/step"] == "32"
    from batchscope.analyse.explain import analyse_run
    from batchscope.report.wording import fmt_rate

    device = analyse_run(run).device("cpu seq=16")
    assert device is not None
    point = device.point(2)
    assert point is not None
    assert cells["Tokens/s [95 % CI]"].split()[0] == fmt_rate(32 / point.step_time_s)
    plain = TrialResult.from_dict({**run.trials[0].to_dict(), "tokens_per_step": None})
    assert "Tokens/step" not in headers(_run([plain]))


def test_the_memory_against_tokens_figure_is_drawn_for_sequence_runs_only() -> None:
    from batchscope.analyse.explain import analyse_run
    from batchscope.report.plots import plot_memory_tokens

    rng = random.Random(9)
    trials = [_trial(b, s, rng) for s in (16, 32) for b in (2, 4)]
    for t in trials:
        t.peak_memory_bytes = 2**20 * t.batch_size * (t.seq_len or 1)
    png = plot_memory_tokens(analyse_run(_run(trials)), workload="gpt")
    assert png is not None and png.startswith(b"\x89PNG")
    plain = [TrialResult.from_dict({**t.to_dict(), "tokens_per_step": None}) for t in trials]
    assert plot_memory_tokens(analyse_run(_run(plain))) is None
