"""Run any command under the hardware sampler: ``batchscope watch -- python train.py``.

For users who keep their own training script (fastai, Keras, plain PyTorch): the
same timelines a sweep records, without changing a line of their code.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from batchscope.core.samples import Sample
from batchscope.errors import UsageError
from batchscope.hardware.monitor import (
    DEFAULT_INTERVAL_S,
    HardwareSummary,
    Sampler,
    default_sources,
    summarise,
)


class CommandNotFoundError(UsageError):
    """The command to watch does not exist: exit 127, as a shell does."""

    exit_code = 127


class CommandNotRunnableError(UsageError):
    """The command exists but cannot be run (not executable, a folder): exit 126, as a
    shell does."""

    exit_code = 126


def check_command(argv: Sequence[str]) -> None:
    """Refuse a command that cannot start, before anything is created for it."""
    if not argv:
        raise UsageError("watch needs a command: batchscope watch -- python train.py")
    name = argv[0]
    if shutil.which(name) is not None:
        return
    if os.sep in name or (os.altsep is not None and os.altsep in name):
        if os.path.isdir(name):
            raise CommandNotRunnableError(f"command {name!r} is a folder, not a program")
        if os.path.exists(name):
            raise CommandNotRunnableError(
                f"command {name!r} is not executable (chmod +x it, or run it with its "
                "interpreter, e.g. python)"
            )
        raise CommandNotFoundError(f"command {name!r} not found: no such file")
    raise CommandNotFoundError(f"command {name!r} not found (is it on PATH?)")


def _start(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """Popen, with a failure to start said as a shell would (127 / 126)."""
    try:
        return subprocess.Popen(list(argv))
    except FileNotFoundError as exc:
        raise CommandNotFoundError(f"command {argv[0]!r} not found (is it on PATH?)") from exc
    except OSError as exc:  # permission denied, exec format error ...
        raise CommandNotRunnableError(
            f"command {argv[0]!r} cannot be run: {exc.strerror or exc}"
        ) from exc


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
    on_started: Callable[[], None] | None = None,
) -> WatchResult:
    """Run ``argv`` (stdio inherited), sample its process tree and the GPUs until it exits.

    Ctrl-C reaches the command too (same terminal process group); we wait for it
    to stop — escalating to SIGTERM and SIGKILL if it ignores the interrupt — and
    still return everything recorded.

    A command that cannot start raises :class:`CommandNotFoundError` (exit status
    127) or :class:`CommandNotRunnableError` (126). ``on_started`` runs once the
    command is running, so a caller creates its output folder only for a command
    that started; if it raises, the command is stopped and the error passes on.
    """
    if not argv:
        raise UsageError("watch needs a command: batchscope watch -- python train.py")
    if not interval_s > 0:
        raise UsageError(f"--sample-interval {interval_s:g} must be more than 0 seconds")
    check_command(argv)
    start = time.monotonic()
    presses = _CtrlC()
    with presses.caught():
        proc = _start(argv)
        sampler: Sampler | None = None
        try:  # from here on a Ctrl-C, however early, still ends in a full recording
            if on_started is not None:
                try:
                    on_started()
                except BaseException:
                    _stop(proc)
                    raise
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


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End a command we cannot record: SIGTERM, then SIGKILL after a grace."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


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
