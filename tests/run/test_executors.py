"""The executors' logic with fake units of work: no trial process is started here.

The scheduling claims (one trial per GPU at a time, never two CPU trials at once unless
asked, every trial back exactly once) are checked over seeded random completion orders,
not one hand-picked order. Ray's own scheduling is tested on a real local cluster in
test_ray_executor.py.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from batchscope.core.plan import Plan, TrialSpec
from batchscope.core.results import RunResult, TrialResult
from batchscope.errors import UsageError
from batchscope.hardware.machine import this_machine
from batchscope.run import executors as ex
from batchscope.run.store import Store
from batchscope.run.sweep import Probe, SweepInterrupted, run_sweep


def spec(device: str = "cpu", b: int = 8, repeat: int = 0) -> TrialSpec:
    return TrialSpec(workload="linear", device=device, batch_size=b, repeat=repeat, threads=1)


@dataclass(kw_only=True)
class WideSpec(TrialSpec):
    """A data-parallel trial as the world-size branch will plan it (``world_size`` GPUs)."""

    world_size: int = 2


def ok_trial(s: TrialSpec) -> TrialResult:
    return TrialResult.from_spec(s, samples_per_s=100.0 * s.batch_size)


# -- local ----------------------------------------------------------------------------------


def test_local_runs_in_order_forwards_progress_and_records_the_machine() -> None:
    seen: list[tuple[Any, ...]] = []

    def work(s: TrialSpec, progress: ex.Progress) -> TrialResult:
        seen.append(("work", s.batch_size))
        progress("step", {"done": 1})
        return ok_trial(s)

    local = ex.LocalExecutor(work)
    local.on_start = lambda i, s: seen.append(("start", i, s.batch_size))
    local.on_progress = lambda i, kind, p: seen.append(("progress", i, kind))
    local.submit([spec(b=8), spec(b=16)])
    done = list(local.as_completed())
    assert seen == [
        ("start", 0, 8),
        ("work", 8),
        ("progress", 0, "step"),
        ("start", 1, 16),
        ("work", 16),
        ("progress", 1, "step"),
    ]
    assert [(d.index, d.trial.batch_size) for d in done] == [(0, 8), (1, 16)]
    host, fingerprint = this_machine()
    assert all(d.trial.executor == "local" for d in done)
    assert all((d.trial.hostname, d.trial.machine_fingerprint) == (host, fingerprint) for d in done)
    assert local.notes() == []


def test_local_cancel_drops_what_has_not_started() -> None:
    ran: list[int] = []
    local = ex.LocalExecutor(lambda s, p: (ran.append(s.batch_size), ok_trial(s))[1])
    local.submit([spec(b=b) for b in (1, 2, 3)])
    it = local.as_completed()
    next(it)
    local.cancel()
    assert list(it) == [] and ran == [1]


# -- gpus: slots and the pool, with a fake launcher ----------------------------------------


class FakeLauncher:
    """Starts nothing: it records each start and, asked for a message, ends one running
    trial chosen by a seeded generator (so many completion orders are tried)."""

    def __init__(self, seed: int, *, die: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.rng = random.Random(seed)
        self.running: dict[int, tuple[TrialSpec, list[str]]] = {}
        self.starts: list[tuple[int, str, list[str]]] = []
        self.max_gpu_trials = 0
        self.max_cpu_trials = 0
        self.killed = False
        self.die = die

    def start(self, index: int, spec: TrialSpec, gpus: Sequence[str]) -> None:
        busy = [g for _, used in self.running.values() for g in used]
        assert not set(gpus) & set(busy), f"GPU {gpus} handed out twice"
        self.running[index] = (spec, list(gpus))
        self.starts.append((index, spec.device, list(gpus)))
        devices = [s.device for s, _ in self.running.values()]
        self.max_gpu_trials = max(self.max_gpu_trials, sum(d != "cpu" for d in devices))
        self.max_cpu_trials = max(self.max_cpu_trials, devices.count("cpu"))

    def next_message(self) -> ex.Message:
        index = self.rng.choice(sorted(self.running))
        s, gpus = self.running.pop(index)
        if index in self.die:
            return ("failed", index, "the trial's worker process ended (-9)")
        trial = ok_trial(ex.pinned_spec(s, gpus))
        trial.device = s.device
        return ("done", index, ex.stamp(trial, "gpus", gpus).to_dict())

    def kill_all(self) -> None:
        self.killed = True
        self.running.clear()


TWO_H200 = [ex.Gpu(0, "0", "H200"), ex.Gpu(1, "1", "H200")]


def pool(gpus: list[ex.Gpu], launcher: FakeLauncher, **kw: Any) -> ex.GpuPoolExecutor:
    return ex.GpuPoolExecutor(gpus, launcher=launcher, **kw)


@pytest.mark.parametrize("seed", range(20))
def test_gpus_one_trial_per_gpu_one_cpu_trial_and_each_back_once(seed: int) -> None:
    launcher = FakeLauncher(seed)
    executor = pool(TWO_H200, launcher)
    specs = [spec("cuda:0", b) for b in (8, 16, 32, 64, 128)] + [spec("cpu", b) for b in (8, 16)]
    started: list[int] = []
    executor.on_start = lambda i, s: started.append(i)
    executor.submit(specs)
    done = list(executor.as_completed())
    assert sorted(d.index for d in done) == list(range(len(specs)))
    assert sorted(started) == list(range(len(specs)))
    assert launcher.max_gpu_trials == 2  # both GPUs busy at once, never a third trial
    assert launcher.max_cpu_trials == 1  # never two CPU trials on this machine
    for d in done:
        assert d.trial.device == d.spec.device  # the planned device, not the pinned cuda:0
        assert len(d.trial.physical_gpus) == (0 if d.spec.device == "cpu" else 1)
    assert {g for d in done if d.spec.device != "cpu" for g in d.trial.physical_gpus} == {"0", "1"}


def test_gpus_parallel_cpu_trials_share_the_machine_when_asked() -> None:
    launcher = FakeLauncher(0)
    executor = pool(TWO_H200, launcher, parallel_cpu_trials=True, cpu_slots=2)
    executor.submit([spec("cpu", b) for b in (8, 16, 32)])
    assert len(list(executor.as_completed())) == 3
    assert launcher.max_cpu_trials == 2
    assert "--parallel-cpu-trials" in executor.notes()[0]


def test_gpus_of_different_models_keep_each_series_on_its_gpu() -> None:
    mixed = [ex.Gpu(0, "0", "H200"), ex.Gpu(1, "1", "L4")]
    launcher = FakeLauncher(3)
    executor = pool(mixed, launcher)
    executor.submit([spec("cuda:1", b) for b in (8, 16, 32)] + [spec("cuda:0", 8)])
    list(executor.as_completed())
    assert {(dev, tuple(g)) for _, dev, g in launcher.starts} == {
        ("cuda:1", ("1",)),
        ("cuda:0", ("0",)),
    }


def test_gpus_data_parallel_trial_takes_world_size_gpus_or_is_refused() -> None:
    four = [ex.Gpu(i, str(i), "H200") for i in range(4)]
    launcher = FakeLauncher(1)
    executor = pool(four, launcher)
    wide = [WideSpec(workload="linear", device="cuda:0", batch_size=b) for b in (8, 16, 32)]
    executor.submit(wide)
    done = list(executor.as_completed())
    assert all(len(d.trial.physical_gpus) == 2 for d in done)
    assert launcher.max_gpu_trials == 2  # two 2-GPU trials fill four GPUs
    too_wide = WideSpec(workload="linear", device="cuda:0", batch_size=8, world_size=8)
    with pytest.raises(UsageError, match="needs 8 GPU"):
        executor.submit([too_wide])


def test_gpus_a_dead_worker_is_a_crashed_trial_and_cancel_kills_every_worker() -> None:
    launcher = FakeLauncher(0, die={1})
    executor = pool(TWO_H200, launcher)
    executor.submit([spec("cuda:0", 8), spec("cuda:0", 16)])
    by_index = {d.index: d.trial for d in executor.as_completed()}
    assert by_index[0].status == "ok"
    assert by_index[1].status == "crashed" and "worker process ended" in str(by_index[1].error)
    assert by_index[1].physical_gpus and by_index[1].executor == "gpus"
    executor.submit([spec("cuda:0", b) for b in (8, 16, 32)])
    it = executor.as_completed()
    next(it)
    executor.cancel()
    assert launcher.killed and list(it) == []
    assert executor.slots.free == {0, 1} and executor.slots.cpu_busy == 0


def test_gpus_without_a_gpu_is_one_line() -> None:
    with pytest.raises(UsageError, match="--executor gpus needs a GPU, and torch sees none"):
        ex.make_executor("gpus", environment={"gpus": []})


def test_visible_gpus_name_the_physical_gpu_behind_cuda_n(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"gpus": [{"index": 0, "name": "H200"}, {"index": 1, "name": "H200"}]}
    assert [g.physical for g in ex.visible_gpus(env, "2,GPU-abc")] == ["2", "GPU-abc"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert [g.physical for g in ex.visible_gpus(env)] == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert [(g.visible, g.physical) for g in ex.visible_gpus(env)] == [(0, "5"), (1, "7")]
    assert ex.visible_gpus({"gpus": []}, None) == []


def test_run_pinned_pins_the_child_and_keeps_the_planned_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import batchscope.run.isolation as isolation

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    seen: dict[str, Any] = {}

    def fake_run_isolated(s: TrialSpec, **kw: Any) -> TrialResult:
        import os

        seen["device"], seen["visible"] = s.device, os.environ["CUDA_VISIBLE_DEVICES"]
        return ok_trial(s)

    monkeypatch.setattr(isolation, "run_isolated", fake_run_isolated)
    out = ex.run_pinned(
        spec("cuda:1").to_dict(), ["3"], executor="gpus", timeout_s=None, debug=False
    )
    assert seen == {"device": "cuda:0", "visible": "3"}
    trial = TrialResult.from_dict(out)
    assert (trial.device, trial.physical_gpus, trial.executor) == ("cuda:1", ["3"], "gpus")
    assert trial.hostname == this_machine()[0]


# -- ray: the resources a task asks for, and the driver's CPU gate (a fake ray) -------------


def test_ray_resources_per_trial() -> None:
    gpu = ex.ray_resources(
        spec("cuda:0"), parallel_cpu_trials=False, node_slots=True, max_node_cpus=8
    )
    assert gpu == {"num_gpus": 1, "num_cpus": 1}
    wide = WideSpec(workload="linear", device="cuda:0", batch_size=8, world_size=4)
    assert (
        ex.ray_resources(wide, parallel_cpu_trials=False, node_slots=True, max_node_cpus=8)[
            "num_gpus"
        ]
        == 4
    )
    cpu = ex.ray_resources(spec("cpu"), parallel_cpu_trials=False, node_slots=True, max_node_cpus=8)
    assert cpu["resources"] == {ex.CPU_TRIAL_RESOURCE: 1}
    free = ex.ray_resources(spec("cpu"), parallel_cpu_trials=True, node_slots=True, max_node_cpus=8)
    assert "resources" not in free
    many = TrialSpec(workload="linear", device="cpu", batch_size=8, threads=64)
    assert (
        ex.ray_resources(many, parallel_cpu_trials=True, node_slots=False, max_node_cpus=2)[
            "num_cpus"
        ]
        == 2
    )


class FakeRay:
    """Enough of the ray module for RayExecutor's driver logic; tasks end when waited on."""

    class exceptions:  # noqa: N801 (ray.exceptions)
        RayError = RuntimeError

    def __init__(self, resources: dict[str, float], seed: int) -> None:
        self.resources = resources
        self.rng = random.Random(seed)
        self.in_flight: dict[int, dict[str, Any]] = {}
        self.max_cpu_in_flight = 0
        self.cancelled: list[int] = []
        self.next_ref = 0

    def is_initialized(self) -> bool:
        return True

    def cluster_resources(self) -> dict[str, float]:
        return self.resources

    def nodes(self) -> list[dict[str, Any]]:
        return [{"Alive": True, "Resources": {"CPU": 4.0}}]

    def remote(self, **_: Any) -> Any:
        ray = self

        class Task:
            def options(self, **options: Any) -> Any:
                class Bound:
                    def remote(self, spec_dict: dict[str, Any], *_: Any) -> int:
                        ray.next_ref += 1
                        ray.in_flight[ray.next_ref] = spec_dict
                        cpus = sum(d["device"] == "cpu" for d in ray.in_flight.values())
                        ray.max_cpu_in_flight = max(ray.max_cpu_in_flight, cpus)
                        return ray.next_ref

                return Bound()

        return lambda fn: Task()

    def wait(self, refs: list[int], num_returns: int) -> tuple[list[int], list[int]]:
        ref = self.rng.choice(refs)
        return [ref], [r for r in refs if r != ref]

    def get(self, ref: int) -> dict[str, Any]:
        s = TrialSpec.from_dict(self.in_flight.pop(ref))
        return ex.stamp(ok_trial(s), "ray").to_dict()

    def cancel(self, ref: int, force: bool) -> None:
        self.cancelled.append(ref)


@pytest.mark.parametrize("seed", range(5))
def test_ray_driver_serialises_cpu_trials_on_a_cluster_without_the_resource(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    fake = FakeRay({"CPU": 8.0}, seed)
    monkeypatch.setattr(ex, "import_ray", lambda: fake)
    executor = ex.RayExecutor()
    assert executor.driver_serialises_cpu and not executor.started
    executor.submit([spec("cpu", b) for b in (8, 16, 32)] + [spec("cuda:0", 8)])
    done = list(executor.as_completed())
    assert sorted(d.index for d in done) == [0, 1, 2, 3]
    assert fake.max_cpu_in_flight == 1
    assert any("one at a time in the whole cluster" in n for n in executor.notes())
    executor.close()  # it did not start the cluster: nothing to shut down


def test_ray_cancel_cancels_every_task(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRay({"CPU": 8.0, ex.CPU_TRIAL_RESOURCE: 2.0}, 0)
    monkeypatch.setattr(ex, "import_ray", lambda: fake)
    executor = ex.RayExecutor()
    assert not executor.driver_serialises_cpu  # the nodes' resource does it
    executor.submit([spec("cpu", b) for b in (8, 16, 32)])
    it = executor.as_completed()
    next(it)
    executor.cancel()
    assert len(fake.cancelled) == 2 and list(it) == []


def test_an_address_nobody_answers_is_one_line_at_once() -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UsageError, match=f"--ray-address 127.0.0.1:{port}: no Ray cluster"):
        ex.check_reachable(f"127.0.0.1:{port}")
    ex.check_reachable("auto")  # left to Ray


def test_missing_ray_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    with pytest.raises(UsageError, match=r"pip install 'batchscope\[ray\]'"):
        ex.import_ray()


# -- the sweep's seam: results stored as they arrive, in any order; Ctrl-C -----------------


class OutOfOrder(ex.Executor):
    """A parallel executor whose trials end in reverse; ``stop_after`` raises Ctrl-C."""

    name = "fake"
    parallel = True

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.stop_after = stop_after
        self.cancelled = False
        self.closed = False

    def submit(self, specs: Sequence[TrialSpec]) -> None:
        self.todo = list(enumerate(specs))

    def as_completed(self) -> Any:
        for index, s in self.todo:
            self.on_start(index, s)
        for n, (index, s) in enumerate(reversed(self.todo)):
            if self.stop_after is not None and n == self.stop_after:
                raise KeyboardInterrupt
            yield ex.Finished(index, s, ex.stamp(ok_trial(s), self.name))

    def cancel(self) -> None:
        self.cancelled = True

    def close(self) -> None:
        self.closed = True

    def notes(self) -> list[str]:
        return [ex.parallel_note("fake", False)]


FOUND = Probe(
    workload={"name": "linear", "spec": "linear", "parameter_bytes": 100},
    environment={"devices": ["cpu"]},
)


def test_sweep_stores_each_trial_once_in_any_order(tmp_path: Path) -> None:
    plan = Plan(workload="linear", batch_sizes=[8, 16, 32], repeats=2, steps=1)
    executor = OutOfOrder()
    events: list[str] = []
    with Store(tmp_path / "s.db") as store:
        run = run_sweep(
            plan,
            store=store,
            found=FOUND,
            peak=False,
            executor=executor,
            on_event=lambda kind, p: events.append(kind),
        )
        keys = [k for k in store.completed_keys(run.run_id)]
    assert sorted(keys) == sorted(s.key for s in plan.trials())
    assert [t.batch_size for t in run.trials] == [s.batch_size for s in plan.trials()]
    assert events.count("trial_start") == events.count("trial_done") == 6
    assert run.settings["executor"] == "fake"
    assert any("ran trials at the same time" in n for n in run.settings["notes"])
    assert executor.closed


def test_sweep_ctrl_c_cancels_and_keeps_what_finished(tmp_path: Path) -> None:
    plan = Plan(workload="linear", batch_sizes=[8, 16, 32], steps=1)
    executor = OutOfOrder(stop_after=1)
    with Store(tmp_path / "s.db") as store:
        with pytest.raises(SweepInterrupted) as stop:
            run_sweep(plan, store=store, found=FOUND, peak=False, executor=executor)
        run: RunResult = stop.value.run
        assert [t.batch_size for t in run.trials] == [32]
        assert store.completed_keys(run.run_id) == {"cpu|bs=32|r=0"}
    assert executor.cancelled and executor.closed


def test_parallel_executor_refuses_in_process_trials() -> None:
    plan = Plan(workload="linear", batch_sizes=[8], steps=1)
    with pytest.raises(UsageError, match="drop --isolation none"):
        run_sweep(plan, found=FOUND, peak=False, executor=OutOfOrder(), isolation="none")


# -- the command line's one-line refusals ---------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"executor": "slurm"}, "--executor 'slurm' is not one of: local, gpus, ray"),
        ({"ray_address": "h:6379"}, "--ray-address is for --executor ray"),
        ({"parallel_cpu_trials": True}, "--parallel-cpu-trials is for --executor gpus or ray"),
        ({"executor": "gpus", "isolation": "none"}, "--executor gpus runs every trial in a child"),
    ],
)
def test_bad_executor_flags_are_refused(values: dict[str, Any], message: str) -> None:
    from batchscope.cli.request import build_sweep_request

    with pytest.raises(UsageError, match="^" + message.replace("(", r"\(")):
        build_sweep_request({"workload": "linear", **values}, {"workload"})


def test_executor_ray_without_ray_installed_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from batchscope.cli.request import executor_options

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    with pytest.raises(UsageError, match=r"pip install 'batchscope\[ray\]'"):
        executor_options("ray", None, False, "process")
