"""Trial children forked from the zygote: each is a real process of its own, in its own
session, with the parent's environment and working directory; its exit status reaches
the parent with Popen's meaning; nothing outlives the sweep; and whenever the zygote
cannot serve, the child starts with Popen as before.

The children load a user workload file whose ``make()`` writes what it sees (pid,
session, environment, threads, malloc's behaviour, resident file pages) to a file named
by the environment, then behaves as ``ZYGOTE_TEST_BEHAVE`` says.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from batchscope.core.plan import TrialSpec
from batchscope.errors import BatchscopeError
from batchscope.run import forkserver
from batchscope.run.isolation import _child_env, probe_isolated, run_isolated
from conftest import cli_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

FACTS = '''\
import ctypes, json, os, pathlib, signal, sys, threading

import torch
from torch.utils.data import TensorDataset

import batchscope

HERE = pathlib.Path(__file__).parent


def rss_file(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) * 1024
    return 0


def mmapped(size, count=40):
    """How many of ``count`` blocks of ``size`` bytes, held together, glibc served by mmap
    (their chunk's IS_MMAPPED bit)."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(size) for _ in range(count)]
    word = ctypes.sizeof(ctypes.c_size_t)
    served = sum(bool(ctypes.c_size_t.from_address(b - word).value & 2) for b in blocks)
    for block in blocks:
        libc.free(block)
    return served


def make():
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    one_thread = torch.get_num_threads()
    torch.set_num_threads(default_threads)
    facts = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "sid": os.getsid(0),
        "value": os.environ.get("ZYGOTE_TEST_VALUE"),
        "cwd": os.getcwd(),
        "path0": sys.path[0],
        "mmapped_100k": mmapped(100_000),
        "default_threads": default_threads,
        "one_thread": one_thread,
        "rss_file": rss_file("self"),
        "parent_rss_file": rss_file(os.getppid()),
    }
    (HERE / os.environ["ZYGOTE_TEST_FACTS"]).write_text(json.dumps(facts))
    behave = os.environ.get("ZYGOTE_TEST_BEHAVE", "")
    if behave == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif behave == "exit3":
        os._exit(3)
    elif behave == "raise":
        raise ValueError("raised in make")
    elif behave == "hang":
        threading.Event().wait()
    x = torch.zeros(8, 2)
    return batchscope.Workload(
        name="facts",
        model=lambda: torch.nn.Linear(2, 1),
        train_dataset=TensorDataset(x, x[:, :1]),
        loss=torch.nn.MSELoss(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
    )
'''


@pytest.fixture
def facts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The workload file; the facts its child writes land next to it."""
    path = tmp_path / "facts_workload.py"
    path.write_text(FACTS, encoding="utf-8")
    monkeypatch.setenv("ZYGOTE_TEST_FACTS", "facts.json")
    monkeypatch.delenv("ZYGOTE_TEST_BEHAVE", raising=False)
    monkeypatch.delenv(forkserver.ENV_SWITCH, raising=False)
    yield path


def _read(path: Path) -> dict[str, Any]:
    return dict(json.loads((path.parent / "facts.json").read_text()))


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _await(condition: Any, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _spec(path: Path) -> TrialSpec:
    return TrialSpec(
        workload=f"{path}:make", device="cpu", batch_size=2, steps=1, warmup=0, threads=1
    )


def _hanging_child(path: Path, monkeypatch: pytest.MonkeyPatch) -> forkserver.ZygoteProcess:
    """A zygote child stuck in make(), started with forkserver.spawn directly."""
    monkeypatch.setenv("ZYGOTE_TEST_BEHAVE", "hang")
    read_fd, write_fd = os.pipe()
    log = os.open(os.devnull, os.O_WRONLY)
    try:
        proc = forkserver.spawn(_child_env(None), write_fd, log)
    finally:
        os.close(write_fd)
        os.close(log)
    os.close(read_fd)
    assert proc is not None, forkserver.unavailable_reason()
    assert proc.stdin is not None
    request = {"kind": "probe", "workload": f"{path}:make", "options": {}, "framework": "torch"}
    proc.stdin.write(json.dumps(request).encode())
    proc.stdin.close()
    _await(lambda: (path.parent / "facts.json").exists(), "the child never reached make()")
    return proc


def test_a_zygote_child_is_a_process_of_its_own_with_our_environment(
    facts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZYGOTE_TEST_VALUE", "from the parent")
    monkeypatch.chdir(tmp_path)
    probed = probe_isolated(f"{facts}:make", {})
    assert forkserver.unavailable_reason() == ""
    assert probed["workload"]["name"] == "facts"
    seen = _read(facts)
    zygote = forkserver.zygote_pid()
    assert seen["pid"] not in (os.getpid(), zygote)
    assert seen["ppid"] == zygote  # forked by the zygote ...
    assert psutil.Process(zygote).ppid() == os.getpid()  # ... which we started
    assert seen["sid"] == seen["pid"]  # its own session, as start_new_session
    assert seen["value"] == "from the parent"
    assert seen["cwd"] == str(tmp_path)
    assert seen["path0"] == str(tmp_path)  # as ``python -m`` in that folder has it
    assert seen["one_thread"] == 1  # torch.set_num_threads works: no OpenMP pool yet
    # the imports' file pages are mapped back: the child starts where a fresh one would
    assert seen["rss_file"] >= 0.9 * seen["parent_rss_file"]
    assert _gone(seen["pid"])
    # a variable read at start-up that differs from the zygote's: a zygote of its own
    env = _child_env(None)
    different = {**env, "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "") + "7"}
    log = os.open(os.devnull, os.O_WRONLY)
    try:
        proc = forkserver.spawn(different, log, log)
    finally:
        os.close(log)
    assert proc is not None and proc.stdin is not None, forkserver.unavailable_reason()
    proc.stdin.close()  # no request: the child ends at once
    proc.wait(timeout=60)
    assert forkserver.zygote_pid() not in (None, zygote)
    forkserver.shutdown()  # the next test's zygote starts with the suite's environment


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")
def test_the_mmap_threshold_applies_in_the_zygote_child(
    facts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """glibc reads MALLOC_MMAP_THRESHOLD_ only at start-up: the child calls mallopt.

    100 kB is below glibc's default threshold (128 kB, which only ever grows), so without
    the variable no block is mmapped; with it (64 kB) those the heap cannot serve are.
    """
    probe_isolated(f"{facts}:make", {})
    assert _read(facts)["mmapped_100k"] == 0
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    probe_isolated(f"{facts}:make", {})
    assert forkserver.unavailable_reason() == ""
    assert _read(facts)["mmapped_100k"] >= 20


def test_exit_statuses_reach_the_parent_and_are_classified_as_before(
    facts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZYGOTE_TEST_BEHAVE", "segfault")
    crashed = run_isolated(_spec(facts))
    assert forkserver.unavailable_reason() == ""
    assert (crashed.status, crashed.error.split(":")[0]) == ("crashed", "child killed by SIGSEGV")
    monkeypatch.setenv("ZYGOTE_TEST_BEHAVE", "exit3")
    exited = run_isolated(_spec(facts))
    assert (exited.status, exited.error) == ("crashed", "child exited with status 3")
    monkeypatch.setenv("ZYGOTE_TEST_BEHAVE", "raise")
    raised = run_isolated(_spec(facts))
    assert raised.status == "error"
    assert raised.error.endswith("raised ValueError: raised in make")
    monkeypatch.setenv("ZYGOTE_TEST_BEHAVE", "exit3")
    with pytest.raises(BatchscopeError, match=r"crashed the child process \(status 3\)"):
        probe_isolated(f"{facts}:make", {})
    monkeypatch.delenv("ZYGOTE_TEST_BEHAVE")
    assert run_isolated(_spec(facts)).status == "ok"


def test_a_child_dies_with_the_zygote_and_a_new_zygote_keeps_omp_num_threads(
    facts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = _hanging_child(facts, monkeypatch)
    child = _read(facts)["pid"]
    zygote = forkserver.zygote_pid()
    assert zygote is not None
    os.kill(zygote, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    _await(lambda: _gone(child), "the child outlived its zygote")
    # the next child needs a new zygote; it reads OMP_NUM_THREADS as a fresh process would
    (facts.parent / "facts.json").unlink()
    monkeypatch.delenv("ZYGOTE_TEST_BEHAVE")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    forkserver.shutdown()
    probe_isolated(f"{facts}:make", {})
    assert forkserver.unavailable_reason() == ""
    assert forkserver.zygote_pid() not in (None, zygote)
    assert _read(facts)["default_threads"] == 1
    forkserver.shutdown()  # the next test's zygote starts without OMP_NUM_THREADS


def test_closing_the_zygote_ends_its_running_children(
    facts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = _hanging_child(facts, monkeypatch)
    child, zygote = _read(facts)["pid"], forkserver.zygote_pid()
    assert zygote is not None
    forkserver.shutdown()  # what the parent's exit does: its control socket closes
    assert proc.wait(timeout=60) == -signal.SIGKILL
    _await(lambda: _gone(child) and _gone(zygote), "a child or the zygote outlived the parent")


def test_a_killed_sweep_leaves_no_zygote_and_no_child(facts: Path) -> None:
    code = (
        "from batchscope.run.isolation import probe_isolated\n"
        f"probe_isolated({str(facts)!r} + ':make', {{}})"
    )
    env = cli_env()
    env.update(ZYGOTE_TEST_BEHAVE="hang", ZYGOTE_TEST_FACTS="facts.json")
    sweep = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    child = zygote = None
    try:
        _await(
            lambda: (facts.parent / "facts.json").exists() or sweep.poll() is not None,
            "the child never reached make()",
            timeout_s=240,
        )
        assert sweep.poll() is None, sweep.communicate()
        seen = _read(facts)
        child, zygote = seen["pid"], seen["ppid"]
        assert psutil.Process(zygote).ppid() == sweep.pid
        os.kill(sweep.pid, signal.SIGKILL)
        sweep.wait()
        _await(lambda: _gone(zygote), "the zygote outlived the sweep")
        _await(lambda: _gone(child), "the child outlived the sweep")
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
        for pid in (child, zygote):
            if pid is not None and not _gone(pid):
                os.kill(pid, signal.SIGKILL)
        assert sweep.stderr is not None
        sweep.stderr.close()


def test_popen_serves_when_the_zygote_cannot(facts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _child_env(None)
    monkeypatch.setenv(forkserver.ENV_SWITCH, "0")
    assert forkserver.spawn(env, 1, 2) is None
    assert forkserver.unavailable_reason() == "BATCHSCOPE_FORKSERVER=0"
    monkeypatch.delenv(forkserver.ENV_SWITCH)
    # a zygote that cannot start: no error, and the child comes from Popen
    forkserver.shutdown()
    monkeypatch.setattr(forkserver, "ZYGOTE_MODULE", "batchscope.no_such_module")
    probe_isolated(f"{facts}:make", {})
    assert "the zygote exited with status 1" in forkserver.unavailable_reason()
    seen = _read(facts)
    assert seen["ppid"] == os.getpid()  # Popen's child: ours, not a zygote's
    assert seen["sid"] == seen["pid"]
    forkserver.shutdown()
