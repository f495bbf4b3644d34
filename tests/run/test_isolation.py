"""Trials that survive: a child that segfaults, exits, runs out of memory, hangs or
blows past its memory cap is recorded with the right status, and the sweep goes on.

The misbehaviour lives in a user workload file (``file.py:function``), keyed on the
input's batch dimension, so one sweep exercises every behaviour with one child
process per batch size. Each misbehaving forward first writes a marker file, so a
test knows the behaviour was reached rather than something earlier failing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from batchscope.core.plan import Plan, TrialSpec
from batchscope.core.results import RunResult
from batchscope.hardware.oom import is_oom_error
from batchscope.run.isolation import CPU_CHILD_ENV, _child_env, cpu_child_env
from batchscope.run.sweep import run_sweep
from conftest import CliResult

MiB = 1024**2

MISBEHAVING = '''\
"""Each batch size (the input's first dimension) does something else in forward()."""

import ctypes
import os
import pathlib
import threading

import torch
from torch import nn
from torch.utils.data import TensorDataset

import batchscope

MARKS = pathlib.Path(__file__).with_name("marks")

BEHAVIOUR = {
    2: "segfault",
    3: "exit3",
    4: "cuda_oom",
    5: "cpu_allocator",
    6: "onednn",
    7: "huge",
    8: "bug",
    9: "hang",
    11: "hog",
}


class Misbehaving(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, x):
        what = BEHAVIOUR.get(x.shape[0])
        if what is not None:
            MARKS.mkdir(exist_ok=True)
            (MARKS / f"{x.shape[0]}-{what}").write_text(str(os.getpid()))
        if what == "segfault":
            ctypes.string_at(0)
        elif what == "exit3":
            os._exit(3)
        elif what == "cuda_oom":
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.77 GiB total)"
            )
        elif what == "cpu_allocator":
            raise RuntimeError(
                "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                "can't allocate memory: you tried to allocate 8589934592 bytes."
            )
        elif what == "onednn":
            raise RuntimeError("could not create a primitive")
        elif what == "huge":
            # far above the address-space cap of a --memory-limit trial
            torch.empty(16 * 1024**3, dtype=torch.uint8)
        elif what == "bug":
            raise ValueError("a bug in the user's forward")
        elif what == "hang":
            threading.Event().wait()
        elif what == "hog":
            # 1 GiB touched, twice a 512 MiB limit, then nothing ends it but being stopped
            hog = torch.ones(256 * 1024**2)
            threading.Event().wait()
            del hog
        return self.lin(x)


def make():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(90, 4, generator=gen)
    return batchscope.Workload(
        name="misbehaving",
        model=Misbehaving,
        train_dataset=TensorDataset(x, x.sum(dim=1, keepdim=True)),
        loss=nn.MSELoss(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.01),
    )
'''


@pytest.fixture(scope="module")
def misbehaving(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("misbehaving")
    path = folder / "misbehaving.py"
    path.write_text(MISBEHAVING, encoding="utf-8")
    return path


def _plan(path: Path, sizes: list[int], **fields: object) -> Plan:
    return Plan(
        workload=f"{path}:make",
        batch_sizes=sizes,
        steps=1,
        warmup=0,
        threads=1,
        **fields,  # type: ignore[arg-type]
    )


def _by_size(run: RunResult) -> dict[int, object]:
    return {t.batch_size: t for t in run.trials}


# ------------------------------------------------------- child processes: one sweep


@pytest.fixture(scope="module")
def isolated_run(misbehaving: Path) -> RunResult:
    """One sweep, a child per size: segfault, exit(3), CUDA OOM, a huge allocation
    under the memory cap, a hang, a memory hog that then hangs, and then an ordinary
    trial — in that order."""
    plan = _plan(misbehaving, [2, 3, 4, 7, 9, 11, 1], memory_limit_bytes=512 * MiB)
    # generous: it must cover a torch import on a busy machine, since the hanging
    # trial has to reach forward() before the timeout ends it (its marker proves it)
    return run_sweep(plan, trial_timeout_s=20)


def test_every_trial_is_recorded_in_plan_order(isolated_run: RunResult) -> None:
    assert [t.batch_size for t in isolated_run.trials] == [2, 3, 4, 7, 9, 11, 1]


def test_the_sweep_goes_on_after_every_failure(isolated_run: RunResult) -> None:
    trial = _by_size(isolated_run)[1]  # the last one, after five failures
    assert trial.status == "ok", (trial.status, trial.error)
    assert trial.measured_steps == 1
    assert trial.peak_memory_bytes is not None and trial.peak_rss_bytes is not None


def test_segfault_is_crashed_naming_the_signal(isolated_run: RunResult, misbehaving: Path) -> None:
    trial = _by_size(isolated_run)[2]
    assert (misbehaving.parent / "marks" / "2-segfault").exists()
    assert trial.status == "crashed"
    assert "SIGSEGV" in trial.error


def test_exit_status_is_crashed(isolated_run: RunResult, misbehaving: Path) -> None:
    trial = _by_size(isolated_run)[3]
    assert (misbehaving.parent / "marks" / "3-exit3").exists()
    assert trial.status == "crashed"
    assert "status 3" in trial.error


def test_cuda_oom_raised_in_the_child_is_oom(isolated_run: RunResult, misbehaving: Path) -> None:
    trial = _by_size(isolated_run)[4]
    assert (misbehaving.parent / "marks" / "4-cuda_oom").exists()
    assert trial.status == "oom"
    assert "CUDA out of memory" in trial.error


def test_the_address_space_cap_stops_a_huge_allocation(
    isolated_run: RunResult, misbehaving: Path
) -> None:
    # 16 GiB of address space is refused by the cap that --memory-limit 512MiB sets
    # (what the child maps after importing torch + 2 × limit + 512 MiB); without the
    # cap the untouched torch.empty would simply succeed and the trial be "ok"
    trial = _by_size(isolated_run)[7]
    assert (misbehaving.parent / "marks" / "7-huge").exists()
    assert trial.status == "oom"
    assert "can't allocate memory" in trial.error


def test_a_hang_is_a_timeout(isolated_run: RunResult, misbehaving: Path) -> None:
    trial = _by_size(isolated_run)[9]
    assert (misbehaving.parent / "marks" / "9-hang").exists()  # it reached forward()
    assert trial.status == "timeout"
    assert "--trial-timeout 20" in trial.error


def test_a_trial_past_its_memory_limit_is_stopped_early(
    isolated_run: RunResult, misbehaving: Path
) -> None:
    # it holds 1 GiB and then waits forever: only the runner's early stop (resident
    # memory past baseline + --memory-limit) ends it as "oom" before the timeout
    trial = _by_size(isolated_run)[11]
    assert (misbehaving.parent / "marks" / "11-hog").exists()
    assert trial.status == "oom", (trial.status, trial.error)
    assert "stopped early" in trial.error and "--memory-limit 512 MiB" in trial.error
    assert trial.peak_memory_bytes is None  # the full peak was never reached


def test_the_run_records_the_cpu_child_environment(isolated_run: RunResult) -> None:
    # a memory limit was given: the CPU children returned freed memory to the system
    assert isolated_run.settings["child_env_cpu"] == CPU_CHILD_ENV
    assert isolated_run.settings["memory_limit_bytes"] == 512 * MiB


# ------------------------------------------------- the same classification, in process


def test_oom_messages_raised_in_process_are_oom_and_the_sweep_goes_on(
    misbehaving: Path, restore_torch_threads: None
) -> None:
    from batchscope.workloads import WorkloadOptions, load_workload

    workload = load_workload(f"{misbehaving}:make", WorkloadOptions())
    run = run_sweep(_plan(misbehaving, [4, 5, 6, 8, 1]), workload=workload)
    trials = _by_size(run)
    assert trials[4].status == "oom" and "CUDA out of memory" in trials[4].error
    assert trials[5].status == "oom" and "DefaultCPUAllocator" in trials[5].error
    assert trials[6].status == "oom" and "could not create a primitive" in trials[6].error
    # a bug is an error, not an out-of-memory
    assert trials[8].status == "error" and "a bug in the user's forward" in trials[8].error
    assert trials[1].status == "ok"


# -------------------------------------------------------------- is_oom_error


@pytest.mark.parametrize(
    "exc",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total)"),
        RuntimeError("CUDA error: out of memory"),
        RuntimeError(
            "MPS backend out of memory (MPS allocated: 8.00 GB, other allocations: 1.2 GB, "
            "max allowed: 9.07 GB). Tried to allocate 256.00 MB on private pool."
        ),
        RuntimeError("XPU out of memory. Tried to allocate 1.00 GiB"),
        RuntimeError("HIP out of memory. Tried to allocate 1.00 GiB"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:114] data. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 137438953472 bytes. Error code 12 "
            "(Cannot allocate memory)"
        ),
        RuntimeError("could not create a primitive"),
        RuntimeError("could not create a primitive descriptor for a convolution forward"),
        MemoryError(),
        MemoryError("Unable to allocate 8.00 GiB for an array with shape (1024, 1024, 1024)"),
        OSError(12, "Cannot allocate memory"),
        RuntimeError("std::bad_alloc"),
    ],
    ids=lambda e: f"{type(e).__name__}:{str(e)[:30]}",
)
def test_is_oom_error_recognises_out_of_memory(exc: BaseException) -> None:
    assert is_oom_error(exc)


def test_torch_out_of_memory_error_by_type_whatever_its_message() -> None:
    assert is_oom_error(torch.OutOfMemoryError("something odd"))
    assert is_oom_error(torch.cuda.OutOfMemoryError("something odd"))


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("a bug in the user's forward"),
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 4x1)"),
        RuntimeError("CUDA error: device-side assert triggered"),
        KeyError("memory"),
    ],
)
def test_is_oom_error_leaves_other_errors_alone(exc: BaseException) -> None:
    assert not is_oom_error(exc)


# ------------------------------------------------- the CPU child's malloc settings


def _spec(**fields: object) -> TrialSpec:
    base: dict[str, object] = {"workload": "linear", "workload_options": {}, "device": "cpu"}
    return TrialSpec(batch_size=1, **{**base, **fields})  # type: ignore[arg-type]


def test_malloc_threshold_only_for_cpu_trials_with_a_memory_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert cpu_child_env(None) == {}
    assert cpu_child_env(1024) == CPU_CHILD_ENV
    assert "MALLOC_MMAP_THRESHOLD_" not in _child_env(_spec())
    limited = _child_env(_spec(memory_limit_bytes=MiB * 256))
    assert limited["MALLOC_MMAP_THRESHOLD_"] == "65536"
    gpu = _child_env(_spec(memory_limit_bytes=MiB * 256, device="cuda:0"))
    assert "MALLOC_MMAP_THRESHOLD_" not in gpu


# ------------------------------------------- --memory-limit in a real sweep (issue 3a)


@pytest.fixture(scope="module")
def limited_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CliResult]:
    """simplecnn at 16, 1024 and 2048 under a 300 MiB limit.

    Measured with MALLOC_MMAP_THRESHOLD_=65536: peak ≈ 20 MiB + 207 KiB × batch size,
    so 16 needs ~23 MiB and 1024 ~230 MiB (both far below), 2048 ~440 MiB (far above).
    """
    from conftest import run_cli

    folder = tmp_path_factory.mktemp("limited")
    result = run_cli(
        "sweep", "simplecnn", "-b", "16,1024,2048", "--steps", "1", "--warmup", "0",
        "--threads", "1", "--memory-limit", "300MiB", "--store", "r.db", "--json", "r.json",
        "--no-report", "-q",
        cwd=folder,
    )  # fmt: skip
    return folder, result


def test_the_trial_over_the_limit_is_oom_and_the_other_is_kept(
    limited_sweep: tuple[Path, CliResult],
) -> None:
    folder, (code, out, err) = limited_sweep
    assert code == 1, err  # a trial failed: exit 1, with everything kept
    data = json.loads((folder / "r.json").read_text())
    small, medium, big = data["trials"]
    for trial, size in ((small, 16), (medium, 1024)):
        assert (trial["batch_size"], trial["status"]) == (size, "ok")
        assert trial["peak_memory_bytes"] < 300 * MiB
    assert (big["batch_size"], big["status"]) == (2048, "oom")
    # stopped as soon as its memory passed the limit, or judged on its peak at the end
    assert "--memory-limit 300 MiB" in big["error"]
    assert big["peak_memory_bytes"] is None or big["peak_memory_bytes"] > 300 * MiB
    assert data["settings"]["child_env_cpu"] == CPU_CHILD_ENV
    assert "oom" in out
    # both are in the store too
    from batchscope.run.store import Store

    with Store(folder / "r.db") as store:
        (summary,) = store.list_runs()
        assert (summary.n_ok, summary.n_failed, summary.n_planned) == (2, 1, 3)


def test_peak_memory_grows_with_the_activations(limited_sweep: tuple[Path, CliResult]) -> None:
    folder, _ = limited_sweep
    small, medium, _ = json.loads((folder / "r.json").read_text())["trials"]
    for trial in (small, medium):
        assert trial["peak_memory_bytes"] is not None and trial["peak_rss_bytes"] is not None
        assert trial["peak_rss_bytes"] >= trial["peak_memory_bytes"]
    # each sample keeps at least its conv and ReLU outputs (2 × 16×32×32 floats =
    # 128 KiB) for the backward pass
    growth = medium["peak_memory_bytes"] - small["peak_memory_bytes"]
    assert growth > (1024 - 16) * 128 * 1024


# ------------------------------------------------------------ bad inputs (issue 3f)


def test_bad_memory_limits_and_timeouts_are_one_line(cli: Callable[..., CliResult]) -> None:
    cases = [
        (("--memory-limit", "lots"), ("--memory-limit", "'lots'")),
        (("--memory-limit", "100KiB"), ("--memory-limit 100 KiB", "simplecnn", "weights")),
        (("--trial-timeout", "0"), ("--trial-timeout 0",)),
    ]
    for args, named in cases:
        code, out, err = cli("sweep", "simplecnn", "-b", "4", "--steps", "1", "--no-store", *args)
        assert code == 2, (args, code, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("batchscope: error: "), err
        assert "Traceback" not in out + err
        for text in named:
            assert text in lines[0], (text, lines[0])
