"""``--executor gpus`` with real worker processes: pinning, results, Ctrl-C.

Here without a GPU the pool is given a fake GPU list: a CPU trial runs in a worker as
usual, and a ``cuda:0`` trial pinned to "GPU 7" proves the pinning reached the child
(torch there sees no CUDA device, so the trial fails in one line, and says which GPU it
was given). The real GPU path is the ``gpu``-marked test at the end.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from batchscope.core.plan import TrialSpec
from batchscope.run.executors import Gpu, GpuPoolExecutor

psutil = pytest.importorskip("psutil")


#: the suite's trial zygote is a descendant of this process: these tests count ours
pytestmark = pytest.mark.usefixtures("no_zygote")


def spec(device: str, b: int = 8, steps: int = 2) -> TrialSpec:
    return TrialSpec(
        workload="linear", device=device, batch_size=b, steps=steps, warmup=0, threads=1
    )


#: descendants of this process that earlier tests left running on purpose (a
#: multiprocessing resource tracker, a launcher's helper): not this module's to end
_BEFORE: set[int] = set()


@pytest.fixture(autouse=True)
def _baseline() -> None:
    _BEFORE.clear()
    _BEFORE.update(p.pid for p in psutil.Process().children(recursive=True))


def descendants() -> set[int]:
    """This process's descendants started since the test began."""
    return {p.pid for p in psutil.Process().children(recursive=True)} - _BEFORE


def wait_gone(pids: set[int]) -> bool:
    """Whether every process of ``pids`` has ended within a safety stop (a killed worker's
    trial child gets its SIGKILL from the kernel a moment after the worker dies)."""
    deadline = time.monotonic() + 60
    while pids & descendants():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_pinned_worker_runs_the_trial_and_records_its_gpu() -> None:
    executor = GpuPoolExecutor([Gpu(0, "7", "fake")])
    progress: list[tuple[int, str]] = []
    running: set[int] = set()

    def on_progress(index: int, kind: str, payload: dict[str, Any]) -> None:
        progress.append((index, kind))
        running.update(descendants())

    executor.on_progress = on_progress
    executor.submit([spec("cpu"), spec("cuda:0")])
    try:
        by_device = {d.spec.device: d.trial for d in executor.as_completed()}
    finally:
        executor.close()
    cpu, cuda = by_device["cpu"], by_device["cuda:0"]
    assert cpu.status == "ok" and cpu.physical_gpus == [] and cpu.executor == "gpus"
    assert cuda.status != "ok" and cuda.physical_gpus == ["7"]
    assert cuda.device == "cuda:0"  # the planned device, whatever the child was handed
    assert (0, "step") in progress  # the CPU trial's events crossed its worker
    assert running and wait_gone(running)


def test_cancel_kills_the_worker_and_its_trial_child() -> None:
    executor = GpuPoolExecutor([Gpu(0, "0", "fake")])
    seen: list[set[int]] = []

    def stop_at_first_step(index: int, kind: str, payload: dict[str, Any]) -> None:
        if kind == "step":  # the trial's child is training now
            seen.append(descendants())
            raise KeyboardInterrupt

    executor.on_progress = stop_at_first_step
    executor.submit([spec("cpu", steps=100_000)])
    with pytest.raises(KeyboardInterrupt):
        list(executor.as_completed())
    executor.cancel()
    assert len(seen[0]) >= 2  # the worker and the trial's child were running
    assert wait_gone(seen[0])


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_real_gpu_each_trial_is_pinned_and_ok() -> None:
    from batchscope.core.plan import Plan
    from batchscope.run.executors import make_executor
    from batchscope.run.sweep import probe, run_sweep

    found = probe("linear")
    executor = make_executor("gpus", environment=found.environment)
    plan = Plan(workload="linear", batch_sizes=[8, 16, 32], devices=["cuda:0"], steps=5)
    run = run_sweep(plan, found=found, peak=False, executor=executor)
    assert [t.status for t in run.trials] == ["ok"] * 3, [t.error for t in run.trials]
    physical = {g.physical for g in executor.slots.gpus}
    assert all(len(t.physical_gpus) == 1 and t.physical_gpus[0] in physical for t in run.trials)
    assert all(t.device == "cuda:0" and t.executor == "gpus" for t in run.trials)
    assert any("ran trials at the same time" in n for n in run.settings["notes"])
