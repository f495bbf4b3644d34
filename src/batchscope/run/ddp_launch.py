"""Start one data-parallel trial as ``world_size`` ranks with torch's elastic launcher.

This runs inside the trial's child process (:mod:`batchscope.run.isolation`), which
becomes the launcher's agent: ``torch.distributed.launcher.api.elastic_launch`` (what
``torchrun`` runs) starts ``world_size ÷ nnodes`` ranks on this node
(:func:`batchscope.engine.ddp.rank_main`), rendezvous over c10d (``localhost:0``, a free
port, unless ``--rdzv-endpoint`` names one for several nodes), no restarts.

Failure is a trial status, never a hung sweep: when one rank raises or dies, the
launcher stops every other rank (SIGTERM, then SIGKILL) and this module names the rank
that failed first: ``oom`` when its error reads as out of memory, ``error`` for a
batchscope user error, ``crashed`` otherwise (a signal included). The ranks share
the child's process group and get SIGKILL if the child dies, so a trial timeout (the
runner kills the child's whole group) leaves no rank running either.

CPU ranks split the cores: each rank gets ``--threads`` (default: cores ÷ world size,
at least 1 — :func:`rank_threads`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import uuid
from collections.abc import Callable
from typing import Any

from batchscope import errors as errors_module
from batchscope.core.plan import TrialSpec
from batchscope.core.results import TrialResult
from batchscope.engine.ddp import merge_ranks, rank_main
from batchscope.hardware.oom import is_oom_error, last_line

#: seconds between the launcher's checks of its ranks (a failure is seen this soon)
MONITOR_INTERVAL_S = 0.1


def rank_threads(world_size: int, cores: int | None = None) -> int:
    """A CPU rank's threads when ``--threads`` is not given: this node's cores split
    evenly over its ranks, at least one."""
    cores = cores if cores is not None else (os.cpu_count() or 1)
    return max(1, cores // max(1, world_size))


def sharing_notes(
    world_sizes: list[int] | None,
    devices: list[str],
    threads: int | None,
    nnodes: int = 1,
    cores: int | None = None,
) -> list[str]:
    """What the run's notes say about CPU ranks sharing one machine (timing truth)."""
    if not world_sizes or "cpu" not in devices:
        return []
    cores = cores if cores is not None else (os.cpu_count() or 1)
    notes = [
        "data-parallel CPU ranks share this machine's cores, caches and memory bandwidth: "
        "their step times include that contention, which separate machines would not have"
    ]
    if threads is not None:
        over = [w for w in world_sizes if (w // nnodes) * threads > cores]
        if over:
            notes.append(
                f"world size {', '.join(map(str, over))} × --threads {threads} is more than "
                f"the {cores} cores here: the ranks' threads compete for cores"
            )
    return notes


def rank_spec(spec: TrialSpec) -> TrialSpec:
    """The spec every rank runs: ``threads`` resolved per rank on a CPU."""
    assert spec.world_size is not None
    if spec.threads is None and spec.device == "cpu":
        return dataclasses.replace(spec, threads=rank_threads(spec.world_size // spec.nnodes))
    return spec


def _run_id(spec: TrialSpec) -> str:
    """One rendezvous per trial; the same on every node when several join it."""
    if spec.nnodes > 1:
        return "batchscope-" + hashlib.sha1(spec.key.encode()).hexdigest()[:16]
    return f"batchscope-{uuid.uuid4().hex[:16]}"


def launch_config(spec: TrialSpec) -> Any:
    """The ``LaunchConfig`` of one trial (what ``torchrun --nnodes --nproc-per-node`` sets)."""
    from torch.distributed.launcher.api import LaunchConfig

    assert spec.world_size is not None
    return LaunchConfig(
        min_nodes=spec.nnodes,
        max_nodes=spec.nnodes,
        nproc_per_node=spec.world_size // spec.nnodes,
        run_id=_run_id(spec),
        rdzv_backend="c10d",
        rdzv_endpoint=spec.rdzv_endpoint or "localhost:0",
        max_restarts=0,
        monitor_interval=MONITOR_INTERVAL_S,
        start_method="spawn",
    )


def _failure_text(failure: Any) -> str:
    """A rank's failure in one line: its exception (from the error file) or its signal."""
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", "")
    text = last_line(str(message or "")).strip()
    if failure.exitcode is not None and failure.exitcode < 0:
        return f"killed by {failure.signal_name()}"
    return text or f"exited with status {failure.exitcode}"


def failed_trial(
    spec: TrialSpec, failures: dict[int, Any], first: int | None = None
) -> TrialResult:
    """The trial a failed launch ends as, the first failing rank named."""
    rank = first if first is not None else min(failures)
    text = _failure_text(failures[rank])
    kind = text.split(":", 1)[0].strip()
    cls = getattr(errors_module, kind, None)
    if is_oom_error(RuntimeError(text)):
        status = "oom"
    elif isinstance(cls, type) and issubclass(cls, errors_module.BatchscopeError):
        status = "error"
    else:
        status = "crashed"
    error = f"rank {rank} of {spec.world_size}: {text}"
    return TrialResult.from_spec(spec, status=status, error=error, threads=spec.threads)


def run_data_parallel(
    spec: TrialSpec,
    *,
    entrypoint: Callable[[dict[str, Any]], dict[str, Any]] = rank_main,
) -> TrialResult:
    """Run ``spec`` (``spec.world_size`` ranks) and return its one result.

    ``entrypoint`` is the rank's function (tests pass a failing one). The ranks are
    started with ``spawn``, which imports the calling program's ``__main__`` in each rank:
    a sweep's child process (``batchscope.run.child``) guards it; a script that runs
    data-parallel trials in its own process (``isolation="none"``) must guard its code
    with ``if __name__ == "__main__":``, as for any spawned process.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    spec = rank_spec(spec)
    try:
        returned = elastic_launch(launch_config(spec), entrypoint)(spec.to_dict())
    except SignalException as exc:
        # the launcher turns Ctrl-C (and SIGTERM) into this after stopping the ranks: an
        # interruption, as anywhere else in a sweep, never a failed trial
        if exc.sigval == signal.SIGINT:
            raise KeyboardInterrupt from None
        raise
    except ChildFailedError as exc:
        first, _ = exc.get_first_failure()
        return failed_trial(spec, exc.failures, first)
    if not returned:
        return TrialResult.from_spec(
            spec, status="crashed", error="no rank returned a result", threads=spec.threads
        )
    return merge_ranks(spec, returned)
