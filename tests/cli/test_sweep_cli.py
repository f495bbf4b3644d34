"""The command line end to end, in real subprocesses, as a user runs it.

Sweeps are expensive (a torch import per process), so one acceptance sweep is
shared by every test that only reads its outputs.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import sys
from pathlib import Path

import pytest

from batchscope.report.export import CSV_FIELDS
from conftest import CliResult, run_cli

ACCEPTANCE = (
    "sweep",
    "simplecnn",
    "--batch-sizes",
    "16,64",
    "--devices",
    "cpu",
    "--steps",
    "20",
    "--json",
    "r.json",
)


class Sweep:
    def __init__(self, folder: Path, result: CliResult) -> None:
        self.folder = folder
        self.code, self.out, self.err = result

    @property
    def json(self) -> dict:
        return json.loads((self.folder / "r.json").read_text(encoding="utf-8"))

    def cli(self, *args: str) -> CliResult:
        return run_cli(*args, cwd=self.folder)


@pytest.fixture(scope="module")
def acceptance(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    """The issue's acceptance command, plus the other exports and an explicit store."""
    folder = tmp_path_factory.mktemp("acceptance")
    result = run_cli(
        *ACCEPTANCE,
        "--csv",
        "r.csv",
        "--markdown",
        "r.md",
        "--store",
        "results.db",
        "--no-report",
        cwd=folder,
    )
    sweep = Sweep(folder, result)
    assert sweep.code == 0, sweep.err
    return sweep


def test_acceptance_writes_the_results_contract(acceptance: Sweep) -> None:
    data = acceptance.json
    assert data["schema"] == "batchscope.results/1"
    assert data["run_id"]
    dt.datetime.fromisoformat(data["created"])
    workload = data["workload"]
    assert workload["name"] == "simplecnn" and workload["spec"] == "simplecnn"
    assert workload["n_train"] == 5000 and workload["parameters"] > 0
    env = data["environment"]
    for key in ("cpu_model", "cpu_cores_logical", "memory_bytes", "os", "python", "torch"):
        assert env[key], key
    assert "cuda_build" in env
    assert isinstance(env["gpus"], list)
    assert data["settings"]["steps"] == 20
    assert data["settings"]["batch_sizes"] == [16, 64]

    trials = data["trials"]
    assert [(t["device"], t["batch_size"], t["status"]) for t in trials] == [
        ("cpu", 16, "ok"),
        ("cpu", 64, "ok"),
    ]
    for t in trials:
        stats = t["step_time_s"]
        assert set(stats) >= {"median", "iqr", "mean", "stdev", "min", "max", "n"}
        assert stats["n"] == 20 == t["measured_steps"] == len(t["step_times_s"])
        assert 0 < stats["min"] <= stats["median"] <= stats["max"]
        assert t["samples_per_s"] == pytest.approx(t["batch_size"] / stats["median"])
        assert 0.0 <= t["data_wait_fraction"] <= 1.0
        assert t["samples_per_epoch"] == 5000
        assert t["total_time_s"] >= math.fsum(t["step_times_s"])
        assert math.isfinite(t["final_train_loss"])
        assert t["error"] is None


def test_stdout_holds_the_table_and_stderr_the_messages(acceptance: Sweep) -> None:
    out = acceptance.out
    assert "Batch size" in out and "Samples/s" in out
    rows = [line for line in out.splitlines() if "ok" in line]
    assert any(" 16 " in line for line in rows) and any(" 64 " in line for line in rows)
    run_id = acceptance.json["run_id"]
    # progress and messages go to stderr, never into the table on stdout
    for message in ("wrote", "saved in", "loading", "✓", "bs=16"):
        assert message not in out, message
    assert "Batch size" not in acceptance.err  # and the table only on stdout
    assert "wrote r.json" in acceptance.err
    assert f"run {run_id} saved in results.db" in acceptance.err


def test_csv_export(acceptance: Sweep) -> None:
    text = (acceptance.folder / "r.csv").read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == CSV_FIELDS
    rows = list(reader)
    assert [(r["device"], r["batch_size"], r["status"]) for r in rows] == [
        ("cpu", "16", "ok"),
        ("cpu", "64", "ok"),
    ]
    run = acceptance.json
    assert {r["run_id"] for r in rows} == {run["run_id"]}
    for row, trial in zip(rows, run["trials"], strict=True):
        assert float(row["step_time_median_s"]) == pytest.approx(trial["step_time_s"]["median"])
        assert int(row["step_time_n"]) == 20


def markdown_tables(text: str) -> list[tuple[str, list[list[str]]]]:
    """(the heading above it, rows of cells) of every Markdown table with a 'Batch size' column."""
    tables = []
    heading = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line
        if line.startswith("|") and "Batch size" in line:
            rows = []
            i += 2  # the header and its alignment row
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([cell.strip() for cell in lines[i].strip("|").split("|")])
                i += 1
            tables.append((heading, rows))
            continue
        i += 1
    return tables


def test_markdown_export_has_a_table_per_device(acceptance: Sweep) -> None:
    text = (acceptance.folder / "r.md").read_text(encoding="utf-8")
    assert acceptance.json["run_id"] in text.splitlines()[0]
    # the results tables (Environment and Settings are tables too): one device, one table
    tables = [t for t in markdown_tables(text) if t[1] and t[1][0][0].isdigit()]
    assert len(tables) == 1
    heading, rows = tables[0]
    assert heading == "## At a glance"  # the report opens with the verdict and the table
    above = text[text.index(heading) : text.index("| Batch size")]
    assert "cpu" in above and "se batch size" in above  # the series' verdict line
    assert [row[0] for row in rows] == ["16", "64"]


def test_store_runs_show_and_export(acceptance: Sweep) -> None:
    run_id = acceptance.json["run_id"]
    assert (acceptance.folder / "results.db").is_file()  # --store was used
    assert not (acceptance.folder / "batchscope-results").exists()

    code, out, err = acceptance.cli("runs", "--store", "results.db")
    assert code == 0, err
    assert run_id in out

    code, out, err = acceptance.cli("show", run_id[:-2], "--store", "results.db")  # a prefix
    assert code == 0, err
    assert "Batch size" in out and "simplecnn" in out

    code, out, err = acceptance.cli("export", run_id, "--store", "results.db")
    assert code == 0, err
    exported = json.loads(out)
    assert exported["run_id"] == run_id
    assert exported["trials"] == acceptance.json["trials"]

    code, out, err = acceptance.cli(
        "export", run_id, "--json", "again.json", "--store", "results.db"
    )
    assert code == 0, err
    again = json.loads((acceptance.folder / "again.json").read_text(encoding="utf-8"))
    assert again == exported

    code, out, err = acceptance.cli("show", "nosuchrun", "--store", "results.db")
    assert code == 2 and "nosuchrun" in err and len(err.strip().splitlines()) == 1


def test_user_file_workload_quiet_and_no_store(tmp_path: Path, workload_file: Path) -> None:
    # a relative file path, resolved by the probe and by each trial's child process
    code, out, err = run_cli(
        "sweep",
        f"{workload_file.name}:make",
        "-b",
        "4",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--quiet",
        "--no-store",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert err == ""  # --quiet: nothing on stderr on success
    assert "userlinear" in out and "Batch size" in out
    assert sum(" ok " in line for line in out.splitlines()) == 1
    assert not (tmp_path / "batchscope-results").exists()


def test_workloads_lists_the_builtins(tmp_path: Path) -> None:
    code, out, err = run_cli("workloads", cwd=tmp_path)
    assert code == 0, err
    for name in ("resnet18", "simplecnn", "linear", "digits", "module:function"):
        assert name in out


def test_env_json_is_pure_json_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from batchscope.cli import main as cli

    with pytest.raises(SystemExit) as stop:
        cli.main(["env", "--json"])
    assert stop.value.code == 0
    info = json.loads(capsys.readouterr().out)
    assert info["torch"] == torch.__version__
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert "cpu" in info["devices"]
    assert info["memory_bytes"] > 0


def test_env_table(capsys: pytest.CaptureFixture[str]) -> None:
    from batchscope.cli import main as cli

    with pytest.raises(SystemExit) as stop:
        cli.main(["env"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "cpu_model" in out and "torch" in out and "GiB" in out


def test_python_dash_m_help(tmp_path: Path) -> None:
    code, out, err = run_cli("--help", cwd=tmp_path)
    assert code == 0, err
    for command in ("sweep", "workloads", "env", "runs", "show", "export"):
        assert command in out


def test_no_arguments_prints_the_help_and_no_error(tmp_path: Path) -> None:
    code, out, err = run_cli(cwd=tmp_path)
    assert code == 2
    assert "sweep" in out + err
    assert "error" not in err


def test_image_size_reaches_resnet18_and_is_recorded(tmp_path: Path) -> None:
    code, out, err = run_cli(
        "sweep",
        "resnet18",
        "--image-size",
        "32",
        "--images",
        "24",
        "-b",
        "4",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--no-store",
        "--json",
        "-",
        cwd=tmp_path,
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["workload"]["options"]["extra"]["image_size"] == 32  # what resume reads
    assert result["workload"]["info"]["image_size"] == 32  # what the workload built
    assert "32×32 photos" in result["workload"]["description"]
    (trial,) = result["trials"]
    assert trial["status"] == "ok"


def test_the_cli_minimum_image_size_is_the_workloads() -> None:
    from batchscope.cli.options import MIN_IMAGE_SIZE
    from batchscope.workloads import resnet18

    assert MIN_IMAGE_SIZE == resnet18.MIN_IMAGE_SIZE
