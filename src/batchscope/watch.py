"""Run any command under the hardware sampler: ``batchscope watch -- python train.py``.

For users who keep their own training script (fastai, Keras, plain PyTorch): the
same timelines a sweep records, without changing a line of their code.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .errors import UsageError
from .monitor import (
    DEFAULT_INTERVAL_S,
    HardwareSummary,
    Sample,
    Sampler,
    default_sources,
    summarise,
)


@dataclass
class WatchResult:
    command: list[str]
    returncode: int
    duration_s: float
    samples: list[Sample]
    summary: HardwareSummary
    interrupted: bool = False
    unavailable: dict[str, str] = field(default_factory=dict)


def watch_command(
    argv: Sequence[str],
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    on_sample: Callable[[Sample], None] | None = None,
    gpus: bool = True,
) -> WatchResult:
    """Run ``argv`` (stdio inherited), sample its process tree and the GPUs until it exits.

    Ctrl-C reaches the command too (same terminal process group); we wait for it
    to stop — escalating to SIGTERM and SIGKILL if it ignores the interrupt — and
    still return everything recorded.
    """
    if not argv:
        raise UsageError("watch needs a command: batchscope watch -- python train.py")
    if not interval_s > 0:
        raise UsageError(f"--sample-interval {interval_s:g} must be more than 0 seconds")
    if shutil.which(argv[0]) is None:
        raise UsageError(f"command {argv[0]!r} not found (is it on PATH?)")
    start = time.monotonic()
    proc = subprocess.Popen(list(argv))
    sampler: Sampler | None = None
    interrupted = False
    try:  # from here on a Ctrl-C, however early, still ends in a full recording
        sampler = Sampler(default_sources(proc.pid, gpus=gpus), interval_s, on_sample=on_sample)
        sampler.start()
        returncode = proc.wait()
    except KeyboardInterrupt:
        interrupted = True
        returncode = _stop(proc)
    finally:
        samples = sampler.stop() if sampler is not None else []
    unavailable = sampler.unavailable if sampler is not None else {}
    return WatchResult(
        command=list(argv),
        returncode=returncode,
        duration_s=time.monotonic() - start,
        samples=samples,
        summary=summarise(samples, unavailable=unavailable),
        interrupted=interrupted,
        unavailable=unavailable,
    )


def _stop(proc: subprocess.Popen[bytes]) -> int:
    for sig, grace in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            if proc.poll() is None:
                proc.send_signal(sig)
        try:
            return proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting politely
            continue
    return proc.wait()
