"""``batchscope fit TABLE.csv``: the seeds' GPU tables end to end, JSON fields, bad input.

Most cases run the CLI's ``main`` in this process (fast); one runs it as a user
does, in a subprocess, to check the real exit status and streams.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchscope.cli.main import main

CliResult = tuple[int, str, str]

SEEDS = Path(__file__).resolve().parents[2] / "examples" / "seed_tables"


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 0), out, err


@pytest.mark.parametrize(
    ("name", "rise"), [("seed000_gpu.csv", "+38% by b=256"), ("seed003_gpu.csv", "+58% by b=256")]
)
def test_fit_on_the_seed_tables(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, rise: str
) -> None:
    out_json = tmp_path / "fit.json"
    code, out, err = run_main(capsys, "fit", str(SEEDS / name), "--json", str(out_json))
    assert code == 0, err
    assert "column 'training_time_s' read as time per epoch" in out
    assert "T(b) = c / b^alpha + t_min" in out and "95 % interval" in out
    assert "U shape: not judged: 0 batch sizes with a 95 % interval" in out
    assert f"the time per epoch is lowest at b=64 and rises {rise}" in out
    assert "(no standard errors were given)" in out
    assert f"wrote {out_json}" in err
    data = json.loads(out_json.read_text())
    time = data["models"]["time"]
    assert set(time["params"]) == {"c", "alpha", "t_min"}
    for est in time["params"].values():
        assert {"value", "low", "high", "determined"} <= set(est)
    assert time["ok"] is False and time["verdict"].startswith("does not fit well")
    assert set(data["models"]["throughput"]["params"]) == {"x_max", "b_half"}
    assert data["u_shape"]["present"] is False and data["u_shape"]["verdict"] == "not_judged"
    assert data["u_shape"]["b_min"] == 64
    assert data["input"]["batch_sizes"] == [16, 32, 64, 128, 256]
    assert data["input"]["kind"] == "per-epoch"


def test_fit_with_spreads_finds_a_true_u(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    table = tmp_path / "u.csv"
    table.write_text(
        "batch_size,time_per_sample_s,iqr\n8,10ms,0.2ms\n16,8 ms,0.2 ms\n32,6ms,0.2ms\n"
        "64,5ms,0.2ms\n128,6.5ms,0.2ms\n256,8ms,0.2ms\n"
    )
    code, out, _ = run_main(capsys, "fit", str(table))
    assert code == 0
    assert "standard errors from column 'iqr' weight the fit" in out
    assert "U shape: a U shape: the time per sample falls from b=8 to b=64" in out
    assert "verdict: does not fit: the time rises again after b=64" in out


def test_fit_notes_duplicates_and_three_points(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    table = tmp_path / "dup.csv"
    table.write_text("batch_size,time\n16,9.44s\n32,10.5s\n32,10.7s\n64,7.18s\n")
    out_json = tmp_path / "d.json"
    code, out, _ = run_main(capsys, "fit", str(table), "--json", str(out_json))
    assert code == 0
    assert "note: batch size 32 appears 2 times (lines 3, 4): averaged" in out
    assert "3 batch sizes for 3 parameters" in out
    assert "not determined" in out  # no intervals from 3 points
    data = json.loads(out_json.read_text())
    assert data["models"]["time"]["params"]["alpha"]["low"] is None
    assert any("averaged" in n for n in data["input"]["notes"])


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, (), "no such file"),
        ("bs_x,time_s\n1,2\n2,3\n3,4\n", (), "has no batch_size column"),
        ("batch_size,time_s\n8,1\n16,quick\n32,3\n", (), "line 3 (batch size 16): 'quick'"),
        ("batch_size,time_s\n8,1\n16,2\n", (), "a fit needs at least 3 points"),
        ("batch_size,time_s\n8,1\n16,2\n32,3\n", ("--kind", "weekly"), "--kind 'weekly'"),
        ("batch_size,time_s\n8,1\n16,2\n32,3\n", ("--time-column", "x"), "--time-column 'x'"),
        ("\x00\x01binary", (), "not a CSV file"),
    ],
)
def test_fit_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    content: str | None,
    args: tuple[str, ...],
    message: str,
) -> None:
    table = tmp_path / "t.csv"
    if content is not None:
        table.write_text(content)
    code, out, err = run_main(capsys, "fit", str(table), *args)
    assert code == 2
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("batchscope: error:")
    assert message in lines[0]


def test_fit_as_a_user_runs_it(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli("fit", str(SEEDS / "seed003_gpu.csv"))
    assert code == 0, err
    assert "U shape: not judged" in out and err == ""
    code, out, err = cli("fit", str(tmp_path / "missing.csv"))
    assert code == 2 and out == "" and "no such file" in err
    code, out, _ = cli("fit", "--help")
    assert code == 0 and "batch_size" in out and "averaged" in out
