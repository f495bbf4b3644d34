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

import copy
import math
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .errors import DeviceError, UsageError
from .plan import TrialSpec
from .results import EpochRecord, StepStats, TrialResult
from .timing import synchronizer
from .workloads import Workload, WorkloadOptions, load_workload

if TYPE_CHECKING:
    import torch
    from torch import nn

#: ``progress(event, payload)`` — events: "setup", "warmup", "step", "epoch", "done".
Progress = Callable[[str, dict[str, Any]], None]

_NORM_TYPES: tuple[type, ...] | None = None


def _norm_types() -> tuple[type, ...]:
    global _NORM_TYPES
    if _NORM_TYPES is None:
        from torch import nn

        _NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    return _NORM_TYPES


def check_device(name: str) -> torch.device:
    """The torch device for ``name``, or a :class:`DeviceError` if it is not usable here."""
    import torch

    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} is not present: torch sees no CUDA GPU")
        if (device.index or 0) >= torch.cuda.device_count():
            raise DeviceError(
                f"device {name!r} is not present: {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise DeviceError(f"device {name!r} is not present: MPS is not available")
    elif device.type != "cpu" and device.type != "xpu":
        raise DeviceError(f"unknown device {name!r}: use cpu, cuda, cuda:N or mps")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so trials are repeatable."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_device(obj: Any, device: torch.device, non_blocking: bool) -> Any:
    """Move a tensor, or tensors nested in tuples/lists/dicts, to ``device``."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(o, device, non_blocking) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device, non_blocking) for k, v in obj.items()}
    return obj


def _batch_length(obj: Any) -> int:
    import torch

    if isinstance(obj, torch.Tensor):
        return int(obj.shape[0])
    if isinstance(obj, (list, tuple)) and obj:
        return _batch_length(obj[0])
    if isinstance(obj, dict) and obj:
        return _batch_length(next(iter(obj.values())))
    raise TypeError(f"cannot tell the batch length of a {type(obj).__name__}")


def set_frozen(model: nn.Module, head: nn.Module, frozen: bool) -> int:
    """Freeze everything but ``head`` and normalisation layers (fastai's ``freeze``).

    Returns the number of parameters left trainable.
    """
    keep: set[int] = {id(p) for p in head.parameters()}
    for module in model.modules():
        if isinstance(module, _norm_types()):
            keep.update(id(p) for p in module.parameters(recurse=False))
    trainable = 0
    for p in model.parameters():
        p.requires_grad_(not frozen or id(p) in keep)
        if p.requires_grad:
            trainable += p.numel()
    return trainable


def _default_head(model: nn.Module) -> nn.Module:
    children = [m for m in model.children() if any(True for _ in m.parameters())]
    return children[-1] if children else model


def _current_rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class _Trainer:
    """Holds one trial's model, optimizer and loaders; runs and times steps."""

    def __init__(self, spec: TrialSpec, workload: Workload, device: torch.device) -> None:
        import torch
        from torch.utils.data import DataLoader

        self.spec = spec
        self.workload = workload
        self.device = device
        self.sync = synchronizer(device)
        self.non_blocking = device.type == "cuda"
        self.model = workload.model().to(device)
        self.optimizer = workload.optimizer(self.model.parameters())
        self.loss_fn = workload.loss
        self.generator = torch.Generator()
        self.generator.manual_seed(spec.seed)
        pin = device.type == "cuda"
        self.train_loader = DataLoader(
            workload.train_dataset,
            batch_size=spec.batch_size,
            shuffle=True,
            drop_last=spec.drop_last,
            num_workers=spec.workers,
            pin_memory=pin,
            generator=self.generator,
            persistent_workers=spec.workers > 0,
        )
        self.val_loader = (
            DataLoader(
                workload.val_dataset,
                batch_size=spec.batch_size,
                shuffle=False,
                num_workers=spec.workers,
                pin_memory=pin,
            )
            if workload.val_dataset is not None
            else None
        )
        self.n_train = len(workload.train_dataset)  # type: ignore[arg-type]
        if spec.drop_last:
            self.samples_per_epoch = (self.n_train // spec.batch_size) * spec.batch_size
        else:
            self.samples_per_epoch = self.n_train
        self.steps_per_epoch = len(self.train_loader)

    def step(self, batch: Any) -> tuple[torch.Tensor, int]:
        """One optimizer step on ``batch``; returns the detached loss and the batch length."""
        inputs, targets = batch[0], batch[1]
        inputs = to_device(inputs, self.device, self.non_blocking)
        targets = to_device(targets, self.device, self.non_blocking)
        self.optimizer.zero_grad(set_to_none=True)
        outputs = self.model(inputs)
        loss = self.loss_fn(outputs, targets)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), _batch_length(targets)

    def batches(self) -> Iterator[Any]:
        """Training batches forever, reshuffled each pass (for ``--steps`` runs)."""
        while True:
            yield from self.train_loader

    def validate(self) -> tuple[float | None, dict[str, float]]:
        import torch

        if self.val_loader is None:
            return None, {}
        self.model.eval()
        total_loss = 0.0
        count = 0
        metric_sums: dict[str, float] = {}
        with torch.no_grad():
            for batch in self.val_loader:
                inputs = to_device(batch[0], self.device, self.non_blocking)
                targets = to_device(batch[1], self.device, self.non_blocking)
                outputs = self.model(inputs)
                n = _batch_length(targets)
                total_loss += float(self.loss_fn(outputs, targets)) * n
                if self.workload.metric is not None:
                    for name, value in self.workload.metric(outputs, targets).items():
                        metric_sums[name] = metric_sums.get(name, 0.0) + float(value) * n
                count += n
        self.model.train()
        if count == 0:
            return None, {}
        return total_loss / count, {k: v / count for k, v in metric_sums.items()}


def run_trial(
    spec: TrialSpec,
    workload: Workload | None = None,
    *,
    progress: Progress | None = None,
) -> TrialResult:
    """Run and measure one trial in this process.

    ``workload`` may be passed when the caller already built it (in-process runs);
    otherwise it is loaded from ``spec.workload``. User errors raise
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
    notify("setup", {"device": spec.device, "batch_size": spec.batch_size})
    if workload is None:
        workload = load_workload(spec.workload, WorkloadOptions.from_dict(spec.workload_options))
    seed_everything(spec.seed)  # the model's initial weights do not depend on data building
    trainer = _Trainer(spec, workload, device)
    if trainer.steps_per_epoch == 0:
        raise UsageError(
            f"batch size {spec.batch_size} is larger than the {trainer.n_train} training "
            "samples and drop_last is on, so an epoch has no step: use a smaller batch size"
        )
    result = TrialResult(
        device=spec.device,
        batch_size=spec.batch_size,
        repeat=spec.repeat,
        threads=torch.get_num_threads(),
        seed=spec.seed,
        drop_last=spec.drop_last,
        samples_per_epoch=trainer.samples_per_epoch,
        steps_per_epoch=trainer.steps_per_epoch,
        notes=list(workload.notes),
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_baseline = _current_rss()
    setup_time = time.perf_counter() - setup_start

    _warm_up(trainer, spec.warmup, notify)
    result.warmup_steps = spec.warmup

    if spec.epochs is not None:
        _run_epochs(trainer, spec, result, notify)
    else:
        _run_steps(trainer, spec, result, notify)

    result.setup_time_s = setup_time
    _record_memory(result, device, rss_baseline)
    notify("done", {"status": result.status})
    return result


def _record_memory(result: TrialResult, device: torch.device, rss_baseline: int) -> None:
    """Peak memory of the measured protocol.

    On CUDA, the allocator's peaks since set-up (allocated = tensors, reserved =
    what the caching allocator holds). On the CPU, the growth of this process's
    peak resident memory over its resident memory after set-up: meaningful in a
    fresh child process, an upper bound when trials share one process.
    """
    import torch

    result.peak_rss_bytes = _peak_rss()
    if device.type == "cuda":
        result.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
        result.peak_reserved_bytes = int(torch.cuda.max_memory_reserved(device))
    elif device.type == "mps":
        result.peak_memory_bytes = int(torch.mps.driver_allocated_memory())
    else:
        result.peak_memory_bytes = max(0, result.peak_rss_bytes - rss_baseline)


def _warm_up(trainer: _Trainer, steps: int, notify: Progress) -> None:
    """Run ``steps`` untimed steps, then restore model and optimizer to their initial state."""
    if steps <= 0:
        return
    model_state = copy.deepcopy(trainer.model.state_dict())
    optim_state = copy.deepcopy(trainer.optimizer.state_dict())
    batches = trainer.batches()
    for i in range(steps):
        trainer.step(next(batches))
        notify("warmup", {"done": i + 1, "total": steps})
    trainer.sync()
    del batches
    trainer.model.load_state_dict(model_state)
    trainer.optimizer.load_state_dict(optim_state)
    trainer.generator.manual_seed(trainer.spec.seed)  # the protocol sees the same shuffles


def _summarise_steps(
    result: TrialResult, spec: TrialSpec, step_times: list[float], waits: list[float]
) -> None:
    if not step_times:
        return
    result.measured_steps = len(step_times)
    result.step_times_s = list(step_times)
    result.step_time_s = StepStats.from_samples(step_times)
    result.data_wait_s = StepStats.from_samples(waits)
    result.samples_per_s = spec.batch_size / result.step_time_s.median
    total = math.fsum(step_times)
    result.data_wait_fraction = math.fsum(waits) / total if total > 0 else 0.0


def _run_steps(trainer: _Trainer, spec: TrialSpec, result: TrialResult, notify: Progress) -> None:
    assert spec.steps is not None
    clock = time.perf_counter
    step_times: list[float] = []
    waits: list[float] = []
    batches = trainer.batches()
    last_loss = None
    trainer.sync()
    start = clock()
    last_notify = start
    done = 0
    while done < spec.steps:
        t0 = clock()
        batch = next(batches)
        t1 = clock()
        last_loss, n = trainer.step(batch)
        trainer.sync()
        t2 = clock()
        if n == spec.batch_size:  # a partial batch is trained but is not a step of this size
            step_times.append(t2 - t0)
            waits.append(t1 - t0)
            done += 1
        if t2 - last_notify > 0.1 or done == spec.steps:
            notify("step", {"done": done, "total": spec.steps})
            last_notify = t2
    result.total_time_s = clock() - start
    result.final_train_loss = float(last_loss) if last_loss is not None else None
    _summarise_steps(result, spec, step_times, waits)


def _run_epochs(trainer: _Trainer, spec: TrialSpec, result: TrialResult, notify: Progress) -> None:
    import torch

    assert spec.epochs is not None
    clock = time.perf_counter
    head = (trainer.workload.head or _default_head)(trainer.model)
    total_epochs = spec.freeze_epochs + spec.epochs
    total_steps = total_epochs * trainer.steps_per_epoch
    step_times: list[float] = []
    waits: list[float] = []
    done = 0
    trainer.sync()
    start = clock()
    last_notify = start
    for epoch in range(total_epochs):
        frozen = epoch < spec.freeze_epochs
        set_frozen(trainer.model, head, frozen)
        epoch_start = clock()
        loss_sum = torch.zeros((), device=trainer.device)
        samples = 0
        iterator = iter(trainer.train_loader)
        while True:
            t0 = clock()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            t1 = clock()
            loss, n = trainer.step(batch)
            loss_sum += loss * n
            trainer.sync()
            t2 = clock()
            samples += n
            done += 1
            if n == spec.batch_size:
                step_times.append(t2 - t0)
                waits.append(t1 - t0)
            if t2 - last_notify > 0.1:
                notify("step", {"done": done, "total": total_steps})
                last_notify = t2
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
    result.total_time_s = clock() - start
    if result.epochs:
        result.samples_per_epoch = result.epochs[-1].samples
    _summarise_steps(result, spec, step_times, waits)
    if not step_times:
        result.notes.append(
            f"every step was a partial batch (fewer than {spec.batch_size} samples): "
            "no step-time statistics at this batch size"
        )
