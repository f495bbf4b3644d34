"""The data-parallel section, table column and plot appear only when more than one
world size ran (fake trials: no torch, no timing)."""

from __future__ import annotations

import json
from pathlib import Path

from batchscope.analyse.scaling import stamp_scaling
from batchscope.core.results import RunResult, StepStats, TrialResult
from batchscope.report.build import write_report
from batchscope.report.export import csv_rows, to_json
from batchscope.report.terminal import render_run


def _trial(world: int, median: float) -> TrialResult:
    times = [median * (1 + 0.01 * (i % 5 - 2)) for i in range(20)]
    stats = StepStats.from_samples(times)
    return TrialResult(
        device="cpu",
        batch_size=32,
        step_time_s=stats,
        step_times_s=times,
        samples_per_s=32 * world / stats.median,
        world_size=world,
        per_device_batch_size=32,
        global_batch_size=32 * world,
        scaling_mode="weak",
        samples_per_epoch=1000,
    )


def _run(*worlds: int) -> RunResult:
    trials = [_trial(w, 0.01 * (1 + 0.1 * (w - 1))) for w in worlds]
    for t in trials:
        stamp_scaling(t, trials)
    return RunResult(
        run_id="r1",
        created="now",
        workload={"name": "linear"},
        settings={},
        environment={},
        trials=trials,
    )


def test_two_world_sizes_get_the_section_the_plot_and_the_csv_fields(tmp_path: Path) -> None:
    from rich.console import Console

    files = write_report(_run(1, 2), tmp_path)
    markdown = files.markdown.read_text()
    assert "## Data-parallel scaling" in markdown and "| World size |" in markdown
    assert "cpu: 2 ranks reach 1.8× one rank at b=32 per device" in markdown
    assert (tmp_path / "scaling.png").stat().st_size > 0
    console = Console(width=160, record=True)
    console.print(render_run(_run(1, 2)))
    assert "World size" in console.export_text()
    scaling = json.loads(to_json(_run(1, 2)))["scaling"]
    assert [f["world_size"] for f in scaling["figures"]] == [1, 2]
    assert scaling["verdicts"][0].startswith("cpu: 2 ranks reach 1.8×")
    row = csv_rows(_run(1, 2))[1]
    assert row["world_size"] == 2 and row["global_batch_size"] == 64
    assert abs(row["scaling_efficiency"] - 1 / 1.1) < 1e-9


def test_one_world_size_gets_none_of_it(tmp_path: Path) -> None:
    files = write_report(_run(2), tmp_path)
    assert "Data-parallel scaling" not in files.markdown.read_text()
    assert not (tmp_path / "scaling.png").exists()
    assert json.loads(to_json(_run(2)))["scaling"]["verdicts"] == []  # no one-rank line
    assert "scaling" not in json.loads(
        to_json(RunResult(run_id="r", created="now", workload={}, settings={}, environment={}))
    )
