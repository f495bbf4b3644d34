"""``batchscope noise`` and ``sweep --target`` end to end.

Bad inputs run in real subprocesses (cheap: they fail before torch is imported); the
two commands that train run through the same entry point in this process, which
saves a torch import each.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchscope.cli.main import main
from batchscope.core.results import RunResult, StepStats, TrialResult
from conftest import CliResult, run_cli


def run_here(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, cwd: Path, *args: str
) -> CliResult:
    """``batchscope ARGS`` through :func:`main` in this process, in ``cwd``."""
    monkeypatch.chdir(cwd)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def _write_run(path: Path, workload: str, rates: dict[int, float]) -> None:
    """A results JSON with the given throughput (samples/s) per batch size."""
    trials = [
        TrialResult(
            device="cpu",
            batch_size=b,
            step_time_s=StepStats.from_samples([b / r] * 3),
            samples_per_s=r,
        )
        for b, r in rates.items()
    ]
    run = RunResult(
        run_id="20260101-000000-abcd",
        created="2026-01-01T00:00:00",
        workload={"name": workload, "spec": workload},
        settings={},
        environment={},
        trials=trials,
    )
    path.write_text(json.dumps({**run.to_dict()}), encoding="utf-8")


def test_noise_with_goodput_against_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_run(tmp_path / "r.json", "linear", {16: 2000.0, 64: 6000.0, 256: 9000.0})
    code, out, err = run_here(
        capsys, monkeypatch, tmp_path,
        "noise", "linear", "--images", "2000", "--batch-size", "64", "--micro-batches", "4",
        "--steps", "20", "--every", "10", "--run", "r.json", "--json", "n.json", "-q",
        "--threads", "1",
    )  # fmt: skip
    assert code == 0, err
    assert "B_noise ≈" in out and "95 % interval" in out
    assert "goodput-optimal: b=" in out and "throughput-optimal: b=256" in out
    data = json.loads((tmp_path / "n.json").read_text(encoding="utf-8"))
    noise = data["noise"]
    assert noise["batch_size"] == 64 and noise["micro_batch_size"] == 16
    assert [p["step"] for p in noise["points"]] == [10, 20]
    assert [r["batch_size"] for r in data["efficiency"]] == [16, 64, 256]
    assert data["efficiency"][0]["efficiency"] == 1.0
    rows = {r["batch_size"]: r for r in data["goodput"]}
    assert rows[64]["goodput"] == pytest.approx(6000.0 * rows[64]["efficiency"])
    (best,) = data["best"]
    assert best["batch_size"] == max(rows, key=lambda b: rows[b]["goodput"])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("noise", "linear", "--micro-batches", "1"), "--micro-batches 1 must be at least 2"),
        (("noise", "linear", "--batch-size", "30", "--micro-batches", "8"), "equal parts"),
        (("noise", "linear", "--run", "other.json"), "goodput needs the same workload"),
        (("noise", "linear", "--no-store", "--run", "abc123"), "with --no-store, --run takes"),
        (("noise", "linear", "--no-store", "--store", "x.db"), "contradict"),
        (("sweep", "linear", "--epochs", "1", "--target", "accuracy"), "not METRIC=VALUE"),
        (("sweep", "linear", "--target", "accuracy=0.9"), "--target needs --epochs"),
    ],
)
def test_bad_inputs_are_one_line(tmp_path: Path, args: tuple[str, ...], match: str) -> None:
    _write_run(tmp_path / "other.json", "digits", {16: 100.0})
    code, out, err = run_cli(*args, cwd=tmp_path)
    assert code == 2, (out, err)
    assert match in err and len(err.strip().splitlines()) == 1, err


def test_sweep_target_records_time_to_target_and_plots_quality(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run_here(
        capsys, monkeypatch, tmp_path,
        "sweep", "digits", "--batch-sizes", "64,256", "--epochs", "2", "--target",
        "accuracy=0.3", "--isolation", "none", "--no-store", "--json", "s.json", "--out", "rep",
        "--sample-interval", "0", "--warmup", "0", "--threads", "1", "-q",
    )  # fmt: skip
    assert code == 0, err
    assert "reaches the target soonest: b=" in out
    data = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert data["settings"]["target"] == "accuracy=0.3"
    for trial in data["trials"]:
        target = trial["target"]
        assert target["metric"] == "accuracy" and target["reported"]
        if target["reached"]:
            epoch = target["epoch"]
            assert trial["epochs"][epoch - 1]["metrics"]["accuracy"] >= 0.3
            elapsed = sum(e["time_s"] for e in trial["epochs"][:epoch])
            assert target["time_s"] == pytest.approx(elapsed)
    assert (tmp_path / "rep" / "quality.png").is_file()
    assert "Reaches the target soonest" in (tmp_path / "rep" / "report.md").read_text("utf-8")
