"""The trainer of one trial: model, optimizer and loaders built for one batch size, and a step.

:class:`Trainer` owns what one trial trains — the workload's model on its device
(with the trial's variants), its optimizer at the scaled learning rate, the data
loaders — and runs one optimizer step, with gradient accumulation over
:class:`MicroBatches` or split into phases (``--breakdown``). It times nothing:
:mod:`batchscope.engine.trial` runs and measures the steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from batchscope.core.plan import TrialSpec
from batchscope.engine import lr, variants
from batchscope.engine.instrument import MemoryProbe, synchronizer
from batchscope.workloads import Workload

if TYPE_CHECKING:
    import torch
    from torch import nn

_NORM_TYPES: tuple[type, ...] | None = None


def _norm_types() -> tuple[type, ...]:
    global _NORM_TYPES
    if _NORM_TYPES is None:
        from torch import nn

        _NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    return _NORM_TYPES


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


def batch_length(obj: Any) -> int:
    import torch

    if isinstance(obj, torch.Tensor):
        return int(obj.shape[0])
    if isinstance(obj, (list, tuple)) and obj:
        return batch_length(obj[0])
    if isinstance(obj, dict) and obj:
        return batch_length(next(iter(obj.values())))
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


def default_head(model: nn.Module) -> nn.Module:
    children = [m for m in model.children() if any(True for _ in m.parameters())]
    return children[-1] if children else model


class MicroBatches(list[Any]):
    """The micro-batches of one accumulated optimizer step (``--accumulate``)."""


class Trainer:
    """Holds one trial's model, optimizer and loaders; runs and times steps."""

    def __init__(self, spec: TrialSpec, workload: Workload, device: torch.device) -> None:
        import torch
        from torch.utils.data import DataLoader

        self.spec = spec
        self.workload = workload
        self.device = device
        self.sync = synchronizer(device)
        #: the trial's peak-memory probe, once set-up is over (MPS samples it every step)
        self.memory: MemoryProbe | None = None
        self.non_blocking = device.type == "cuda"
        self.model = workload.model().to(device)
        if spec.channels_last:
            self.model = variants.channels_last_model(self.model)
        #: what steps call: the compiled wrapper with --compile (validation uses the model)
        self.forward_model = variants.compile_model(self.model) if spec.compile else self.model
        self.autocast = variants.autocast(device, spec.precision)
        self.scaler = variants.grad_scaler(device, spec.precision)
        self.optimizer = workload.optimizer(self.model.parameters())
        effective = spec.batch_size * spec.accumulate
        factor = lr.scale_factor(spec.lr_scaling, effective, spec.base_batch_size or effective)
        #: every param group's rate after scaling: what the warm-up ramp climbs to
        self.lr_targets = lr.scale_optimizer(self.optimizer, factor)
        self.optimizer_steps = 0
        self.warmup_clock = variants.WarmupClock()
        self.loss_fn = workload.loss
        #: set by a data-parallel trial (batchscope.engine.ddp): the largest of each value
        #: across ranks (step times are the slowest rank's), and the loss averaged over ranks
        self.reduce_max: Callable[[list[float]], list[float]] | None = None
        self.loss_value: Callable[[torch.Tensor], float] = float
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
        #: optimizer steps per epoch (each of up to ``accumulate`` micro-batches)
        self.steps_per_epoch = math.ceil(len(self.train_loader) / spec.accumulate)

    def next_batch(self, iterator: Iterator[Any]) -> Any:
        """The next step's input: a batch, or with accumulation a :class:`MicroBatches` of up to
        ``accumulate`` micro-batches (fewer at the end of a pass). StopIteration if none."""
        first = next(iterator)
        if self.spec.accumulate == 1:
            return first
        group = [first]
        for _ in range(self.spec.accumulate - 1):
            try:
                group.append(next(iterator))
            except StopIteration:
                break
        return MicroBatches(group)

    def inputs(self, batch: Any) -> tuple[Any, Any]:
        """A batch's (inputs, targets) on the device, channels-last when the trial asks."""
        inputs = to_device(batch[0], self.device, self.non_blocking)
        targets = to_device(batch[1], self.device, self.non_blocking)
        if self.spec.channels_last:
            inputs = variants.channels_last_input(inputs)
        return inputs, targets

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def _optimizer_step(self) -> None:
        """The optimizer step, at the warm-up ramp's rate, through the fp16 scaler if any."""
        if self.spec.lr_warmup_steps:
            factor = lr.warmup_factor(self.optimizer_steps, self.spec.lr_warmup_steps)
            lr.set_rates(self.optimizer, self.lr_targets, factor)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer_steps += 1

    def step(self, batch: Any) -> tuple[torch.Tensor, int]:
        """One optimizer step on ``batch``; returns the detached loss and the batch length.

        A :class:`MicroBatches` accumulates the gradients of its micro-batches, each loss
        weighted by its share of the group's samples, so the update equals the one
        from a single batch of them all (models without batch normalisation).
        """
        if isinstance(batch, MicroBatches):
            return self._accumulated_step(batch)
        inputs, targets = self.inputs(batch)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            outputs = self.forward_model(inputs)
            loss = self.loss_fn(outputs, targets)
        self._backward(loss)
        self._optimizer_step()
        return loss.detach(), batch_length(targets)

    def _accumulated_step(self, group: MicroBatches) -> tuple[torch.Tensor, int]:
        total = sum(batch_length(b[1]) for b in group)
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum: torch.Tensor | None = None
        for batch in group:
            inputs, targets = self.inputs(batch)
            with self.autocast():
                outputs = self.forward_model(inputs)
                loss = self.loss_fn(outputs, targets)
            share = batch_length(targets) / total
            self._backward(loss * share)
            part = loss.detach().float() * share
            loss_sum = part if loss_sum is None else loss_sum + part
        self._optimizer_step()
        assert loss_sum is not None
        return loss_sum, total

    def step_with_breakdown(self, batch: Any) -> tuple[torch.Tensor, int, tuple[float, ...]]:
        """:meth:`step` with the device synchronised between its phases (``--breakdown``).

        Returns the seconds of host-to-device copy, forward (with the loss),
        backward and optimizer step. The extra syncs cost time themselves, which
        is why this is not the default.
        """
        clock = time.perf_counter
        t0 = clock()
        inputs, targets = self.inputs(batch)
        self.sync()
        t1 = clock()
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            outputs = self.forward_model(inputs)
            loss = self.loss_fn(outputs, targets)
        self.sync()
        t2 = clock()
        self._backward(loss)
        self.sync()
        t3 = clock()
        self._optimizer_step()
        self.sync()
        t4 = clock()
        return loss.detach(), batch_length(targets), (t1 - t0, t2 - t1, t3 - t2, t4 - t3)

    def batches(self) -> Iterator[Any]:
        """Training batches forever, reshuffled each pass (for ``--steps`` runs)."""
        while True:
            yield from self.train_loader

    def validate(self, max_samples: int | None = None) -> tuple[float | None, dict[str, float]]:
        """Mean loss and metrics over the validation set (in order; with ``max_samples``,
        over its first batches until that many samples are seen)."""
        import torch

        if self.val_loader is None:
            return None, {}
        self.model.eval()
        total_loss = 0.0
        count = 0
        metric_sums: dict[str, float] = {}
        with torch.no_grad(), self.autocast():  # validated in the trial's precision
            for batch in self.val_loader:
                inputs, targets = self.inputs(batch)
                outputs = self.model(inputs)
                n = batch_length(targets)
                total_loss += float(self.loss_fn(outputs, targets)) * n
                if self.workload.metric is not None:
                    for name, value in self.workload.metric(outputs, targets).items():
                        metric_sums[name] = metric_sums.get(name, 0.0) + float(value) * n
                count += n
                if max_samples is not None and count >= max_samples:
                    break
        self.model.train()
        if count == 0:
            return None, {}
        return total_loss / count, {k: v / count for k, v in metric_sums.items()}
