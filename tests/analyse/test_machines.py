"""Which machines a run's trials ran on, and the flag on speedups that cross them."""

from __future__ import annotations

from batchscope.analyse.machines import crosses_machines, machines, split_series
from batchscope.analyse.speedup import Speedup
from batchscope.core.results import RunResult, TrialResult
from batchscope.report.wording import machine_lines, speedup_line


def run_of(*trials: tuple[str, int, str | None]) -> RunResult:
    """Trials given as (device, batch size, host); the host's fingerprint is 'fp-HOST'."""
    return RunResult(
        run_id="r",
        created="now",
        workload={"name": "linear"},
        settings={},
        environment={},
        trials=[
            TrialResult(
                device=d,
                batch_size=b,
                hostname=h,
                machine_fingerprint=None if h is None else f"fp-{h}-0123456789",
            )
            for d, b, h in trials
        ],
    )


SPEEDUP = Speedup(fast="cuda:0", slow="cpu", batch_size=64, ratio=40.0, low=38.0, high=42.0)


def test_one_machine_says_nothing_and_flags_nothing() -> None:
    run = run_of(("cpu", 64, "a"), ("cuda:0", 64, "a"))
    assert len(machines(run)) == 1 and machine_lines(run) == []
    assert "across machines" not in speedup_line(run, SPEEDUP)


def test_results_without_a_fingerprint_count_as_no_machine() -> None:
    run = run_of(("cpu", 64, None), ("cuda:0", 64, None))
    assert machines(run) == [] and machine_lines(run) == []


def test_two_machines_are_listed_and_a_speedup_across_them_is_flagged() -> None:
    run = run_of(("cpu", 32, "a"), ("cpu", 64, "a"), ("cuda:0", 64, "b"))
    found = machines(run)
    assert [(m.hostname, m.trials, m.series) for m in found] == [
        ("a", 2, ("cpu",)),
        ("b", 1, ("cuda:0",)),
    ]
    assert crosses_machines(run, "cuda:0", "cpu") and not crosses_machines(run, "cpu")
    assert "across machines (a (fp-a-012), b (fp-b-012))" in speedup_line(run, SPEEDUP)
    lines = machine_lines(run)
    assert len(lines) == 1 and lines[0].startswith("the trials ran on 2 machines")


def test_a_series_split_over_machines_is_named() -> None:
    run = run_of(("cpu", 32, "a"), ("cpu", 64, "b"))
    assert [s for s, _ in split_series(run)] == ["cpu"]
    assert any(line.startswith("cpu ran on 2 machines") for line in machine_lines(run))
