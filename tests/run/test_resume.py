"""A results store that loses nothing: a sweep killed with SIGKILL and resumed, two
sweeps writing one store at once, Ctrl-C, and the store's bad inputs.

Sweeps run as real ``python -m batchscope`` processes. To stop one *mid-way* without
a timing race, the workload's forward at batch size 4 blocks until a ``release``
file appears (it writes ``blocked.pid`` first): the test waits until the store holds
the finished trial and the next one is blocked, then kills or interrupts.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from batchscope.core.results import RunResult
from batchscope.run.store import Store
from conftest import CliResult, cli_env, run_cli

GATED = '''\
"""Batch size 4 waits for a ``release`` file next to this one."""

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
        if not self.logged:  # one line per trial that reached training
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

#: how long a test waits for a condition before it gives up (a safety stop, not a
#: measurement: every wait below ends as soon as its condition holds)
PATIENCE_S = 240


def gated_workload(folder: Path) -> str:
    path = folder / "gated.py"
    path.write_text(GATED, encoding="utf-8")
    return f"{path}:make"


SWEEP_ARGS = ("-b", "2,4,8", "--steps", "1", "--warmup", "0", "--threads", "1", "--no-report")


def start_sweep(folder: Path, spec: str, *extra: str, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchscope", "sweep", spec, *SWEEP_ARGS, *extra],
        cwd=folder,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,  # type: ignore[arg-type]
    )


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    """Poll until ``condition()`` holds; fail if the sweep exits first or patience ends."""
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the sweep exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


def stored_trials(db: Path) -> tuple[str | None, set[str]]:
    """(run id, keys with a stored trial) of the only run in ``db``, read as the
    store itself reads them."""
    if not db.exists():
        return None, set()
    with Store(db) as store:
        runs = store.list_runs()
        if not runs:
            return None, set()
        run_id = runs[0].run_id
        return run_id, store.completed_keys(run_id)


def first_trial_stored_and_next_blocked(folder: Path) -> bool:
    _, keys = stored_trials(folder / "s.db")
    return len(keys) >= 1 and (folder / "blocked.pid").exists()


def process_gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# ------------------------------------------------------------ SIGKILL, then --resume


def test_sigkill_mid_sweep_then_resume_has_every_trial_once(tmp_path: Path) -> None:
    spec = gated_workload(tmp_path)
    proc = start_sweep(tmp_path, spec, "--store", "s.db", "-q", start_new_session=True)
    wait_for(lambda: first_trial_stored_and_next_blocked(tmp_path), proc, "trial 1 was stored")
    blocked = int((tmp_path / "blocked.pid").read_text())
    os.killpg(proc.pid, signal.SIGKILL)  # the whole sweep, as an OOM killer or kill -9 would
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    # the trial's own process dies with its parent (it runs in a session of its own)
    wait_for_gone = time.monotonic() + PATIENCE_S
    while not process_gone(blocked):
        assert time.monotonic() < wait_for_gone, "the blocked trial outlived its sweep"
        time.sleep(0.1)

    run_id, keys = stored_trials(tmp_path / "s.db")
    assert run_id is not None and keys == {"cpu|bs=2|r=0"}

    (tmp_path / "release").touch()
    code, out, err = run_cli(
        "sweep", spec, *SWEEP_ARGS, "--store", "s.db", "--resume", run_id, "-q", cwd=tmp_path
    )
    assert code == 0, err

    with sqlite3.connect(tmp_path / "s.db") as conn:
        rows = conn.execute(
            "SELECT key, COUNT(*), MIN(status) FROM trials WHERE run_id = ? GROUP BY key",
            (run_id,),
        ).fetchall()
        n_runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert n_runs == 1  # resumed in place, not a new run
    assert sorted(rows) == [
        ("cpu|bs=2|r=0", 1, "ok"),
        ("cpu|bs=4|r=0", 1, "ok"),
        ("cpu|bs=8|r=0", 1, "ok"),
    ]
    # the finished trial was not trained again: 2 once, 4 twice (killed, then resumed), 8 once
    calls = (tmp_path / "calls.log").read_text().split()
    assert sorted(calls) == ["2", "4", "4", "8"]
    with Store(tmp_path / "s.db") as store:
        run = store.get_run(run_id)
    assert [t.batch_size for t in run.trials] == [2, 4, 8]
    # no memory limit: CPU children ran with glibc's default malloc settings
    assert run.settings["child_env_cpu"] == {}


# ------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_exits_130_keeps_finished_trials_and_says_how_to_resume(tmp_path: Path) -> None:
    spec = gated_workload(tmp_path)
    proc = start_sweep(tmp_path, spec, "--store", "s.db", "-q")
    wait_for(lambda: first_trial_stored_and_next_blocked(tmp_path), proc, "trial 1 was stored")
    blocked = int((tmp_path / "blocked.pid").read_text())
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=PATIENCE_S)
    assert proc.returncode == 130, (out, err)
    run_id, keys = stored_trials(tmp_path / "s.db")
    assert keys == {"cpu|bs=2|r=0"}
    assert f"--resume {run_id}" in err
    assert "1 finished trial(s) are saved" in err
    assert "Traceback" not in err
    assert "gated on cpu" in out  # the finished trial's table is still printed
    assert process_gone(blocked)  # the interrupted trial's process was stopped


# ------------------------------------------------------- two sweeps, one store


def test_two_concurrent_sweeps_into_one_store_both_complete(tmp_path: Path) -> None:
    args = ("-b", "2,4", "--steps", "1", "--warmup", "0", "--threads", "1", "--no-report")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "batchscope", "sweep", "linear", *args, "--store", "s.db", "-q"],
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=PATIENCE_S) for p in procs]
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    with Store(tmp_path / "s.db") as store:
        summaries = store.list_runs()
        assert len(summaries) == 2
        for summary in summaries:
            assert (summary.n_ok, summary.n_failed, summary.n_planned) == (2, 0, 2)
            run: RunResult = store.get_run(summary.run_id)
            assert [t.batch_size for t in run.trials] == [2, 4]


# ------------------------------------------------------------ bad inputs (issue 3f)

NOT_A_STORE = b"batch_size,time\n16,1.0\n"


class BadInputs:
    def __init__(self, root: Path, futures: dict[str, Future[CliResult]]) -> None:
        self.root = root
        self.futures = futures

    def __getitem__(self, name: str) -> CliResult:
        return self.futures[name].result()


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BadInputs]:
    """Every case at once (two need a probe child, which costs a torch import)."""
    root = tmp_path_factory.mktemp("store_bad_inputs")
    (root / "notes.csv").write_bytes(NOT_A_STORE)
    with Store(root / "other.db") as store:  # a run of 'linear' to resume with another workload
        store.create_run(
            RunResult(
                run_id="20260101-000000-abcd",
                created="2026-01-01T00:00:00+00:00",
                workload={"name": "linear", "spec": "linear"},
                settings={},
                environment={},
            ),
            ["cpu|bs=2|r=0"],
        )
    base = ("sweep", "linear", "-b", "2", "--steps", "1", "--no-report")
    cases = {
        "resume unknown": (*base, "--store", "other.db", "--resume", "20991231-nosuch"),
        "resume other workload": (
            "sweep", "digits", "-b", "2", "--steps", "1", "--no-report",
            "--store", "other.db", "--resume", "20260101-000000-abcd",
        ),
        "store folder missing": (*base, "--store", "no/such/folder/s.db"),
        "store not ours": (*base, "--store", "notes.csv"),
    }  # fmt: skip
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield BadInputs(
            root, {name: pool.submit(run_cli, *args, cwd=root) for name, args in cases.items()}
        )


@pytest.mark.parametrize(
    ("name", "named"),
    [
        ("resume unknown", ("'20991231-nosuch'", "batchscope runs")),
        ("resume other workload", ("'linear'", "'digits'", "same workload")),
        ("store folder missing", ("no/such/folder", "does not exist")),
        ("store not ours", ("notes.csv", "not a batchscope results store")),
    ],
)
def test_store_bad_input_is_one_line(
    bad_inputs: BadInputs, name: str, named: tuple[str, ...]
) -> None:
    code, out, err = bad_inputs[name]
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("batchscope: error: "), err
    assert "Traceback" not in out + err
    for text in named:
        assert text in lines[0], (text, lines[0])


def test_a_foreign_file_given_as_store_is_left_untouched(bad_inputs: BadInputs) -> None:
    bad_inputs["store not ours"]
    root = bad_inputs.root
    assert (root / "notes.csv").read_bytes() == NOT_A_STORE
    assert not (root / "notes.csv-wal").exists() and not (root / "notes.csv-shm").exists()


def test_the_refused_resume_did_not_touch_the_run(bad_inputs: BadInputs) -> None:
    bad_inputs["resume other workload"]
    bad_inputs["resume unknown"]
    with Store(bad_inputs.root / "other.db") as store:
        (summary,) = store.list_runs()
        assert summary.n_done == 0 and summary.n_planned == 1


# ------------------------------------------------- a resume is the stored plan


def _stored_half_run(folder: Path) -> tuple[str, list[str]]:
    """A run of 'linear' planned at b=8,16,32 with 4 steps, of which b=8 finished."""
    from batchscope.core.plan import Plan
    from batchscope.core.results import StepStats, TrialResult

    plan = Plan(workload="linear", batch_sizes=[8, 16, 32], steps=4, warmup=0, threads=1)
    keys = [s.key for s in plan.trials()]
    run = RunResult(
        run_id="20260101-000000-half",
        created="2026-01-01T00:00:00+00:00",
        workload={"name": "linear", "spec": "linear", "options": {}},
        settings={**plan.settings(), "isolation": "process"},
        environment={},
    )
    with Store(folder / "s.db") as store:
        store.create_run(run, keys)
        times = [0.001] * 4
        store.add_trial(
            run.run_id,
            keys[0],
            TrialResult(
                device="cpu",
                batch_size=8,
                step_time_s=StepStats.from_samples(times),
                step_times_s=times,
                samples_per_s=8000.0,
            ),
        )
    return run.run_id, keys


def test_resume_alone_runs_exactly_the_missing_trials_of_the_stored_plan(tmp_path: Path) -> None:
    run_id, keys = _stored_half_run(tmp_path)
    code, out, err = run_cli(
        "sweep", "--resume", run_id, "--store", "s.db", "-q", "--no-report", cwd=tmp_path
    )
    assert code == 0, err
    with Store(tmp_path / "s.db") as store:
        run = store.get_run(run_id)
        (summary,) = store.list_runs()
    assert [t.batch_size for t in run.trials] == [8, 16, 32]
    assert all(t.measured_steps == 4 for t in run.trials[1:])  # the stored --steps 4
    assert (summary.n_ok, summary.n_planned) == (3, 3)


def test_a_resume_that_contradicts_the_stored_plan_is_refused(tmp_path: Path) -> None:
    run_id, _ = _stored_half_run(tmp_path)
    code, out, err = run_cli(
        "sweep", "linear", "--resume", run_id, "--store", "s.db", "-b", "16,32", "--steps", "5",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "runs the stored plan" in lines[0]
    assert "--batch-sizes 16,32 (the stored plan has 8,16,32)" in lines[0]
    assert "and 1 more" in lines[0]
    with Store(tmp_path / "s.db") as store:  # nothing ran
        (summary,) = store.list_runs()
        assert summary.n_done == 1 and summary.n_planned == 3


def test_a_resume_with_the_stored_values_is_accepted(tmp_path: Path) -> None:
    run_id, _ = _stored_half_run(tmp_path)
    code, _, err = run_cli(
        "sweep", "linear", "--resume", run_id, "--store", "s.db", "-b", "8,16,32", "--steps", "4",
        "-q", "--no-report", cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
