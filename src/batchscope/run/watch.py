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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from batchscope.errors import UsageError
from batchscope.hardware.monitor import (
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
    presses = _CtrlC()
    with presses.caught():
        proc = subprocess.Popen(list(argv))
        sampler: Sampler | None = None
        try:  # from here on a Ctrl-C, however early, still ends in a full recording
            sampler = Sampler(default_sources(proc.pid, gpus=gpus), interval_s, on_sample=on_sample)
            sampler.start()
            returncode = _wait(proc, presses)
        finally:
            samples = sampler.stop() if sampler is not None else []
    interrupted = presses.count > 0
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


class _CtrlC:
    """Counts Ctrl-C presses instead of raising KeyboardInterrupt.

    A KeyboardInterrupt raised inside ``Popen.wait`` can land after the kernel
    has reaped the child but before Python stored its status; the status is then
    lost and reads as 0. Counting the presses lets every wait finish normally.
    """

    def __init__(self) -> None:
        self.count = 0

    def _handler(self, signum: int, frame: object) -> None:
        self.count += 1

    @contextlib.contextmanager
    def caught(self) -> Iterator[None]:
        try:
            previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: Ctrl-C stays Python's default
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


#: after a Ctrl-C: let the command stop on its own (it got the same Ctrl-C from the
#: terminal), then SIGINT, SIGTERM and SIGKILL it, each after its grace in seconds
_ESCALATION: tuple[tuple[signal.Signals | None, float | None], ...] = (
    (None, 2.0),
    (signal.SIGINT, 10.0),
    (signal.SIGTERM, 5.0),
    (signal.SIGKILL, None),
)


def _wait(proc: subprocess.Popen[bytes], presses: _CtrlC) -> int:
    """The command's exit status; after a Ctrl-C, stop it step by step (another
    press skips to the next step)."""
    while presses.count == 0:
        try:
            return proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            continue
    for sig, grace in _ESCALATION:
        if sig is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        pressed = presses.count
        deadline = None if grace is None else time.monotonic() + grace
        while deadline is None or time.monotonic() < deadline:
            try:
                return proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                if presses.count != pressed:  # pressed again: no more patience
                    break
    return proc.wait()
