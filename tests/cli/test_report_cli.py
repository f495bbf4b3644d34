"""``batchscope report``, ``batchscope compare`` and the report a sweep writes, end to end
in real subprocesses. Runs are stored or written as JSON by hand (no training), except
for one tiny sweep."""

from __future__ import annotations

import json
import math
from pathlib import Path

from batchscope.core.results import RunResult, StepStats, TrialResult
from batchscope.report.export import to_json
from batchscope.run.store import Store
from conftest import CliResult, run_cli

RUN_ID = "20260101-120000-abcd"


def make_run(run_id: str = RUN_ID, name: str = "linear", faster: float = 1.0) -> RunResult:
    trials = []
    for b in (8, 32, 128):
        step = (0.002 / b**0.8 + 0.0001) * b * faster
        samples = [step * (1 + 0.02 * math.sin(3 * k + b)) for k in range(10)]
        stats = StepStats.from_samples(samples)
        trials.append(
            TrialResult(
                device="cpu",
                batch_size=b,
                step_time_s=stats,
                step_times_s=samples,
                samples_per_s=b / stats.median,
                peak_memory_bytes=1_000_000 + 4_000 * b,
            )
        )
    trials.append(TrialResult(device="cpu", batch_size=512, status="oom", error="out of memory"))
    return RunResult(
        run_id=run_id,
        created="2026-01-01T12:00:00+00:00",
        workload={"name": name, "spec": name, "description": "a test", "notes": []},
        settings={"steps": 10, "warmup": 2, "threads": 2, "seed": 0},
        environment={"cpu_model": "Test CPU", "torch": "2.3.0", "cpu_cores_logical": 2},
        trials=trials,
    )


def write_json(path: Path, run: RunResult) -> Path:
    path.write_text(to_json(run), encoding="utf-8")
    return path


def one_error_line(result: CliResult, *needles: str) -> None:
    code, out, err = result
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("batchscope: error: ")
    for needle in needles:
        assert needle in lines[0]


def test_report_from_a_stored_run_id_prefix(tmp_path: Path) -> None:
    run = make_run()
    with Store(tmp_path / "results.db") as store:
        store.create_run(run, [f"k{i}" for i in range(len(run.trials))])
        for i, trial in enumerate(run.trials):
            store.add_trial(run.run_id, f"k{i}", trial)
    code, out, err = run_cli(
        "report", RUN_ID[:-3], "--store", "results.db", "--out", "rep", cwd=tmp_path
    )
    assert code == 0, err
    assert f"wrote the report of run {RUN_ID} to rep/" in out
    for name in ("report.html", "report.md", "time_per_sample.png", "relative.png"):
        assert (tmp_path / "rep" / name).is_file()
        assert f"rep/{name}" in out
    md = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    assert "| 512 |" in md and "oom" in md


def test_report_from_a_json_file_goes_to_the_default_folder(tmp_path: Path) -> None:
    write_json(tmp_path / "r.json", make_run())
    code, out, err = run_cli("report", "r.json", cwd=tmp_path)
    assert code == 0, err
    folder = tmp_path / "batchscope-results" / RUN_ID
    assert (folder / "report.html").is_file() and (folder / "report.md").is_file()
    assert f"batchscope-results/{RUN_ID}/report.html" in out


def test_report_bad_inputs_are_one_line_and_exit_2(tmp_path: Path) -> None:
    with Store(tmp_path / "results.db") as store:
        store.create_run(make_run(), [])
    one_error_line(
        run_cli("report", "nosuchrun", "--store", "results.db", cwd=tmp_path),
        "unknown run id 'nosuchrun'",
    )
    (tmp_path / "other.json").write_text(json.dumps({"name": "x"}), encoding="utf-8")
    one_error_line(
        run_cli("report", "other.json", cwd=tmp_path), "is not a batchscope results file"
    )
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    one_error_line(run_cli("report", "broken.json", cwd=tmp_path), "is not JSON")
    write_json(tmp_path / "r.json", make_run())
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    one_error_line(
        run_cli("report", "r.json", "--out", "a-file/sub", cwd=tmp_path),
        "--out",
        "is a file, not a folder",
    )
    assert not (tmp_path / "batchscope-results").exists()


def test_compare_two_runs_with_different_workloads(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", make_run("run-a", "linear"))
    write_json(tmp_path / "b.json", make_run("run-b", "simplecnn", faster=0.5))
    code, out, err = run_cli("compare", "a.json", "b.json", "--markdown", "c.md", cwd=tmp_path)
    assert code == 0, err
    assert "warning: the workloads differ" in out and "linear vs simplecnn" in out
    assert "B vs A" in out and "2× [" in out and "] faster" in out and "Best vs best" in out
    md = (tmp_path / "c.md").read_text(encoding="utf-8")
    assert "> **Warning:** the workloads differ" in md
    assert "| 32 |" in md and "| 2× \\[" in md  # B takes half the time: 2× faster
    one_error_line(run_cli("compare", "a.json", "missing.json", cwd=tmp_path), "missing.json")


def test_sweep_writes_the_report_unless_told_not_to(tmp_path: Path) -> None:
    args = ("sweep", "linear", "-b", "8,32", "--steps", "3", "--warmup", "1")
    code, out, err = run_cli(*args, "--isolation", "none", "--out", "rep", cwd=tmp_path)
    assert code == 0, err
    assert "report: rep/report.html" in err
    assert (tmp_path / "rep" / "report.html").is_file()
    assert (tmp_path / "rep" / "time_per_sample.png").is_file()

    code, out, err = run_cli(*args, "--isolation", "none", "--no-report", cwd=tmp_path)
    assert code == 0, err
    assert "report:" not in err
    assert [p.name for p in (tmp_path / "batchscope-results").iterdir() if p.is_dir()] == []

    one_error_line(
        run_cli(*args, "--out", "x", "--no-report", cwd=tmp_path), "--out and --no-report"
    )
