"""Tests for batchscope.analyse.explain on hand-built runs: points with intervals, the
recommendation, measured causes, warnings, speedups (the seeds' 45.77 and 9.97), the
terminal lines and the JSON verdicts."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console

from batchscope.analyse.explain import analyse_run
from batchscope.core.results import RunResult, StepStats, TrialResult
from batchscope.report.wording import speedup_text, summary_lines

MIB = 1024**2
#: ±0.2 % around 1: a quiet trial's relative step times
WOBBLE = [1.0, 1.002, 0.998, 1.001, 0.999] * 4


def trial(
    b: int,
    step_s: float,
    *,
    device: str = "cpu",
    repeat: int = 0,
    times: list[float] | None = None,
    **kw: object,
) -> TrialResult:
    times = times if times is not None else [step_s * w for w in WOBBLE]
    stats = StepStats.from_samples(times)
    return TrialResult(
        device=device,
        batch_size=b,
        repeat=repeat,
        step_time_s=stats,
        step_times_s=list(times),
        samples_per_s=b / stats.median,
        warmup_steps=3,
        **kw,  # type: ignore[arg-type]
    )


def failed(b: int, status: str = "oom", device: str = "cpu") -> TrialResult:
    return TrialResult(device=device, batch_size=b, status=status, error=f"{status} at {b}")


def run_of(trials: list[TrialResult], **settings: object) -> RunResult:
    return RunResult(
        run_id="r1",
        created="2026-01-01T00:00:00+00:00",
        workload={"name": "toy"},
        settings={"repeats": 1, **settings},
        environment={},
        trials=trials,
    )


def sweep_trials() -> list[TrialResult]:
    """cpu: b=64 is fastest (256/s); b=32 gives 246/s (96.2 %) on less memory; 256 OOMs."""
    return [
        trial(16, 0.100, peak_memory_bytes=80 * MIB),  # 160 samples/s
        trial(32, 0.130, peak_memory_bytes=100 * MIB),  # 246.2 samples/s
        trial(64, 0.250, peak_memory_bytes=150 * MIB),  # 256 samples/s
        trial(128, 0.600, peak_memory_bytes=250 * MIB),  # 213.3 samples/s
        failed(256),
    ]


def test_recommendation_best_smallest_near_best_and_largest_that_fits() -> None:
    d = analyse_run(run_of(sweep_trials())).devices[0]
    rec = d.recommendation
    assert rec.best_throughput is not None and rec.best_throughput.batch_size == 64
    assert "256 samples/s [" in rec.best_throughput.reason
    assert rec.smallest_near_best is not None and rec.smallest_near_best.batch_size == 32
    # 246.15 / 256 = 96.2 %, confirmed: its interval (±0.2 % steps) stays above 95 %
    assert "96.2% [" in rec.smallest_near_best.reason
    assert "of the fastest's throughput (b=64)" in rec.smallest_near_best.reason
    assert "33% less peak memory (100 MiB vs 150 MiB)" in rec.smallest_near_best.reason
    assert rec.largest_that_fits is not None and rec.largest_that_fits.batch_size == 128
    assert "b=256 ran out of memory" in rec.largest_that_fits.reason
    assert rec.recommended is not None and rec.recommended.batch_size == 32
    assert d.failed == {256: "oom"}
    assert any("b=256 ran out of memory" in c for c in d.causes)


def test_largest_that_fits_from_the_memory_fit_and_limit() -> None:
    # peaks exactly 50 MiB + 1 MiB * b; a 1 GiB limit leaves room for b = 1024 - 50 = 974
    trials = [trial(b, 0.01 * b, peak_memory_bytes=(50 + b) * MIB) for b in (8, 16, 32, 64)]
    d = analyse_run(run_of(trials, memory_limit_bytes=1024 * MIB)).devices[0]
    assert d.memory_fit is not None and d.memory_limit_bytes == 1024 * MIB
    choice = d.recommendation.largest_that_fits
    assert choice is not None and choice.batch_size == 974
    assert "predicted by the memory fit" in choice.reason and "not measured" in choice.reason


def test_a_memory_line_through_two_sizes_does_not_predict() -> None:
    trials = [trial(b, 0.01 * b, peak_memory_bytes=(50 + b) * MIB) for b in (8, 16)]
    d = analyse_run(run_of(trials, memory_limit_bytes=1024 * MIB)).devices[0]
    assert d.memory_fit is not None and not d.memory_fit.can_predict
    choice = d.recommendation.largest_that_fits
    assert choice is not None and choice.batch_size == 16 and "largest measured" in choice.reason
    assert any(
        "no line to predict from: a line through 2 batch sizes" in x for x in summary_lines(d)
    )


def test_a_memory_line_that_falls_says_why_it_cannot_predict() -> None:
    peaks = {8: 90, 16: 80, 32: 85, 64: 70}
    trials = [trial(b, 0.01 * b, peak_memory_bytes=m * MIB) for b, m in peaks.items()]
    d = analyse_run(run_of(trials)).devices[0]
    assert d.memory_fit is not None and not d.memory_fit.can_predict
    line = next(x for x in summary_lines(d) if x.startswith("memory:"))
    assert "memory does not grow with the batch size here" in line and "+ -" not in line


def test_largest_that_fits_is_unknown_without_oom_or_limit() -> None:
    trials = [trial(b, 0.01 * b) for b in (8, 16, 32)]
    assert analyse_run(run_of(trials)).devices[0].recommendation.largest_that_fits is None


@pytest.mark.parametrize(("cpu_s", "gpu_s", "expected"), [(425.7, 9.3, 45.77), (71.60, 7.18, 9.97)])
def test_best_vs_best_reproduces_the_seeds(cpu_s: float, gpu_s: float, expected: float) -> None:
    trials = [
        trial(32, cpu_s * 0.6),  # slower per sample than b=64
        trial(64, cpu_s),
        trial(64, gpu_s, device="cuda"),
        trial(128, gpu_s * 2.5, device="cuda"),
    ]
    a = analyse_run(run_of(trials))
    (best,) = a.best_vs_best
    assert (best.fast, best.slow, best.batch_size) == ("cuda", "cpu", None)
    assert (best.fast_batch_size, best.slow_batch_size) == (64, 64)
    assert round(best.ratio, 2) == expected
    assert best.low is not None and best.high is not None and best.low < best.ratio < best.high
    assert "best against best (b=64 vs b=64" in speedup_text(best)


def test_a_speedup_is_a_ratio_of_medians_not_of_means() -> None:
    """One 5 s outlier among 1 s CPU steps moves the mean, not the median (the 50× stays)."""
    cpu_times = [1.0 * w for w in WOBBLE]
    cpu_times[3] = 5.0
    trials = [trial(16, 1.0, times=cpu_times), trial(16, 0.02, device="cuda:0")]
    (s,) = analyse_run(run_of(trials)).speedups
    assert s.ratio == pytest.approx(50.0, rel=0.01)
    assert s.low is not None and s.high is not None and s.low < 50.0 < s.high and s.high < 55
    assert speedup_text(s).startswith("cuda:0 ran 50")


def test_repeats_are_merged_into_one_point() -> None:
    trials = [
        trial(16, 0.100),
        trial(16, 0.110, repeat=1),
        trial(16, 0.120, repeat=2),
        trial(32, 0.2),
        trial(32, 0.2, repeat=1),
        trial(32, 0.2, repeat=2),
        trial(64, 0.4),
    ]
    d = analyse_run(run_of(trials)).devices[0]
    p = d.points[0]
    assert p.batch_size == 16 and p.n_trials == 3 and p.n_steps == 60
    assert p.step_time_s == pytest.approx((0.1 * 0.11 * 0.12) ** (1 / 3))
    assert p.round_medians_s == pytest.approx([0.1, 0.11, 0.12])
    assert p.tau_known and d.drift.known
    # the rounds disagree by ±9 %: the interval is far wider than one round's ±0.2 %
    assert p.step_time_low_s is not None and p.step_time_high_s is not None
    assert p.step_time_high_s / p.step_time_low_s > 1.05
    assert p.samples_per_s == pytest.approx(16 / p.step_time_s)
    assert p.samples_per_s_low == pytest.approx(16 / p.step_time_high_s)


def test_warnings_fire_on_bad_trials_and_not_on_clean_ones() -> None:
    clean = analyse_run(run_of([trial(b, 0.01 * b) for b in (8, 16, 32)])).devices[0]
    assert clean.warnings == []
    noisy = trial(8, 0.1, times=[0.100, 0.160] * 5)
    slow_start = trial(16, 0.2, times=[1.0, 0.9] + [0.2 * w for w in WOBBLE[2:]])
    outlier = trial(32, 0.4, times=[0.4 * w for w in WOBBLE[:9]] + [2.0] + [0.4] * 10)
    d = analyse_run(run_of([noisy, slow_start, outlier])).devices[0]
    text = "\n".join(d.warnings)
    assert "cpu: imprecise medians: ±" in text and "at b=8 (n=10)" in text
    assert "cpu, batch size 16: the first measured step" in text and "raise --warmup" in text
    assert "cpu, batch size 32: 1 of 20 step times are statistical outliers" in text


def test_a_trial_stopped_by_its_time_limit_is_named() -> None:
    t = trial(8, 0.1, stopped_by="time_limit", precision_reached=0.031)
    d = analyse_run(run_of([t, trial(16, 0.2)])).devices[0]
    assert any("stopped at --max-time" in w and "b=8 (±3.1%)" in w for w in d.warnings)


def test_too_few_batch_sizes_leave_the_fits_out_and_say_why() -> None:
    d = analyse_run(run_of([trial(8, 0.1), trial(16, 0.15), failed(32)])).devices[0]
    assert d.time_fit is None and d.throughput_fit is None
    assert d.u_shape is not None and d.u_shape.verdict == "not_judged"
    assert any("2 batch sizes ran successfully" in w and "at least 3" in w for w in d.warnings)


def test_fits_and_u_shape_on_a_u_shaped_run() -> None:
    # per-sample times 10, 8, 6, 5, 6.5, 8 ms with a 0.2 % wobble: a clear U
    per_sample = {8: 10.0, 16: 8.0, 32: 6.0, 64: 5.0, 128: 6.5, 256: 8.0}
    trials = [trial(b, ms * 1e-3 * b) for b, ms in per_sample.items()]
    d = analyse_run(run_of(trials)).devices[0]
    assert d.u_shape is not None and d.u_shape.present and d.u_shape.b_min == 64
    assert d.time_fit is not None and not d.time_fit.ok and not d.time_fit.meaningful
    lines = summary_lines(d)
    assert any(line.startswith("shape: a U shape: the time per sample falls") for line in lines)
    assert any(line.startswith("fit T(b) = c/b^α + T_min: does not fit") for line in lines)


def test_points_with_too_few_steps_are_not_judged() -> None:
    """The demo's old layout (8/4/2/1 steps): no verdict rests on b=64 or b=128."""
    trials = [
        trial(16, 1.0, times=[1.0 * w for w in WOBBLE[:8]]),
        trial(32, 2.0, times=[2.0, 2.1, 1.9, 2.0]),
        trial(64, 4.2, times=[4.2, 4.0]),
        trial(128, 8.0, times=[8.0]),
    ]
    d = analyse_run(run_of(trials, epochs=1)).devices[0]
    assert d.u_shape is not None and d.u_shape.verdict == "not_judged"
    assert "b=128 has 1 measured step" in d.u_shape.message
    assert d.ranking.fastest is not None and d.ranking.fastest.batch_size == 16
    assert set(d.ranking.not_judged) == {32, 64, 128}
    p128 = d.point(128)
    assert p128 is not None and p128.step_time_low_s is None and not p128.judged
    verdicts = d.verdicts()
    assert verdicts["fastest"]["batch_size"] == 16 and verdicts["fastest"]["tied_with"] == []
    assert "128" in verdicts["not_judged"]


def test_a_flat_fit_says_what_it_cannot_determine() -> None:
    """A flat curve: c cannot be told from 0, so α is "not determined", never "4 [4, 4]"."""
    trials = [trial(b, 1e-3 * b) for b in (16, 32, 64, 128)]
    d = analyse_run(run_of(trials)).devices[0]
    fit = d.time_fit
    assert fit is not None and not fit.params["alpha"].determined
    line = next(x for x in summary_lines(d) if x.startswith("fit T(b)"))
    assert "α = 4" not in line and "[4, 4]" not in line
    assert "not determined" in line or "not a result" in line


def test_measured_causes_name_their_figures() -> None:
    trials = [
        trial(
            16,
            0.1,
            data_wait_fraction=0.02,
            drop_last=True,
            samples_per_epoch=480,
            peak_memory_bytes=100 * MIB,
        ),
        trial(
            64,
            0.3,
            data_wait_fraction=0.10,
            drop_last=True,
            samples_per_epoch=448,
            peak_memory_bytes=200 * MIB,
        ),
        trial(
            256,
            1.0,
            data_wait_fraction=0.30,
            drop_last=True,
            samples_per_epoch=256,
            peak_memory_bytes=900 * MIB,
        ),
        failed(512),
    ]
    d = analyse_run(run_of(trials, memory_limit_bytes=1024 * MIB)).devices[0]
    text = "\n".join(d.causes)
    assert (
        "waiting for data grows with batch size: 2% of the step time at b=16, 30% at b=256" in text
    )
    assert "480 samples at b=16 but 256 at b=256 (224 fewer, 47%)" in text
    assert "peak memory at b=256 is 900 MiB, 88% of --memory-limit 1 GiB" in text
    assert "b=512 ran out of memory (oom)" in text


def test_analysis_of_an_empty_or_all_failed_run() -> None:
    assert analyse_run(run_of([])).devices == []
    d = analyse_run(run_of([failed(8), failed(16, "crashed")])).devices[0]
    assert d.points == [] and d.recommendation.best_throughput is None
    assert d.recommendation.recommended is None
    assert d.failed == {8: "oom", 16: "crashed"}
    assert any("ended with status 'crashed'" in c for c in d.causes)


def test_a_batch_larger_than_the_epoch_is_explained_not_called_a_failure() -> None:
    whole = trial(256, 1.0, samples_per_epoch=128)
    whole.step_time_s = None  # trained one partial batch of 128: no full-size step
    d = analyse_run(run_of(sweep_trials()[:2] + [whole])).devices[0]
    text = "\n".join(d.causes)
    assert "b=256 ran, but no step had a full batch of 256 (an epoch holds 128 samples)" in text
    assert "ended with status" not in text


def test_to_dict_and_verdicts_are_json_without_nan() -> None:
    a = analyse_run(run_of(sweep_trials() + [trial(64, 0.02, device="cuda")]))
    data = json.loads(json.dumps(a.to_dict(), allow_nan=False))
    assert data["devices"][0]["choices"]["fastest"]["batch_size"] == 64
    assert data["best_vs_best"][0]["fast"] == "cuda"
    verdicts = json.loads(json.dumps(a.verdicts(), allow_nan=False))
    cpu = verdicts["cpu"]
    assert cpu["fastest"]["batch_size"] == 64
    assert set(cpu["fastest"]["samples_per_s"]) == {"value", "low", "high"}
    assert cpu["recommendation"]["batch_size"] == 32 and cpu["recommendation"]["reason"]
    assert cpu["u_shape"]["verdict"] in ("u", "no_u", "not_judged")
    assert set(cpu["fits"]) == {"time_per_sample", "throughput"}
    assert "memory_model" in cpu


def test_terminal_shows_recommendation_fits_warnings_and_one_row_per_size() -> None:
    from batchscope.report.terminal import render_run

    trials = sweep_trials() + [
        trial(16, 0.10, repeat=1, peak_memory_bytes=80 * MIB),
        trial(32, 0.13, repeat=1, peak_memory_bytes=100 * MIB),
        trial(64, 0.30, repeat=1, peak_memory_bytes=150 * MIB),
        trial(128, 0.60, repeat=1, peak_memory_bytes=250 * MIB),
    ]
    buf = io.StringIO()
    Console(file=buf, width=220, color_system=None).print(render_run(run_of(trials)))
    out = buf.getvalue()
    assert "fastest: b=" in out and "largest that fits: b=128" in out
    assert "fit T(b) = c/b^α + T_min" in out
    assert "(repeat 2)" not in out  # repeats are merged into one row per batch size
    assert len(re.findall(r"^│\s+64 │", out, re.M)) == 1
    assert re.search(r"│\s+2×20\s+│", out)  # two rounds of 20 steps, in the n column
    assert "warning: cpu: the machine varied from round to round" in out
