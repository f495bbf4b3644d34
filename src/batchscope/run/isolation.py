"""Running trials: in a child process each (default), or in this process for debugging.

A child per trial means every batch size starts with a clean allocator (no
fragmentation left by the previous size, no cached blocks) and that nothing a
trial does — running out of memory, segfaulting, hanging — can take the sweep
down with it. The parent classifies the outcome and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import IO, Any

from batchscope import errors as errors_module
from batchscope.core.plan import TrialSpec
from batchscope.core.results import TrialResult
from batchscope.errors import BatchscopeError, UsageError
from batchscope.hardware import envinfo
from batchscope.hardware.oom import cap_address_space, is_oom_error, last_line
from batchscope.run.forkserver import ZygoteProcess, spawn
from batchscope.units import format_bytes
from batchscope.workloads import Workload, WorkloadOptions, load_workload

ISOLATIONS = ("process", "none")

#: glibc keeps large freed blocks mapped after a training run, which inflates a
#: CPU trial's resident memory; a low mmap threshold returns them to the system.
#: It makes the peak exact and repeatable but costs step time (measured 1.6–2× on
#: ResNet-18 at 64×64, batch 32–64: benchmarks/malloc_threshold.py), so a CPU child
#: gets it only when its peak memory decides the outcome (a memory limit).
CPU_CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def cpu_child_env(memory_limit_bytes: int | None) -> dict[str, str]:
    """The environment a CPU trial's child gets on top of ours."""
    return dict(CPU_CHILD_ENV) if memory_limit_bytes else {}


#: ``progress(event, payload)``, as in :mod:`batchscope.engine.trial`.
Progress = Callable[[str, dict[str, Any]], None]


def _noop(event: str, payload: dict[str, Any]) -> None:
    """Default progress sink."""


def probe_in_process(
    workload: str, options: dict[str, Any], framework: str = "torch"
) -> dict[str, Any]:
    """Load the workload once and describe it and the machine (run before any trial).

    Loading it here first turns a bad spec, a missing data folder or a corrupt
    image into one clear error before any time is spent training.
    """
    if framework != "torch":
        from batchscope.engine.frameworks import framework_module

        described = framework_module(framework).probe(workload, options)
    else:
        described = describe_workload(
            workload, load_workload(workload, WorkloadOptions.from_dict(options))
        )
    return {
        "workload": described,
        "environment": envinfo.collect(),
    }


def describe_workload(spec: str, workload: Workload) -> dict[str, Any]:
    """What the run records about the workload."""
    from torch import nn

    model = workload.model()
    n_params = sum(p.numel() for p in model.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return {
        "name": workload.name,
        "spec": spec,
        "description": workload.description,
        "notes": list(workload.notes),
        "info": dict(workload.info),
        "n_train": len(workload.train_dataset),  # type: ignore[arg-type]
        "n_val": len(workload.val_dataset) if workload.val_dataset is not None else 0,  # type: ignore[arg-type]
        "parameters": n_params,
        "parameter_bytes": param_bytes,
        "has_batchnorm": has_bn,
        "seq_len": workload.seq_len,
    }


def _failed(spec: TrialSpec, status: str, error: str) -> TrialResult:
    # from_spec keeps the variant: a failed bf16 trial stays in the bf16 series
    return TrialResult.from_spec(spec, status=status, error=error, threads=spec.threads)


def run_in_process(
    spec: TrialSpec,
    workload: Workload | None = None,
    *,
    progress: Progress | None = None,
    in_child: bool = False,
) -> TrialResult:
    """Run one trial here and turn every failure into a trial status.

    ``in_child`` applies the memory cap, which must never be set on a process
    that outlives the trial.
    """
    from batchscope.engine.trial import run_trial

    # the cap is for host memory: a GPU driver maps far more address space than it uses
    if in_child and spec.memory_limit_bytes and spec.device == "cpu":
        import torch  # noqa: F401  (mapped before the cap is measured)

        cap_address_space(spec.memory_limit_bytes)
    try:
        if spec.world_size is not None:  # data parallel: ranks of torch's elastic launcher
            from batchscope.run.ddp_launch import run_data_parallel

            result = run_data_parallel(spec)
        elif spec.framework != "torch":
            from batchscope.engine.frameworks import framework_module

            result = framework_module(spec.framework).run_trial(spec, progress=progress)
        else:
            result = run_trial(spec, workload, progress=progress)
    except BatchscopeError as exc:
        return _failed(spec, "error", str(exc))
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        if is_oom_error(exc):
            _release_device_memory(spec.device)
            return _failed(spec, "oom", last_line(f"{type(exc).__name__}: {exc}"))
        return _failed(spec, "error", last_line(f"{type(exc).__name__}: {exc}"))
    limit = spec.memory_limit_bytes
    if limit and result.peak_memory_bytes is not None and result.peak_memory_bytes > limit:
        result.status = "oom"
        over = result.peak_memory_bytes - limit
        result.error = (
            f"peak memory {format_bytes(result.peak_memory_bytes)} exceeded --memory-limit "
            f"{format_bytes(limit)} by {format_bytes(over)}"
        )
    return result


def _release_device_memory(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def _child_env(spec: TrialSpec | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if spec is not None and spec.device == "cpu":
        env.update(cpu_child_env(spec.memory_limit_bytes))
    # the child must import the same batchscope as we are, installed or not
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL if the parent dies (Linux), so a killed
    sweep leaves no orphan holding the GPU."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class _Child:
    """A running child process and its event channel.

    ``proc`` is a ``subprocess.Popen`` or, on Linux unless ``BATCHSCOPE_FORKSERVER=0``
    or ``debug``, a :class:`~batchscope.run.forkserver.ZygoteProcess` that answers the
    same way (pid, stdin, wait, returncode, kill).
    """

    def __init__(self, request: dict[str, Any], spec: TrialSpec | None, debug: bool) -> None:
        read_fd, write_fd = os.pipe()
        self.log: IO[bytes] | None = None if debug else tempfile.TemporaryFile()  # noqa: SIM115
        out = None if debug else self.log
        env = _child_env(spec)
        try:
            # a fork of the zygote that imported torch once; Popen when it cannot serve
            zygote_child = None if self.log is None else spawn(env, write_fd, self.log.fileno())
            self.proc: subprocess.Popen[bytes] | ZygoteProcess = zygote_child or subprocess.Popen(
                [sys.executable, "-m", "batchscope.run.child", str(write_fd)],
                stdin=subprocess.PIPE,
                stdout=sys.stderr if debug else out,
                stderr=None if debug else subprocess.STDOUT,
                pass_fds=(write_fd,),
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            os.close(write_fd)
        self.reader = os.fdopen(read_fd, "rb", buffering=0)
        self.buffer = b""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request).encode())
        self.proc.stdin.close()
        self.max_rss = 0
        #: resident memory the child may reach before it is stopped (set from its baseline)
        self.rss_ceiling: int | None = None

    def events(self, timeout_s: float | None) -> Any:
        """Yield decoded events until the channel closes; raise TimeoutError past the limit."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            wait = 0.2
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                wait = min(wait, left)
            ready, _, _ = select.select([self.reader], [], [], wait)
            rss = self._sample_rss()
            if self.rss_ceiling is not None and rss > self.rss_ceiling:
                raise _OverLimit(rss)
            if not ready:
                continue
            chunk = self.reader.read(65536)
            if not chunk:
                return
            self.buffer += chunk
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)

    def _sample_rss(self) -> int:
        import psutil

        rss = 0
        with contextlib.suppress(psutil.Error):
            rss = int(psutil.Process(self.proc.pid).memory_info().rss)
        self.max_rss = max(self.max_rss, rss)
        return rss

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def log_tail(self) -> str:
        if self.log is None:
            return ""
        self.log.seek(0, os.SEEK_END)
        size = self.log.tell()
        self.log.seek(max(0, size - 8192))
        return last_line(self.log.read().decode(errors="replace"))

    def close(self) -> None:
        self.reader.close()
        if self.log is not None:
            self.log.close()


class _OverLimit(Exception):
    """The child's resident memory is past its baseline + --memory-limit."""

    def __init__(self, rss: int) -> None:
        super().__init__(rss)
        self.rss = rss


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def run_isolated(
    spec: TrialSpec,
    *,
    timeout_s: float | None = None,
    progress: Progress | None = None,
    debug: bool = False,
) -> TrialResult:
    """Run one trial in a fresh child process and classify how it ended."""
    notify = progress or _noop
    child = _Child({"kind": "trial", "spec": spec.to_dict()}, spec, debug)
    result: TrialResult | None = None
    error_event: dict[str, Any] | None = None
    try:
        try:
            for event in child.events(timeout_s):
                kind = event.pop("event")
                if kind == "result":
                    result = TrialResult.from_dict(event["trial"])
                elif kind == "error":
                    error_event = event
                elif kind == "baseline":
                    baseline = int(event["rss_bytes"])
                    if spec.memory_limit_bytes and spec.device == "cpu":
                        # past this the trial has failed whatever its true peak: stop it
                        # now instead of after every step (its peak would only be higher)
                        child.rss_ceiling = baseline + spec.memory_limit_bytes
                else:
                    notify(kind, event)
        except TimeoutError:
            child.kill()  # its whole process group: every rank of a data-parallel trial too
            ranks = f" (all {spec.world_size} ranks stopped)" if spec.world_size else ""
            return _failed(
                spec, "timeout", f"trial ran past --trial-timeout {timeout_s:g} s{ranks}"
            )
        except _OverLimit as over:
            child.kill()
            assert spec.memory_limit_bytes is not None and child.rss_ceiling is not None
            growth = over.rss - (child.rss_ceiling - spec.memory_limit_bytes)
            return _failed(
                spec,
                "oom",
                f"memory grew past --memory-limit {format_bytes(spec.memory_limit_bytes)} "
                f"(resident {format_bytes(growth)} over the set-up when stopped early; "
                "the full peak was not measured)",
            )
        except BaseException:
            child.kill()
            raise
        returncode = child.proc.wait()
        if result is not None:
            return result
        if error_event is not None:
            status = "oom" if is_oom_error(RuntimeError(error_event["message"])) else "error"
            return _failed(
                spec, status, last_line(f"{error_event['type']}: {error_event['message']}")
            )
        return _classify_death(spec, returncode, child)
    finally:
        child.close()


def _classify_death(spec: TrialSpec, returncode: int, child: _Child) -> TrialResult:
    tail = child.log_tail()
    if returncode < 0 and -returncode == signal.SIGKILL:
        near_limit = bool(
            spec.memory_limit_bytes and child.max_rss >= 0.8 * spec.memory_limit_bytes
        )
        if near_limit or _system_memory_low():
            return _failed(
                spec,
                "oom",
                f"killed (SIGKILL) at {format_bytes(child.max_rss)} resident: out of memory",
            )
    if is_oom_error(RuntimeError(tail)):
        return _failed(spec, "oom", tail)
    if returncode < 0:
        detail = f"child killed by {_signal_name(returncode)}"
    else:
        detail = f"child exited with status {returncode}"
    return _failed(spec, "crashed", f"{detail}: {tail}" if tail else detail)


def _system_memory_low() -> bool:
    import psutil

    return psutil.virtual_memory().percent > 95


def probe_isolated(
    workload: str, options: dict[str, Any], *, framework: str = "torch", debug: bool = False
) -> dict[str, Any]:
    """:func:`probe_in_process` in a child, so the parent never imports torch or touches a GPU."""
    request = {"kind": "probe", "workload": workload, "options": options, "framework": framework}
    child = _Child(request, None, debug)
    try:
        for event in child.events(None):
            kind = event.pop("event")
            if kind == "probe":
                child.proc.wait()
                return event
            if kind == "error":
                if event["kind"] == "user":
                    cls = getattr(errors_module, event["type"], BatchscopeError)
                    if not (isinstance(cls, type) and issubclass(cls, BatchscopeError)):
                        cls = BatchscopeError
                    raise cls(event["message"])
                raise BatchscopeError(
                    f"loading workload {workload!r} failed: {event['type']}: {event['message']}"
                )
        returncode = child.proc.wait()
        raise BatchscopeError(
            f"loading workload {workload!r} crashed the child process "
            f"(status {returncode}): {child.log_tail()}"
        )
    except BaseException:
        child.kill()
        raise
    finally:
        child.close()


def check_isolation(isolation: str) -> str:
    if isolation not in ISOLATIONS:
        raise UsageError(f"--isolation {isolation!r} is not one of: {', '.join(ISOLATIONS)}")
    return isolation
