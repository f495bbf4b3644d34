"""Where users meet the CLI: exit codes scripts can use, ``-`` for standard output,
``--version``, ``compare --json`` and its CI gate, ranges that say what they ran."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from batchscope.core.results import RunResult, StepStats, TrialResult
from batchscope.report.export import to_json
from conftest import run_cli

QUICK = ("-b", "8,16", "--steps", "8", "--warmup", "0", "--threads", "1", "--no-store")


def test_version() -> None:
    code, out, _ = run_cli("--version", cwd=".")
    assert code == 0 and out.startswith("batchscope 0.")


def test_no_flag_in_any_help_shows_a_bool_type(capsys: pytest.CaptureFixture[str]) -> None:
    from batchscope.cli.main import main

    commands = ["", "sweep", "demo", "runs", "show", "export", "report", "compare", "fit"]
    commands += ["maxbs", "noise", "watch", "env", "workloads"]
    for command in commands:
        with pytest.raises(SystemExit) as done:
            main([*command.split(), "--help"])
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert "--help" in out and "Show this message" in out, command
        assert "<bool>" not in out, command


def test_every_trial_ok_exits_0_and_json_dash_is_stdout(tmp_path: Path) -> None:
    code, out, err = run_cli("sweep", "linear", *QUICK, "--json", "-", "-q", cwd=tmp_path)
    assert code == 0, err
    data = json.loads(out)  # stdout is exactly the JSON; the table went to stderr
    assert data["schema"] == "batchscope.results/1" and "analysis" in data
    assert "linear on cpu" in err
    assert not (tmp_path / "-").exists()


def test_a_failed_trial_exits_1_and_keeps_everything(tmp_path: Path) -> None:
    code, out, err = run_cli(
        "sweep", "simplecnn", "-b", "8,4096", "--steps", "8", "--warmup", "0", "--threads", "1",
        "--memory-limit", "200MiB", "--json", "r.json", "--no-store", cwd=tmp_path,
    )  # fmt: skip
    assert code == 1, (out, err)
    assert "did not finish ok (oom): exit status 1" in err
    trials = json.loads((tmp_path / "r.json").read_text())["trials"]
    assert [t["status"] for t in trials] == ["ok", "oom"]
    assert "--memory-limit 200 MiB" in trials[1]["error"]  # in MiB, not in raw bytes


def test_a_range_that_misses_its_end_says_what_it_ran(tmp_path: Path) -> None:
    code, _, err = run_cli("sweep", "linear", "-b", "8..20", *QUICK[2:], cwd=tmp_path)
    assert code == 0, err
    assert "note: --batch-sizes 8..20 runs 8, 16 (20 is not a doubling of 8)" in err


def _run(run_id: str, scale: float) -> RunResult:
    trials = []
    for b in (8, 32):
        times = [0.001 * b * scale * (1 + 0.01 * math.sin(k)) for k in range(12)]
        stats = StepStats.from_samples(times)
        trials.append(
            TrialResult(
                device="cpu",
                batch_size=b,
                step_time_s=stats,
                step_times_s=times,
                samples_per_s=b / stats.median,
            )
        )
    return RunResult(
        run_id=run_id,
        created="now",
        workload={"name": "w"},
        settings={},
        environment={},
        trials=trials,
    )


def test_compare_json_and_the_ci_gate(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(to_json(_run("a", 1.0)))
    (tmp_path / "b.json").write_text(to_json(_run("b", 1.2)))  # B 20 % slower
    code, out, err = run_cli("compare", "a.json", "b.json", "--json", "-", cwd=tmp_path)
    assert code == 0, err
    data = json.loads(out)
    by_b = {c["batch_size"]: c for c in data["comparisons"]}
    assert abs(by_b[8]["b_time_over_a"] - 1.2) < 1e-6 and by_b[8]["low"] > 1.1
    code, _, err = run_cli("compare", "a.json", "b.json", "--fail-if-slower", "5%", cwd=tmp_path)
    assert code == 1 and "slower than A by more than 5% beyond the noise at b=8" in err
    code, _, err = run_cli("compare", "a.json", "b.json", "--fail-if-slower", "30%", cwd=tmp_path)
    assert code == 0, err
