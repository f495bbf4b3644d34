"""Where a sweep's trials run: ``--executor local``, ``gpus`` or ``ray``.

The unit of work is always one trial in a fresh child process
(:func:`batchscope.run.isolation.run_isolated`, which classifies how it ended); an
executor only decides where, and how many at once:

- ``local`` (the default): one trial after another, here — the sweep as it always ran.
- ``gpus``: this node, one trial per visible GPU at a time. Each trial's worker process
  sets ``CUDA_VISIBLE_DEVICES`` to its GPU(s) before the child starts, and the child runs
  the spec with its device rewritten to ``cuda:0``; the result keeps the planned device
  and records the physical GPU (``physical_gpus``).
- ``ray``: each trial a Ray task (``max_calls=1``: a fresh worker per trial) that asks for
  the trial's GPUs (``num_gpus``) or CPUs and returns the trial's dict. Ray sets
  ``CUDA_VISIBLE_DEVICES`` for the task; ``ray.init(address=...)`` joins a cluster, else
  a local one is started (and shut down after the sweep).

Results reach the driver as they finish; the driver alone writes the store, so
``--resume`` and Ctrl-C (:meth:`Executor.cancel`: every worker killed, each trial child
dies with its worker) behave as with one trial at a time.

Timing truth: trials on one machine share its CPU, memory bandwidth and host links and
perturb each other, so the parallel executors put :func:`parallel_note` in the run's
notes, and never run two CPU-device trials at once on one machine unless asked
(``parallel_cpu_trials``). ``gpus`` keeps one CPU slot; ``ray`` asks each CPU trial for
the custom resource :data:`CPU_TRIAL_RESOURCE`, of which a local cluster has 1 (start
cluster nodes with ``--resources '{"batchscope_cpu_trial": 1}'``); on a cluster without
it the driver keeps at most one CPU trial in flight in the whole cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from batchscope.core.plan import TrialSpec
from batchscope.core.results import TrialResult
from batchscope.errors import UsageError
from batchscope.hardware.machine import this_machine
from batchscope.run.isolation import Progress

EXECUTORS = ("local", "gpus", "ray")

#: the custom Ray resource a CPU trial asks one of: 1 per node serialises CPU trials there
CPU_TRIAL_RESOURCE = "batchscope_cpu_trial"

#: ``on_start(index, spec)``: a trial was handed to a worker
OnStart = Callable[[int, TrialSpec], None]
#: ``on_progress(index, kind, payload)``: a trial's progress event
OnProgress = Callable[[int, str, dict[str, Any]], None]
#: the local unit of work: run one trial, report its progress, return its result
Work = Callable[[TrialSpec, Progress], TrialResult]


def check_executor(name: str) -> str:
    """``name`` if it is an executor, else a one-line :class:`UsageError`."""
    if name not in EXECUTORS:
        raise UsageError(f"--executor {name!r} is not one of: {', '.join(EXECUTORS)}")
    return name


def is_cuda(device: str) -> bool:
    return device.split(":")[0] == "cuda"


def world_size(spec: TrialSpec) -> int:
    """How many devices the trial's ranks need (data-parallel trials: more than 1)."""
    return max(1, int(getattr(spec, "world_size", 1) or 1))


def stamp(trial: TrialResult, executor: str, gpus: Sequence[str] = ()) -> TrialResult:
    """Record on ``trial`` where it ran: this machine, the executor, its pinned GPUs."""
    trial.hostname, trial.machine_fingerprint = this_machine()
    trial.executor = executor
    trial.physical_gpus = [str(g) for g in gpus]
    return trial


def parallel_note(executor: str, parallel_cpu_trials: bool) -> str:
    """The caveat a run with trials at the same time carries in its notes."""
    cpu = (
        "CPU trials were allowed to run at the same time too (--parallel-cpu-trials): "
        "their times are the least like a trial alone"
        if parallel_cpu_trials
        else "CPU-device trials ran one at a time per machine"
    )
    return (
        f"--executor {executor} ran trials at the same time: trials that share a machine "
        "share its CPU cores, memory bandwidth and host links, so each one's step times may "
        f"be slower and noisier than alone; {cpu}"
    )


@dataclass
class Finished:
    """A trial that ended, with its place in what was submitted."""

    index: int
    spec: TrialSpec
    trial: TrialResult


def _quiet_start(index: int, spec: TrialSpec) -> None:
    """Default ``on_start``."""


def _quiet_progress(index: int, kind: str, payload: dict[str, Any]) -> None:
    """Default ``on_progress``."""


class Executor:
    """Submit a round's trial specs, get each result back as it ends, cancel all.

    Callbacks run in the caller's thread, from inside :meth:`as_completed`.
    """

    name = "local"
    #: whether trials may run at the same time (the run's notes then say so)
    parallel = False

    def __init__(self) -> None:
        self.on_start: OnStart = _quiet_start
        self.on_progress: OnProgress = _quiet_progress

    def submit(self, specs: Sequence[TrialSpec]) -> None:
        """Queue ``specs``; their indexes in :class:`Finished` are their positions here."""
        raise NotImplementedError

    def as_completed(self) -> Iterator[Finished]:
        """Yield every submitted trial as it ends (runs them; blocks between)."""
        raise NotImplementedError

    def cancel(self) -> None:
        """Drop what has not started and stop what runs; leave no process behind."""

    def close(self) -> None:
        """Release what the executor holds (a Ray cluster it started)."""

    def notes(self) -> list[str]:
        """Caveats the run records about how its trials were run."""
        return []


class LocalExecutor(Executor):
    """One trial after another in this process's thread: the sweep as it always ran."""

    def __init__(self, work: Work) -> None:
        super().__init__()
        self.work = work
        self._queue: deque[tuple[int, TrialSpec]] = deque()

    def submit(self, specs: Sequence[TrialSpec]) -> None:
        self._queue = deque(enumerate(specs))

    def as_completed(self) -> Iterator[Finished]:
        while self._queue:
            index, spec = self._queue.popleft()
            self.on_start(index, spec)

            def forward(kind: str, payload: dict[str, Any], _i: int = index) -> None:
                self.on_progress(_i, kind, payload)

            trial = self.work(spec, forward)
            yield Finished(index, spec, stamp(trial, self.name))

    def cancel(self) -> None:
        self._queue.clear()


# -- one trial pinned to its GPUs (in a worker process: a gpus worker or a Ray task) --------


def pinned_spec(spec: TrialSpec, gpus: Sequence[str]) -> TrialSpec:
    """The spec a pinned child runs: a CUDA trial sees its first pinned GPU as cuda:0."""
    if gpus and is_cuda(spec.device):
        return dataclasses.replace(spec, device="cuda:0")
    return spec


def run_pinned(
    spec_dict: dict[str, Any],
    gpus: Sequence[str],
    *,
    executor: str,
    timeout_s: float | None,
    debug: bool,
    set_visible: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run one trial in a fresh child that sees only ``gpus``; return its result's dict.

    Called in a worker process, never in the driver: it sets this process's
    ``CUDA_VISIBLE_DEVICES`` (unless ``set_visible`` is False: Ray has set it), which
    the trial's child inherits. The result names the planned device again.
    """
    from batchscope.run.isolation import run_isolated

    spec = TrialSpec.from_dict(spec_dict)
    if set_visible and gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    if spec.threads and not is_cuda(spec.device):
        # Ray sets OMP_NUM_THREADS to the task's CPUs; the trial asked for its threads
        os.environ["OMP_NUM_THREADS"] = str(spec.threads)
    trial = run_isolated(
        pinned_spec(spec, gpus), timeout_s=timeout_s, progress=progress, debug=debug
    )
    trial.device = spec.device
    return stamp(trial, executor, gpus if is_cuda(spec.device) else ()).to_dict()


# -- --executor gpus: this node, one trial per GPU ------------------------------------------


@dataclass(frozen=True)
class Gpu:
    """A GPU this process can see: its ``cuda:N`` index, how CUDA_VISIBLE_DEVICES names it."""

    visible: int
    physical: str
    name: str = ""


def visible_gpus(
    environment: Mapping[str, Any], cuda_visible_devices: str | None = None
) -> list[Gpu]:
    """The GPUs of a probe's environment (``gpus``), with their physical names.

    With ``CUDA_VISIBLE_DEVICES`` set (``cuda_visible_devices``, default: this process's),
    cuda:N is its N-th entry; a pinned child must be given that entry.
    """
    if cuda_visible_devices is None:
        cuda_visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    entries = [e.strip() for e in (cuda_visible_devices or "").split(",") if e.strip()]
    out: list[Gpu] = []
    for g in environment.get("gpus") or []:
        i = int(g.get("index", len(out)))
        physical = entries[i] if cuda_visible_devices is not None and i < len(entries) else str(i)
        out.append(Gpu(visible=i, physical=physical, name=str(g.get("name", ""))))
    return out


class GpuSlots:
    """Which trial may start now on this node: a GPU trial on free GPUs, a CPU trial in a
    free CPU slot.

    GPUs of one model are interchangeable: a ``cuda:N`` trial takes whichever are free.
    On a node with different models, a ``cuda:N`` trial waits for GPU N (and the next
    ones, for a data-parallel trial), so its series stays on its GPU.
    """

    def __init__(self, gpus: Sequence[Gpu], *, cpu_slots: int = 1) -> None:
        self.gpus = list(gpus)
        self.free = {g.visible for g in self.gpus}
        self.cpu_slots = cpu_slots
        self.cpu_busy = 0
        self.interchangeable = len({g.name for g in self.gpus}) <= 1

    def check(self, spec: TrialSpec) -> None:
        """Refuse a trial that could never start here (one line)."""
        if not is_cuda(spec.device):
            return
        need = world_size(spec)
        first = int(spec.device.split(":")[1]) if ":" in spec.device else 0
        last = need if self.interchangeable else first + need
        if last > len(self.gpus):
            raise UsageError(
                f"--executor gpus: trial {spec.key} needs {need} GPU(s) from cuda:{first}, "
                f"but {len(self.gpus)} are visible here"
            )

    def take(self, spec: TrialSpec) -> list[Gpu] | None:
        """The GPUs ``spec`` gets now ([] for a CPU trial), or None: it must wait."""
        if not is_cuda(spec.device):
            if self.cpu_busy >= self.cpu_slots:
                return None
            self.cpu_busy += 1
            return []
        need = world_size(spec)
        if self.interchangeable:
            wanted = sorted(self.free)[:need]
        else:
            first = int(spec.device.split(":")[1]) if ":" in spec.device else 0
            wanted = list(range(first, first + need))
        if len(wanted) < need or not set(wanted) <= self.free:
            return None
        self.free -= set(wanted)
        return [g for g in self.gpus if g.visible in wanted]

    def give(self, spec: TrialSpec, gpus: Sequence[Gpu]) -> None:
        """Return what :meth:`take` handed out."""
        if not is_cuda(spec.device):
            self.cpu_busy -= 1
        self.free |= {g.visible for g in gpus}


#: what a worker sends the driver: ("progress", index, kind, payload), ("done", index,
#: trial dict) or ("failed", index, message) when the worker died without a result
Message = tuple[Any, ...]


class Launcher(Protocol):
    """Starts pinned trials and hands back what they send (the gpus executor's processes)."""

    def start(self, index: int, spec: TrialSpec, gpus: Sequence[str]) -> None: ...

    def next_message(self) -> Message: ...

    def kill_all(self) -> None: ...


class GpuPoolExecutor(Executor):
    """``--executor gpus``: one trial per visible GPU at a time on this node."""

    name = "gpus"
    parallel = True

    def __init__(
        self,
        gpus: Sequence[Gpu],
        *,
        timeout_s: float | None = None,
        debug: bool = False,
        parallel_cpu_trials: bool = False,
        cpu_slots: int = 1,
        launcher: Launcher | None = None,
    ) -> None:
        super().__init__()
        if not gpus:
            raise UsageError(
                "--executor gpus needs a GPU, and torch sees none here: "
                "use --executor local (one trial at a time) or --executor ray"
            )
        self.parallel_cpu_trials = parallel_cpu_trials
        self.slots = GpuSlots(gpus, cpu_slots=cpu_slots if parallel_cpu_trials else 1)
        self.launcher: Launcher = launcher or SpawnLauncher(timeout_s=timeout_s, debug=debug)
        self._pending: list[tuple[int, TrialSpec]] = []
        self._running: dict[int, tuple[TrialSpec, list[Gpu]]] = {}

    def submit(self, specs: Sequence[TrialSpec]) -> None:
        for spec in specs:
            self.slots.check(spec)
        self._pending = list(enumerate(specs))

    def _dispatch(self) -> None:
        """Start, in plan order, every pending trial that fits now."""
        waiting = []
        for index, spec in self._pending:
            gpus = self.slots.take(spec)
            if gpus is None:
                waiting.append((index, spec))
                continue
            self._running[index] = (spec, gpus)
            self.on_start(index, spec)
            self.launcher.start(index, spec, [g.physical for g in gpus])
        self._pending = waiting

    def as_completed(self) -> Iterator[Finished]:
        self._dispatch()
        while self._running:
            message = self.launcher.next_message()
            kind, index = message[0], message[1]
            if kind == "progress":
                self.on_progress(index, message[2], message[3])
                continue
            spec, gpus = self._running.pop(index)
            self.slots.give(spec, gpus)
            if kind == "done":
                trial = TrialResult.from_dict(message[2])
            else:
                trial = TrialResult.from_spec(
                    spec, status="crashed", error=str(message[2]), threads=spec.threads
                )
                stamp(trial, self.name, [g.physical for g in gpus])
            self._dispatch()
            yield Finished(index, spec, trial)

    def cancel(self) -> None:
        self._pending = []
        self.launcher.kill_all()
        for spec, gpus in self._running.values():
            self.slots.give(spec, gpus)
        self._running.clear()

    def close(self) -> None:
        self.cancel()

    def notes(self) -> list[str]:
        return [parallel_note(self.name, self.parallel_cpu_trials)]


def _die_with_parent() -> None:
    """In a worker, before exec: get SIGKILL when the driver dies (Linux), so a killed
    sweep leaves no worker; the worker's trial child dies with the worker the same way."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def worker_main() -> int:
    """``python -m batchscope.run.executors``: a gpus worker, one pinned trial.

    Reads {spec, gpus, timeout_s, debug} as JSON on stdin, writes JSON lines to stdout:
    ["progress", kind, payload] while the trial runs, then ["done", trial dict].
    Its environment already names its GPUs (CUDA_VISIBLE_DEVICES), which the trial's
    child inherits.
    """
    import json

    request = json.loads(sys.stdin.read())
    out = sys.stdout

    def send(*message: Any) -> None:
        out.write(json.dumps(list(message)) + "\n")
        out.flush()

    result = run_pinned(
        request["spec"],
        request["gpus"],
        executor="gpus",
        timeout_s=request["timeout_s"],
        debug=request["debug"],
        set_visible=False,
        progress=lambda kind, payload: send("progress", kind, payload),
    )
    send("done", result)
    return 0


class SpawnLauncher:
    """A fresh worker process per trial (``python -m batchscope.run.executors``), its
    environment pinned to the trial's GPUs; each sends its events as JSON lines."""

    def __init__(self, *, timeout_s: float | None, debug: bool) -> None:
        self.timeout_s = timeout_s
        self.debug = debug
        self.workers: dict[int, Any] = {}
        self.buffers: dict[int, bytes] = {}
        #: workers whose result has arrived (their end of output is then no failure)
        self.finished: set[int] = set()
        self.inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()

    def start(self, index: int, spec: TrialSpec, gpus: Sequence[str]) -> None:
        import json
        import subprocess

        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        # the worker must import the same batchscope as we are, installed or not
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchscope.run.executors"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the driver only; it kills the workers
            preexec_fn=_die_with_parent,
        )
        assert proc.stdin is not None
        request = {
            "spec": spec.to_dict(),
            "gpus": list(gpus),
            "timeout_s": self.timeout_s,
            "debug": self.debug,
        }
        proc.stdin.write(json.dumps(request).encode())
        proc.stdin.close()
        self.workers[index] = proc
        self.buffers[index] = b""

    def next_message(self) -> Message:
        import json
        import select

        while self.inbox.empty():
            by_fd = {p.stdout.fileno(): i for i, p in self.workers.items()}
            ready, _, _ = select.select(list(by_fd), [], [])
            for fd in ready:
                index = by_fd[fd]
                chunk = os.read(fd, 65536)
                if chunk:
                    self.buffers[index] += chunk
                    *lines, self.buffers[index] = self.buffers[index].split(b"\n")
                    for line in lines:
                        with contextlib.suppress(ValueError):  # not ours: a stray print
                            kind, *rest = json.loads(line)
                            self.inbox.put((kind, index, *rest))
                            if kind == "done":
                                self.finished.add(index)
                    continue
                proc = self.workers.pop(index)
                proc.stdout.close()
                code = proc.wait()
                self.buffers.pop(index, None)
                if index not in self.finished:
                    self.inbox.put(
                        ("failed", index, f"the trial's worker process ended (status {code})")
                    )
                self.finished.discard(index)
        return self.inbox.get()

    def kill_all(self) -> None:
        for proc in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            proc.stdout.close()
        self.workers.clear()
        self.buffers.clear()
        self.finished.clear()
        while not self.inbox.empty():
            self.inbox.get()


# -- --executor ray -------------------------------------------------------------------------


def import_ray() -> Any:
    """The ray module, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'batchscope[ray]'") from None
    return ray


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse a ``host:port`` nobody listens on, in one line and at once: Ray itself
    retries an unreachable address for minutes. Other forms (``auto``, ``ray://``) are
    left to Ray."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UsageError(
            f"--ray-address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
            "start one with 'ray start --head' or give its head's host:port"
        ) from None


def ray_trial(spec_dict: dict[str, Any], timeout_s: float | None, debug: bool) -> dict[str, Any]:
    """The body of a Ray task: one trial, pinned to the GPUs Ray gave this worker."""
    import ray

    spec = TrialSpec.from_dict(spec_dict)
    gpus = [str(g) for g in ray.get_gpu_ids()] if is_cuda(spec.device) else []
    return run_pinned(
        spec_dict, gpus, executor="ray", timeout_s=timeout_s, debug=debug, set_visible=False
    )


def ray_resources(
    spec: TrialSpec, *, parallel_cpu_trials: bool, node_slots: bool, max_node_cpus: float
) -> dict[str, Any]:
    """The ``.options()`` a trial's Ray task asks for.

    A GPU trial: ``world_size`` GPUs and one CPU. A CPU trial: its threads as CPUs (at
    most a node's), and one :data:`CPU_TRIAL_RESOURCE` unless CPU trials may share a
    node or the cluster has no such resource (the driver serialises them then).
    """
    if is_cuda(spec.device):
        return {"num_gpus": world_size(spec), "num_cpus": 1}
    cpus = max(1.0, min(float(spec.threads or 1), max_node_cpus or 1.0))
    options: dict[str, Any] = {"num_gpus": 0, "num_cpus": cpus}
    if not parallel_cpu_trials and node_slots:
        options["resources"] = {CPU_TRIAL_RESOURCE: 1}
    return options


class RayExecutor(Executor):
    """``--executor ray``: each trial a Ray task in a fresh worker; the driver stores."""

    name = "ray"
    parallel = True

    def __init__(
        self,
        *,
        address: str | None = None,
        timeout_s: float | None = None,
        debug: bool = False,
        parallel_cpu_trials: bool = False,
    ) -> None:
        super().__init__()
        ray = import_ray()
        self.ray = ray
        self.timeout_s = timeout_s
        self.debug = debug
        self.parallel_cpu_trials = parallel_cpu_trials
        self.started = False
        if not ray.is_initialized():
            import logging

            try:
                if address:
                    check_reachable(address)
                    ray.init(address=address, logging_level=logging.ERROR)
                else:
                    ray.init(
                        resources={CPU_TRIAL_RESOURCE: 1},
                        include_dashboard=False,
                        logging_level=logging.ERROR,
                    )
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = f"the Ray cluster at --ray-address {address}" if address else "Ray"
                raise UsageError(
                    f"could not start {where}: {' '.join(str(exc).split())[:300]}"
                ) from None
            self.started = True
        self.node_slots = bool(ray.cluster_resources().get(CPU_TRIAL_RESOURCE))
        self.max_node_cpus = max(
            (float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")),
            default=1.0,
        )
        self.task = ray.remote(max_calls=1)(ray_trial)
        self._pending: list[tuple[int, TrialSpec]] = []
        self._running: dict[Any, tuple[int, TrialSpec]] = {}

    @property
    def driver_serialises_cpu(self) -> bool:
        """No node offers CPU_TRIAL_RESOURCE: one CPU trial in flight in the whole cluster."""
        return not self.parallel_cpu_trials and not self.node_slots

    def submit(self, specs: Sequence[TrialSpec]) -> None:
        self._pending = list(enumerate(specs))

    def _dispatch(self) -> None:
        waiting = []
        cpu_in_flight = any(not is_cuda(s.device) for _, s in self._running.values())
        for index, spec in self._pending:
            cpu = not is_cuda(spec.device)
            if cpu and self.driver_serialises_cpu and cpu_in_flight:
                waiting.append((index, spec))
                continue
            options = ray_resources(
                spec,
                parallel_cpu_trials=self.parallel_cpu_trials,
                node_slots=self.node_slots,
                max_node_cpus=self.max_node_cpus,
            )
            ref = self.task.options(**options).remote(spec.to_dict(), self.timeout_s, self.debug)
            self._running[ref] = (index, spec)
            cpu_in_flight = cpu_in_flight or cpu
            self.on_start(index, spec)
        self._pending = waiting

    def as_completed(self) -> Iterator[Finished]:
        self._dispatch()
        while self._running:
            ready, _ = self.ray.wait(list(self._running), num_returns=1)
            ref = ready[0]
            index, spec = self._running.pop(ref)
            try:
                trial = TrialResult.from_dict(self.ray.get(ref))
            except self.ray.exceptions.RayError as exc:
                trial = TrialResult.from_spec(
                    spec,
                    status="crashed",
                    error=f"the Ray task failed: {' '.join(str(exc).split())[:300]}",
                    threads=spec.threads,
                )
                trial.executor = self.name  # where it ran, the lost worker took along
            self._dispatch()
            yield Finished(index, spec, trial)

    def cancel(self) -> None:
        self._pending = []
        for ref in list(self._running):
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self._running.clear()

    def close(self) -> None:
        self.cancel()
        if self.started:
            self.ray.shutdown()
            self.started = False

    def notes(self) -> list[str]:
        notes = [parallel_note(self.name, self.parallel_cpu_trials)]
        if self.driver_serialises_cpu:
            notes.append(
                f"the Ray cluster has no {CPU_TRIAL_RESOURCE!r} resource, so CPU trials ran "
                "one at a time in the whole cluster"
            )
        return notes


def make_executor(
    name: str,
    *,
    environment: Mapping[str, Any],
    timeout_s: float | None = None,
    debug: bool = False,
    ray_address: str | None = None,
    parallel_cpu_trials: bool = False,
    threads: int | None = None,
    work: Work | None = None,
) -> Executor:
    """The executor ``--executor NAME`` asks for (``work``: local's unit of work)."""
    check_executor(name)
    if ray_address is not None and name != "ray":
        raise UsageError("--ray-address is for --executor ray: add it, or drop --ray-address")
    if name == "local":
        if work is None:
            raise ValueError("the local executor needs its unit of work")
        return LocalExecutor(work)
    if name == "gpus":
        cores = os.cpu_count() or 1
        return GpuPoolExecutor(
            visible_gpus(environment),
            timeout_s=timeout_s,
            debug=debug,
            parallel_cpu_trials=parallel_cpu_trials,
            cpu_slots=max(2, cores // max(1, threads or 1)),
        )
    return RayExecutor(
        address=ray_address,
        timeout_s=timeout_s,
        debug=debug,
        parallel_cpu_trials=parallel_cpu_trials,
    )


if __name__ == "__main__":
    sys.exit(worker_main())
