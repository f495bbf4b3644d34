"""`batchscope watch -- COMMAND`: timelines of any program, its exit status passed through."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from PIL import Image

BURN = (
    "import time\n"
    "x = bytearray(150 * 2**20)\n"
    "end = time.perf_counter() + 1.0\n"
    "while time.perf_counter() < end: x[0] = 1\n"
    "raise SystemExit(3)\n"
)


def _batchscope(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchscope", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_watch_records_a_command_and_passes_its_status(tmp_path: Path) -> None:
    out = tmp_path / "w"
    done = _batchscope("watch", "--out", str(out), "--", sys.executable, "-c", BURN, cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    png = out / "timeline.png"
    with Image.open(png) as img:
        img.verify()
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] > 400 and img.size[1] > 300
    summary = json.loads((out / "summary.json").read_text())
    assert summary["returncode"] == 3
    assert summary["summary"]["peak_rss_bytes"] > 150 * 2**20
    assert summary["summary"]["cpu_process_percent_max"] > 50
    header = (out / "samples.csv").read_text().splitlines()[0].split(",")
    assert {"t_s", "cpu_process_percent", "rss_bytes"} <= set(header)
    assert "peak resident memory" in done.stderr and "exit status 3" in done.stderr
    assert done.stdout == ""


def test_watch_ctrl_c_stops_the_command_and_keeps_the_recording(tmp_path: Path) -> None:
    out = tmp_path / "w"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchscope",
            "watch",
            "--out",
            str(out),
            "--",
            sys.executable,
            "-c",
            "import time; print('ready', flush=True); time.sleep(120)",
        ],
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watcher = psutil.Process(proc.pid)
    assert proc.stdout is not None
    # the command's own output passes through: once it says ready it is in its sleep (a
    # Ctrl-C during the interpreter's start-up would end it with status 1 instead)
    assert proc.stdout.readline().strip() == "ready"
    assert watcher.children(), "the watched command never started"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert (out / "timeline.png").stat().st_size > 0
    assert json.loads((out / "summary.json").read_text())["interrupted"] is True


def test_watch_unknown_command_is_one_line(tmp_path: Path) -> None:
    done = _batchscope(
        "watch", "--out", str(tmp_path / "w"), "--", "no-such-program-xyz", cwd=tmp_path
    )
    assert done.returncode == 127  # as a shell says "command not found"
    assert len(done.stderr.strip().splitlines()) == 1 and "no-such-program-xyz" in done.stderr
    assert "not found" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "w").exists()  # nothing left behind


def test_watch_unknown_command_leaves_no_default_results_folder(tmp_path: Path) -> None:
    done = _batchscope("watch", "--", "no-such-program-xyz", "--bs", "64", cwd=tmp_path)
    assert done.returncode == 127, done.stderr
    assert sorted(os.listdir(tmp_path)) == []


def test_watch_command_that_cannot_run_is_126_and_leaves_nothing(tmp_path: Path) -> None:
    script = tmp_path / "train.sh"
    script.write_text("echo hi\n")
    script.chmod(0o644)
    (tmp_path / "folder").mkdir()
    for command, needle in (("./train.sh", "not executable"), ("./folder", "is a folder")):
        done = _batchscope("watch", "--out", "w", "--", command, cwd=tmp_path)
        assert done.returncode == 126, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and needle in done.stderr
        assert not (tmp_path / "w").exists()
    done = _batchscope("watch", "--out", "w", "--", "./missing.sh", cwd=tmp_path)
    assert done.returncode == 127 and "not found" in done.stderr
    assert sorted(os.listdir(tmp_path)) == ["folder", "train.sh"]


def test_watch_bad_out_is_refused_before_the_command_runs(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    ran = "open('ran', 'w').close()"
    done = _batchscope("watch", "--out", "a-file/w", "--", sys.executable, "-c", ran, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "a-file" in done.stderr
    assert not (tmp_path / "ran").exists()
    args = ["watch", "--sample-interval", "0", "--out", "w", "--", sys.executable, "-c", ran]
    done = _batchscope(*args, cwd=tmp_path)
    assert done.returncode == 2 and "--sample-interval" in done.stderr
    assert not (tmp_path / "ran").exists() and not (tmp_path / "w").exists()


def test_watch_calls_on_started_only_once_the_command_runs(tmp_path: Path) -> None:
    """The folder is made only for a started command; if making it fails, the command
    is stopped rather than left running unrecorded."""
    from batchscope.errors import ExportError
    from batchscope.run.watch import CommandNotFoundError, watch_command

    calls: list[int] = []
    with pytest.raises(CommandNotFoundError) as info:
        watch_command(["no-such-program-xyz"], gpus=False, on_started=lambda: calls.append(1))
    assert info.value.exit_code == 127 and calls == []

    result = watch_command(
        [sys.executable, "-c", "pass"], gpus=False, on_started=lambda: calls.append(1)
    )
    assert result.returncode == 0 and calls == [1]

    def cannot() -> None:
        raise ExportError("--out 'w' cannot be created")

    before = {p.pid for p in psutil.Process().children()}
    with pytest.raises(ExportError):
        watch_command(
            [sys.executable, "-c", "import time; time.sleep(60)"], gpus=False, on_started=cannot
        )
    left = [p for p in psutil.Process().children() if p.pid not in before]
    assert [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []


def test_watch_ctrl_c_escalates_when_the_command_ignores_it(tmp_path: Path) -> None:
    """A command that ignores Ctrl-C gets its grace, then SIGINT, then SIGTERM (exit 143)."""
    ignores = (
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(120)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchscope", "watch", "--out", str(tmp_path / "w"), "--",
         sys.executable, "-c", ignores],
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "(interrupted)" in stderr and (tmp_path / "w" / "samples.csv").is_file()
