"""`batchscope watch -- COMMAND`: timelines of any program, its exit status passed through."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
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
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "no-such-program-xyz" in done.stderr
    assert "Traceback" not in done.stderr


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
