"""Speedups and ``compare`` rest on every round, as ratios of medians with an interval."""

from __future__ import annotations

import math

from batchscope.analyse.explain import analyse_run
from batchscope.core.results import RunResult, StepStats, TrialResult
from batchscope.report.markdown import compare_document, render_markdown
from batchscope.report.wording import speedup_text

#: ±2 % wobble: a quiet trial's relative step times (12 steps: enough for an interval)
WOBBLE = [1.0, 1.02, 0.98, 1.01, 0.99, 1.0] * 2


def _trial(device: str, b: int, median: float, repeat: int = 0, **kw: object) -> TrialResult:
    times = [median * w for w in WOBBLE]
    stats = StepStats.from_samples(times)
    return TrialResult(
        device=device,
        batch_size=b,
        repeat=repeat,
        step_time_s=stats,
        step_times_s=times,
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


def test_a_point_combines_its_rounds() -> None:
    run = _run(
        [
            _trial("cpu", 16, 1.0),
            _trial("cpu", 16, 3.0, repeat=1),
            _trial("cpu", 32, 2.0),
            _trial("cpu", 32, 2.0, repeat=1),
            TrialResult(device="cpu", batch_size=64, status="oom"),
        ]
    )
    d = analyse_run(run).devices[0]
    p16 = d.point(16)
    assert p16 is not None and p16.n_trials == 2 and p16.n_steps == 24
    assert math.isclose(p16.step_time_s, math.sqrt(3.0), rel_tol=1e-9)  # both rounds, not round 0
    assert d.failed == {64: "oom"}


def test_speedups_use_every_round_and_carry_an_interval() -> None:
    cpu = [_trial("cpu", 16, 1.0), _trial("cpu", 16, 3.0, repeat=1)]
    gpu = [_trial("cuda", 16, 0.1), _trial("cuda", 16, 0.1, repeat=1)]
    (s,) = analyse_run(_run(cpu + gpu)).speedups
    assert s.fast == "cuda" and math.isclose(s.ratio, 10 * math.sqrt(3.0), rel_tol=1e-9)
    assert s.low is not None and s.high is not None and s.low < s.ratio < s.high
    text = speedup_text(s)
    assert text.startswith("cuda ran 17.3× [") and "faster than cpu at b=16" in text


def test_compare_sets_b_against_a_per_batch_size() -> None:
    a = _run([_trial("cpu", 16, 1.0), _trial("cpu", 32, 2.0)], "a")
    b = _run([_trial("cpu", 16, 0.5), _trial("cpu", 32, 2.0)], "b")
    text = render_markdown(compare_document(a, b))
    assert "| 2× \\[1.97–2.03\\] faster |" in text  # b=16: B twice as fast, beyond the noise
    assert "no difference beyond the noise" in text  # b=32: the same
