"""What every framework integration measures the same way as the engine does.

A framework that runs its own training loop (fastai, Keras, a user's script)
calls us back around each training batch. :class:`CallbackClock` turns those
calls into the engine's step statistics (device-synchronised, warm-up steps
left out, only full-size batches counted) and :func:`measured_protocol` wraps
the protocol in the same hardware sampling and peak-memory accounting.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from batchscope.core.results import TrialResult
from batchscope.engine.step_summary import summarise_steps

if TYPE_CHECKING:
    import torch

    from batchscope.core.plan import TrialSpec

Progress = Callable[[str, dict[str, Any]], None]


class CallbackClock:
    """Times a framework's training steps from its batch callbacks.

    ``resume()`` when a training phase starts (an epoch's training half),
    ``batch_begin()`` when a batch has arrived, ``batch_end(n)`` when its
    optimizer step is done. A step runs from the previous step's end (or the
    resume) to its own end, the device synchronised before the clock is read;
    its data wait is the part before ``batch_begin``. The first ``warmup``
    full-size steps are trained but not counted (a framework's protocol cannot
    be restored after them the way the engine restores its own). When a frozen
    phase came first, only the unfrozen steps make the statistics, less their
    own first ``warmup`` steps (unfreezing allocates the body's gradients).
    """

    def __init__(self, batch_size: int, warmup: int, sync: Callable[[], None]) -> None:
        self.batch_size = batch_size
        self.warmup = warmup
        self.sync = sync
        self.step_times: list[float] = []
        self.waits: list[float] = []
        #: samples trained, partial batches and warm-up steps included
        self.samples = 0
        self.full_steps = 0
        self.partial_steps = 0
        #: set by the integration while a frozen-body phase trains (fastai's freeze()):
        #: those steps skip most of the backward pass, so they are not the batch
        #: size's step time when unfrozen steps exist too
        self.frozen = False
        self.step_frozen: list[bool] = []
        self._start: float | None = None
        self._begin: float | None = None

    def resume(self) -> None:
        self.sync()
        self._start = time.perf_counter()
        self._begin = None

    def batch_begin(self) -> None:
        if self._start is None:  # a framework that skipped the phase callback
            self.resume()
        self._begin = time.perf_counter()

    def batch_end(self, n: int) -> None:
        self.sync()
        end = time.perf_counter()
        start = self._start if self._start is not None else end
        begin = self._begin if self._begin is not None else start
        self.samples += n
        if n == self.batch_size:
            self.full_steps += 1
            if self.full_steps > self.warmup:
                self.step_times.append(end - start)
                self.waits.append(begin - start)
                self.step_frozen.append(self.frozen)
        else:
            self.partial_steps += 1
        self._start = end
        self._begin = None

    def summarise(self, result: TrialResult) -> None:
        """Step statistics into ``result`` (nothing when no full step was counted)."""
        result.samples_trained = self.samples
        if not self.step_times:
            result.notes.append(
                f"no full step of {self.batch_size} samples was timed after "
                f"{self.warmup} warm-up step(s): no step-time statistics at this batch size"
            )
            return
        summarise_steps(
            result,
            batch_size=self.batch_size,
            step_times=self.step_times,
            waits=self.waits,
            step_frozen=self.step_frozen,
            warmup=self.warmup,
            cures="more DataLoader workers, pinned memory, or lighter transforms",
        )


def new_result(spec: TrialSpec) -> TrialResult:
    """A trial result stamped with the spec's identity, threads and seed (set here)."""
    import torch

    from batchscope.engine.trial import seed_everything

    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    seed_everything(spec.seed)
    return TrialResult.from_spec(spec, threads=torch.get_num_threads())


@contextlib.contextmanager
def measured_protocol(
    spec: TrialSpec, result: TrialResult, device: torch.device, notify: Progress
) -> Iterator[None]:
    """Around the framework's protocol: peak-memory reset, hardware sampler, wall clock.

    Set-up (building the learner or model, loading data) happens before; what
    runs inside is what the trial's ``total_time_s``, energy and peak memory cover.
    """
    import torch

    from batchscope.engine.instrument import (
        record_hardware,
        record_memory,
        reset_and_read_rss,
        start_sampler,
        synchronizer,
    )

    sync = synchronizer(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_baseline = reset_and_read_rss()
    notify("baseline", {"rss_bytes": rss_baseline})
    sampler = start_sampler(spec, device, notify)
    samples = []
    sync()
    start = time.perf_counter()
    try:
        yield
        sync()
        result.total_time_s = time.perf_counter() - start
    finally:
        if sampler is not None:
            samples = sampler.stop()
    if sampler is not None:
        record_hardware(result, sampler, samples)
    record_memory(result, device, rss_baseline)
