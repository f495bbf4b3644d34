"""The measured training loop of ONE trial (workload × device × batch size).

How a step is measured (the rules of the whole tool):

* warm-up steps run first and are never counted; the model and optimizer are
  then restored to their initial state, so the measured protocol trains exactly
  what it would have trained without warm-up;
* each step's clock starts before the DataLoader is asked for the batch and
  stops after the device has finished the optimizer step (``synchronize``), so
  ``step time = data wait + compute``; the data wait is recorded on its own;
* a last partial batch is trained (it is part of the epoch) but left out of the
  step-time statistics, which describe steps of exactly ``batch_size`` samples.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from batchscope.core.plan import TrialSpec
from batchscope.core.results import EpochRecord, TrialResult
from batchscope.core.tokens import perplexity, stamp_tokens
from batchscope.engine import variants
from batchscope.engine.instrument import (
    MemoryProbe,
    record_hardware,
    start_sampler,
)
from batchscope.engine.step_summary import summarise_steps
from batchscope.engine.trainer import Trainer, default_head, set_frozen
from batchscope.errors import UsageError
from batchscope.workloads import Workload, WorkloadOptions, load_workload

if TYPE_CHECKING:
    import torch


#: ``progress(event, payload)`` — events: "setup", "warmup", "step", "epoch", "done".
Progress = Callable[[str, dict[str, Any]], None]


def check_device(name: str) -> torch.device:
    """The torch device for ``name``, or a :class:`DeviceError` if it is not usable here.

    One rule for trials and ``batchscope peak``: ``hardware.envinfo.check_device``.
    """
    from batchscope.hardware.envinfo import check_device as check

    return check(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so trials are repeatable."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class TrialHooks:
    """What a data-parallel rank (:mod:`batchscope.engine.ddp`) adds to the one measured
    loop, so that every trial is timed by the same code; the default adds nothing."""

    def prepare(self, trainer: Trainer) -> None:
        """Called once the trainer is built, before warm-up (wrap the model, shard data)."""

    def after_steps(self, trainer: Trainer, result: TrialResult) -> None:
        """Called after the measured steps, outside every statistic of the protocol."""


def run_trial(
    spec: TrialSpec,
    workload: Workload | None = None,
    *,
    progress: Progress | None = None,
    hooks: TrialHooks | None = None,
) -> TrialResult:
    """Run and measure one trial in this process.

    ``workload`` may be passed when the caller already built it (in-process runs);
    otherwise it is loaded from ``spec.workload``. ``hooks`` extend the loop (a
    data-parallel rank's). User errors raise
    :class:`~batchscope.errors.BatchscopeError`; the runner turns other failures
    (out of memory, crashes) into a trial status.
    """
    import torch

    notify: Progress = progress or (lambda event, payload: None)
    setup_start = time.perf_counter()
    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    seed_everything(spec.seed)
    device = check_device(spec.device)
    reason = variants.unsupported_reason(device, spec.precision)
    if reason is not None:  # recorded, never measured in another precision
        return TrialResult.from_spec(spec, status="unsupported", error=reason)
    notify("setup", {"device": spec.device, "batch_size": spec.batch_size})
    if workload is None:
        workload = load_workload(spec.workload, WorkloadOptions.from_dict(spec.workload_options))
    seed_everything(spec.seed)  # the model's initial weights do not depend on data building
    trainer = Trainer(spec, workload, device)
    if hooks is not None:
        hooks.prepare(trainer)
    if trainer.steps_per_epoch == 0:
        raise UsageError(
            f"batch size {spec.batch_size} is larger than the {trainer.n_train} training "
            "samples and drop_last is on, so an epoch has no step: use a smaller batch size"
        )
    if spec.epochs is None and trainer.n_train < spec.batch_size:
        # only full batches count as steps: without one, a --steps run would never end
        raise UsageError(
            f"batch size {spec.batch_size} is larger than the {trainer.n_train} training "
            "samples, so no step of that size can be measured: use a smaller batch size "
            "(or --epochs, which trains the partial batch)"
        )
    if spec.epochs is None and trainer.n_train < spec.batch_size * spec.accumulate:
        raise UsageError(
            f"batch size {spec.batch_size} × --accumulate {spec.accumulate} is more than the "
            f"{trainer.n_train} training samples, so no full accumulated step can be measured"
        )
    result = TrialResult.from_spec(
        spec,
        threads=torch.get_num_threads(),
        samples_per_epoch=trainer.samples_per_epoch,
        steps_per_epoch=trainer.steps_per_epoch,
        notes=list(workload.notes),
    )
    if spec.seq_len is not None and workload.seq_len != spec.seq_len:
        raise UsageError(
            f"--seq-lens {spec.seq_len}: workload {workload.name!r} "
            + (
                f"built sequences of {workload.seq_len}"
                if workload.seq_len
                else "has no sequence (Workload.seq_len is None)"
            )
        )
    stamp_tokens(result, workload.seq_len)
    variants.stamp(result, spec, trainer.model, trainer.lr_targets, trainer.scaler)
    memory = MemoryProbe(device)
    rss_baseline = memory.start()
    # the runner stops a CPU trial early once its memory is past --memory-limit
    notify("baseline", {"rss_bytes": rss_baseline})
    setup_time = time.perf_counter() - setup_start

    try:
        _warm_up(trainer, spec.warmup, notify, result)
    except Diverged as stop:
        return _diverged(result, stop, memory)
    # the FLOP count, the warm-up's snapshot and its restore never count in the peak
    memory.restart()
    trainer.memory = memory
    result.warmup_steps = spec.warmup
    if spec.compile:
        result.compile_time_s = trainer.warmup_clock.compile_time_s()

    sampler = start_sampler(spec, device, notify)
    diverged: Diverged | None = None
    try:
        if spec.epochs is not None:
            _run_epochs(trainer, spec, result, notify)
        else:
            _run_steps(trainer, spec, result, notify)
            if spec.validation_steps > 0:
                _run_validation_steps(trainer, spec.validation_steps, result)
    except Diverged as stop:
        diverged = stop
    finally:
        if sampler is not None:
            samples = sampler.stop()
    if sampler is not None:
        record_hardware(result, sampler, samples)

    result.setup_time_s = setup_time
    if diverged is not None:
        return _diverged(result, diverged, memory)
    memory.record(result)
    _record_validation(trainer, spec, result)
    if hooks is not None:  # after the peak and the sampler: nothing measured counts it
        hooks.after_steps(trainer, result)
    notify("done", {"status": result.status})
    return result


#: a sequence workload's step run validates on the first this many validation sequences
#: (the same ones in every trial), so small batches do not pay for a long pass
STEP_RUN_VALIDATION_SAMPLES = 256


def _record_validation(trainer: Trainer, spec: TrialSpec, result: TrialResult) -> None:
    """The validation loss after the protocol (and its perplexity for a sequence workload).

    An ``--epochs`` run has it from its last epoch (the whole validation set); a sequence
    workload's step run validates once here, on the first
    :data:`STEP_RUN_VALIDATION_SAMPLES` sequences, after the peak is recorded and
    outside every timed figure.
    """
    if spec.epochs is None and spec.validation_steps == 0 and trainer.workload.seq_len:
        result.val_loss, _ = trainer.validate(max_samples=STEP_RUN_VALIDATION_SAMPLES)
        trainer.sync()
    elif result.epochs:
        result.val_loss = result.epochs[-1].val_loss
    if result.seq_len:
        result.val_perplexity = perplexity(result.val_loss)


def _diverged(result: TrialResult, stop: Diverged, memory: MemoryProbe) -> TrialResult:
    """A trial whose loss became non-finite: a result (status ``diverged``), not a crash."""
    result.status = "diverged"
    result.error = str(stop)
    result.diverged_at_step = None if stop.warmup else stop.step
    result.final_train_loss = stop.value
    memory.record(result)
    return result


def _warm_up(trainer: Trainer, steps: int, notify: Progress, result: TrialResult) -> None:
    """Count the step's FLOPs, run ``steps`` untimed steps, then restore model and
    optimizer to their initial state.

    Each warm-up step is clocked on its own (``trainer.warmup_clock``): with
    ``--compile`` the first one holds the compilation, reported as ``compile_time_s``.

    The FLOP count (:func:`batchscope.engine.flops.record_step_flops`) runs on the first
    batch, after the snapshot is saved, so the restore undoes anything it touched. With
    ``--warmup 0`` there is no snapshot, and it runs anyway: the count restores what it
    touches itself (gradients, buffers such as batch-norm statistics, the random state)
    and never steps the optimizer, so the measured protocol trains what it would have
    trained without it — and a ``--warmup 0`` trial still gets its FLOPs and MFU. Either
    way the memory probe restarts after this (the count's activations never count in the
    peak) and the shuffles start again from the seed.
    """
    from batchscope.engine.flops import record_step_flops

    trainer.warmup_clock = variants.WarmupClock()
    count = trainer.spec.count_flops
    if steps <= 0:
        if not count:
            return
        batches = trainer.batches()
        record_step_flops(trainer, trainer.next_batch(batches), result)
        del batches
        trainer.generator.manual_seed(trainer.spec.seed)  # the protocol sees the same shuffles
        return
    import tempfile

    import torch

    # The snapshot of the initial state goes to a file, not to memory: no device and no
    # allocator ever holds a copy, so the measured peak is the one without warm-up.
    handle, snapshot = tempfile.mkstemp(prefix="batchscope-warmup-", suffix=".pt")
    os.close(handle)
    torch.save(
        {"model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict()},
        snapshot,
    )
    scaler_state = trainer.scaler.state_dict() if trainer.scaler is not None else None
    batches = trainer.batches()
    first = trainer.next_batch(batches)
    if count:
        record_step_flops(trainer, first, result)
    for i in range(steps):
        with trainer.warmup_clock.step():
            batch = first if i == 0 else trainer.next_batch(batches)
            loss, _ = trainer.step(batch)
            trainer.sync()
        # data parallel: the mean over ranks, so a rank's NaN stops every rank alike
        check_finite(trainer.loss_value(loss), i + 1, warmup=True)
        notify("warmup", {"done": i + 1, "total": steps})
    del first
    trainer.sync()
    del batches
    try:  # memory-mapped: the restore reads the file's pages, it allocates no copy
        state = torch.load(snapshot, map_location="cpu", weights_only=False, mmap=True)
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        del state
    finally:
        os.unlink(snapshot)
    if trainer.scaler is not None and scaler_state is not None:
        trainer.scaler.load_state_dict(scaler_state)
    trainer.optimizer_steps = 0  # the learning-rate warm-up ramp starts again
    trainer.generator.manual_seed(trainer.spec.seed)  # the protocol sees the same shuffles


class Diverged(Exception):
    """The loss became NaN or infinite: the trial ends as ``diverged``, not as a crash."""

    def __init__(self, step: int, value: float, warmup: bool = False) -> None:
        where = f"warm-up step {step}" if warmup else f"step {step} of the measured protocol"
        super().__init__(
            f"the loss became {value} at {where}: training diverged (lower the learning "
            "rate, or use --lr-scaling sqrt for large batches)"
        )
        self.step = step
        self.value = value
        self.warmup = warmup


def check_finite(loss: Any, step: int, *, warmup: bool = False) -> None:
    """Raise :class:`Diverged` when ``loss`` is NaN or infinite (one scalar read)."""
    value = float(loss)
    if not math.isfinite(value):
        raise Diverged(step, value, warmup)


class _StepRecorder:
    """Times steps: clock before the batch is asked for, clock after the device is done.

    Only steps of exactly ``batch_size`` samples enter the statistics; a last
    partial batch is trained and counted in ``samples`` but is not a step of
    this size.
    """

    def __init__(self, trainer: Trainer, breakdown: bool) -> None:
        self.trainer = trainer
        self.breakdown = breakdown
        #: samples of a full (optimizer) step: micro-batch × accumulation
        self.batch_size = trainer.spec.batch_size * trainer.spec.accumulate
        self.step_times: list[float] = []
        self.waits: list[float] = []
        self.phases: list[tuple[float, ...]] = []
        self.samples = 0
        #: set while a --freeze-epochs epoch trains; see timing.unfrozen_steps
        self.frozen = False
        self.step_frozen: list[bool] = []
        #: optimizer steps trained in the measured protocol, partial ones included
        self.steps_run = 0
        #: the clock's reading when the protocol started, and (data parallel) the latest
        #: step's end since then on the slowest rank, so every rank stops at the same step
        self.origin = time.perf_counter()
        self.elapsed = 0.0

    def run(self, iterator: Iterator[Any]) -> tuple[torch.Tensor, int] | None:
        """Train on the next batch; None when the iterator is exhausted (not timed)."""
        clock = time.perf_counter
        t0 = clock()
        try:
            batch = self.trainer.next_batch(iterator)
        except StopIteration:
            return None
        t1 = clock()
        if self.breakdown:
            loss, n, phases = self.trainer.step_with_breakdown(batch)
        else:
            loss, n = self.trainer.step(batch)
            self.trainer.sync()
            phases = ()
        t2 = clock()
        step, wait, self.elapsed = t2 - t0, t1 - t0, t2 - self.origin
        if self.trainer.reduce_max is not None:  # after the clock: the slowest rank's step
            step, wait, self.elapsed = self.trainer.reduce_max([step, wait, self.elapsed])
        if self.trainer.memory is not None:
            self.trainer.memory.sample()
        self.samples += n
        self.steps_run += 1
        if n == self.batch_size:
            self.step_times.append(step)
            self.waits.append(wait)
            self.step_frozen.append(self.frozen)
            if phases:
                self.phases.append(phases)
        # after the clock: the device is synced already. Data parallel: the mean over
        # ranks, so a loss that is NaN on one rank ends every rank's trial at this step
        check_finite(self.trainer.loss_value(loss), self.steps_run)
        return loss, n

    def summarise(self, result: TrialResult) -> None:
        summarise_steps(
            result,
            batch_size=self.batch_size,
            step_times=self.step_times,
            waits=self.waits,
            step_frozen=self.step_frozen,
            warmup=self.trainer.spec.warmup,
            phases=self.phases,
        )


#: an adaptive trial never measures more steps than this, whatever its precision
MAX_ADAPTIVE_STEPS = 100_000


def _run_steps(trainer: Trainer, spec: TrialSpec, result: TrialResult, notify: Progress) -> None:
    """Measured steps of full size, passing over the data as often as needed.

    With ``spec.steps`` the count is fixed. Otherwise the trial measures until the 95 %
    interval of its median step is within ``±spec.max_error`` (the rule of
    :mod:`batchscope.core.precision`), or ``spec.max_time_s`` has passed, and never
    stops before ``spec.min_steps``. The precision is checked as the count grows by a
    tenth (it costs a sort), between steps and outside their clocks.

    A new pass's iterator is created before the clock starts: that start-up is a
    cost of the epoch, not of the step that happens to follow it.
    """
    from batchscope.core.precision import median_precision

    clock = time.perf_counter
    recorder = _StepRecorder(trainer, spec.breakdown)
    last_loss = None
    iterator = iter(trainer.train_loader)
    fixed = spec.steps
    floor = max(1, spec.min_steps)
    trainer.sync()
    start = clock()
    recorder.origin = start
    deadline = start + spec.max_time_s
    last_notify = start
    next_check = floor
    precision: float | None = None
    stopped_by = "steps"
    while True:
        outcome = recorder.run(iterator)
        if outcome is None:
            iterator = iter(trainer.train_loader)
            continue
        last_loss = outcome[0]
        done = len(recorder.step_times)
        # data parallel: every rank reads the slowest rank's time, so all stop together
        now = clock() if trainer.reduce_max is None else start + recorder.elapsed
        if fixed is not None:
            if done >= fixed:
                break
        elif done >= floor:
            if done >= next_check:
                precision = median_precision(recorder.step_times).relative_half_width
                next_check = done + max(1, done // 10)
                if precision is not None and precision <= spec.max_error:
                    stopped_by = "max_error"
                    break
            if now >= deadline:
                stopped_by = "time_limit"
                break
            if done >= MAX_ADAPTIVE_STEPS:
                stopped_by = "max_steps"
                break
        if now - last_notify > 0.1:
            notify(
                "step",
                {"done": done, "total": fixed, "precision": precision, "max_error": spec.max_error},
            )
            last_notify = now
    notify("step", {"done": done, "total": fixed if fixed is not None else done})
    result.total_time_s = clock() - start
    result.samples_trained = recorder.samples
    result.final_train_loss = trainer.loss_value(last_loss) if last_loss is not None else None
    result.stopped_by = stopped_by
    recorder.summarise(result)


def _run_validation_steps(trainer: Trainer, steps: int, result: TrialResult) -> None:
    """``steps`` forward passes in eval mode without gradients, on batches of the full size.

    They come from the validation set when it holds a full batch, otherwise from the
    training set: what is measured here is the memory and the survival of a
    validation step at this batch size, not a validation score.
    """
    import torch

    size = trainer.spec.batch_size
    val = trainer.workload.val_dataset
    n_val = len(val) if val is not None else 0  # type: ignore[arg-type]
    if trainer.val_loader is not None and n_val >= size:
        val_loader = trainer.val_loader

        def validation_batches() -> Iterator[Any]:
            while True:
                yield from val_loader

        batches = validation_batches()
    else:
        batches = trainer.batches()
        result.notes.append(
            f"validation step(s) ran on training batches: the validation set holds {n_val} "
            f"samples, fewer than the batch size {size}"
        )
    trainer.model.eval()
    try:
        with torch.no_grad(), trainer.autocast():
            for _ in range(steps):
                batch = next(batches)
                inputs, targets = trainer.inputs(batch)
                trainer.loss_fn(trainer.model(inputs), targets)
        trainer.sync()
    finally:
        trainer.model.train()


def _run_epochs(trainer: Trainer, spec: TrialSpec, result: TrialResult, notify: Progress) -> None:
    import torch

    assert spec.epochs is not None
    clock = time.perf_counter
    head = (trainer.workload.head or default_head)(trainer.model)
    total_epochs = spec.freeze_epochs + spec.epochs
    total_steps = total_epochs * trainer.steps_per_epoch
    recorder = _StepRecorder(trainer, spec.breakdown)
    done = 0
    trainer.sync()
    start = clock()
    last_notify = start
    for epoch in range(total_epochs):
        frozen = epoch < spec.freeze_epochs
        set_frozen(trainer.model, head, frozen)
        recorder.frozen = frozen
        epoch_start = clock()
        loss_sum = torch.zeros((), device=trainer.device)
        samples = 0
        iterator = iter(trainer.train_loader)
        while True:
            outcome = recorder.run(iterator)
            if outcome is None:
                break
            loss, n = outcome
            loss_sum += loss * n  # stays on the device: no sync inside the timed step
            samples += n
            done += 1
            now = clock()
            if now - last_notify > 0.1:
                notify("step", {"done": done, "total": total_steps})
                last_notify = now
        train_loss = float(loss_sum) / samples if samples else None
        val_loss, metrics = trainer.validate()
        trainer.sync()
        epoch_time = clock() - epoch_start
        record = EpochRecord(
            epoch=epoch + 1,
            frozen=frozen,
            time_s=epoch_time,
            samples=samples,
            train_loss=train_loss,
            val_loss=val_loss,
            metrics=metrics,
        )
        result.epochs.append(record)
        result.epoch_time_s.append(epoch_time)
        result.final_train_loss = train_loss
        notify(
            "epoch",
            {"epoch": epoch + 1, "total": total_epochs, "done": done, "total_steps": total_steps},
        )
    set_frozen(trainer.model, head, False)
    result.stopped_by = "epochs"
    result.total_time_s = clock() - start
    if result.epochs:
        result.samples_per_epoch = result.epochs[-1].samples
    result.samples_trained = recorder.samples
    recorder.summarise(result)
    if not recorder.step_times:
        result.notes.append(
            f"every step was a partial batch (fewer than {spec.batch_size} samples): "
            "no step-time statistics at this batch size"
        )
    if spec.target:
        from batchscope.core.target import apply_target

        apply_target(result, spec.target)
