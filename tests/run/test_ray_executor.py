"""``--executor ray`` on a real local Ray cluster (``num_cpus=2``), started once for the module.

A grid of ``linear`` trials runs as Ray tasks and every trial is stored exactly once;
then a driver (a real ``batchscope sweep`` joining the cluster with ``--ray-address``)
is killed by its PID mid-way, and a resume (``run_sweep(resume=...)``, what ``--resume``
runs) finishes the run without running a stored trial again. ``--parallel-cpu-trials``
lets two CPU trials run at once on the one node. At the end, every process the cluster
started has ended.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from batchscope.core.plan import Plan
from batchscope.run.executors import RayExecutor
from batchscope.run.resume import resumed_plan
from batchscope.run.store import Store
from batchscope.run.sweep import Probe, run_sweep
from conftest import cli_env

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

#: a safety stop for each wait, not a measurement: every wait ends once its condition holds
PATIENCE_S = 120


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


def descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray cluster of 2 CPUs; its address, for drivers in other processes."""
    before = descendants()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()
        wait_until(lambda: not descendants() - before, "the Ray cluster's processes to end")


def test_a_grid_runs_as_ray_tasks_and_each_trial_is_stored_once(
    cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = Plan(workload="linear", batch_sizes=[8, 32], steps=3, warmup=1, threads=1)
    found = Probe(workload={"name": "linear", "spec": "linear"}, environment={"devices": ["cpu"]})
    stored: list[str] = []
    add = Store.add_trial
    monkeypatch.setattr(
        Store,
        "add_trial",
        lambda self, run_id, key, t: (stored.append(key), add(self, run_id, key, t))[1],
    )
    executor = RayExecutor(parallel_cpu_trials=True)
    assert not executor.started  # it joined the module's cluster, and leaves it running
    with Store(tmp_path / "s.db") as store:
        run = run_sweep(plan, store=store, found=found, peak=False, executor=executor)
        keys = store.completed_keys(run.run_id)
    assert sorted(stored) == sorted(s.key for s in plan.trials()) == sorted(keys)
    assert [t.status for t in run.trials] == ["ok"] * 2, [t.error for t in run.trials]
    assert {t.executor for t in run.trials} == {"ray"}
    assert {t.hostname for t in run.trials} == {os.uname().nodename}
    assert any("ran trials at the same time" in n for n in run.settings["notes"])
    assert ray.is_initialized()


GATED = '''\
"""Batch size 4 waits for a ``release`` file next to this one; every trial logs its size."""

import os
import pathlib
import time

import torch
from torch import nn
from torch.utils.data import TensorDataset

import batchscope

HERE = pathlib.Path(__file__).parent


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)
        self.logged = False

    def forward(self, x):
        if not self.logged:
            self.logged = True
            with open(HERE / "calls.log", "a") as log:
                log.write(f"{x.shape[0]}\\n")
        if x.shape[0] == 4:
            (HERE / "blocked.pid").write_text(str(os.getpid()))
            while not (HERE / "release").exists():
                time.sleep(0.05)
        return self.lin(x)


def make():
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    return batchscope.Workload(
        name="gated",
        model=Gated,
        train_dataset=TensorDataset(x, x.sum(dim=1, keepdim=True)),
        loss=nn.MSELoss(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.01),
    )
'''


def sweep_cmd(workload: str, address: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "batchscope", "sweep", workload,
        "-b", "4,2", "--steps", "1", "--warmup", "0", "--threads", "1",
        "--executor", "ray", "--ray-address", address, "--parallel-cpu-trials",
        "--store", "s.db", "--no-report", "-q", *extra,
    ]  # fmt: skip


def stored(db: Path) -> tuple[str | None, set[str]]:
    if not db.exists():
        return None, set()
    with Store(db) as store:
        runs = store.list_runs()
        return (runs[0].run_id, store.completed_keys(runs[0].run_id)) if runs else (None, set())


def test_a_killed_driver_resumes_without_running_a_stored_trial_again(
    cluster: str, tmp_path: Path
) -> None:
    (tmp_path / "gated.py").write_text(GATED, encoding="utf-8")
    workload = str(tmp_path / "gated.py") + ":make"
    driver = subprocess.Popen(
        sweep_cmd(workload, cluster),
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # b=2 finishes while b=4 (submitted first) is blocked: two trials ran at once
        wait_until(
            lambda: (
                driver.poll() is not None
                or (
                    stored(tmp_path / "s.db")[1] == {"cpu|bs=2|r=0"}
                    and (tmp_path / "blocked.pid").exists()
                )
            ),
            "b=2 stored while b=4 is blocked",
        )
        assert driver.poll() is None, driver.communicate()[1]
        blocked = int((tmp_path / "blocked.pid").read_text())
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        if driver.stderr is not None:
            driver.stderr.close()
    # the dead driver's task, and the trial child under it, are gone: nothing left running
    wait_until(lambda: not psutil.pid_exists(blocked), "the blocked trial's child to end")
    run_id, keys = stored(tmp_path / "s.db")
    assert keys == {"cpu|bs=2|r=0"}

    (tmp_path / "release").write_text("")
    # --resume, as the CLI runs it (in this process: the driver's start-up is tested above)
    with Store(tmp_path / "s.db") as store:
        previous = store.get_run(str(run_id))
        run = run_sweep(
            resumed_plan(previous, {}),
            store=store,
            resume=str(run_id),
            found=Probe(previous.workload, previous.environment),
            peak=False,
            executor=RayExecutor(parallel_cpu_trials=True),
        )
        assert store.completed_keys(str(run_id)) == {"cpu|bs=2|r=0", "cpu|bs=4|r=0"}
    assert sorted(t.batch_size for t in run.trials) == [2, 4]
    assert all(t.ok and t.executor == "ray" for t in run.trials), [t.error for t in run.trials]
    # b=2 trained once (never re-run); b=4 twice (the killed try and the resumed one)
    assert sorted((tmp_path / "calls.log").read_text().split()) == ["2", "4", "4"]
