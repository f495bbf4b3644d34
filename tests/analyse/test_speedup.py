"""Comparisons rest on every repeat, not on repeat 0 alone."""

from __future__ import annotations

from batchscope.analyse.speedup import device_speedups, merge_repeats
from batchscope.core.results import RunResult, StepStats, TrialResult
from batchscope.report.markdown import compare_document, render_markdown


def _trial(device: str, b: int, times: list[float], repeat: int = 0, **kw: object) -> TrialResult:
    stats = StepStats.from_samples(times)
    return TrialResult(
        device=device,
        batch_size=b,
        repeat=repeat,
        step_time_s=stats,
        step_times_s=list(times),
        measured_steps=len(times),
        samples_per_s=b / stats.median,
        **kw,  # type: ignore[arg-type]
    )


def _run(trials: list[TrialResult], run_id: str = "r") -> RunResult:
    return RunResult(
        run_id=run_id,
        created="now",
        workload={"name": "w"},
        settings={},
        environment={},
        trials=trials,
    )


def test_repeats_are_pooled_per_device_and_batch_size() -> None:
    run = _run(
        [
            _trial("cpu", 16, [1.0, 1.0, 1.0]),
            _trial("cpu", 16, [3.0, 3.0, 3.0], repeat=1),
            _trial("cpu", 32, [2.0, 2.0]),
            TrialResult(device="cpu", batch_size=64, status="oom"),
        ]
    )
    merged = merge_repeats(run)
    by_bs = {t.batch_size: t for t in merged.trials}
    assert sorted(by_bs) == [16, 32, 64]
    assert by_bs[16].measured_steps == 6 and by_bs[16].step_time_s is not None
    assert by_bs[16].step_time_s.mean == 2.0  # both repeats, not repeat 0's 1.0
    assert any("2 repeats pooled" in n for n in by_bs[16].notes)
    assert by_bs[32].step_times_s == [2.0, 2.0] and by_bs[64].status == "oom"


def test_speedup_and_compare_use_every_repeat() -> None:
    cpu = [_trial("cpu", 16, [1.0] * 4), _trial("cpu", 16, [3.0] * 4, repeat=1)]
    gpu = [_trial("cuda", 16, [0.1] * 4), _trial("cuda", 16, [0.1] * 4, repeat=1)]
    (s,) = device_speedups(_run(cpu + gpu))
    assert s.fast == "cuda" and abs(s.ratio - 20.0) < 1e-9  # mean 2.0 s vs 0.1 s, not 10×
    text = render_markdown(compare_document(_run(cpu, "a"), _run(gpu, "b")))
    assert "20 ± " in text and "faster" in text
