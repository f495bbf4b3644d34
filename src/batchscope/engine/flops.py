"""The model FLOPs of one training step, counted once per trial from the shapes.

:func:`count_step_flops` runs one forward, loss and backward of the trial's *eager*
model (``trainer.model``, never the ``torch.compile`` wrapper) under
``torch.utils.flop_counter.FlopCounterMode``, inside the trial's autocast, and returns
the FLOPs it counted: matmuls, convolutions and attention at 2 FLOPs per multiply-add
(``addmm``/``mm`` of an ``m×k`` by a ``k×n``: ``2·m·k·n``), backward included (a layer
whose input needs no gradient only computes its weight's gradient). Elementwise ops,
normalisation and the optimizer step are not counted: the convention of model FLOPs
utilisation (MFU), whose peak is a matmul peak. The count depends on the shapes alone,
so it holds for the compiled, channels-last and mixed-precision variants too.

:func:`record_step_flops` is what the trial calls: it counts, stamps
``flops_per_step``/``flops_per_sample`` on the result, and turns any failure into a
note, never into a failed trial (but out of memory, which the step itself would hit).

The same pass estimates the **bytes moved** by the step (:class:`StepCount`): every aten
op the forward and backward dispatch reads its tensor inputs and writes its outputs once
(views move nothing), plus the optimizer reading each parameter and its gradient and
writing the parameter (3 × parameter bytes; its state is left out). That is what an eager
step moves to and from memory if no operand stays in a cache between ops — an upper bound
for small tensors, about right for large ones — and, at the measured copy bandwidth, it
says how much of a step memory traffic alone can explain
(:func:`batchscope.analyse.efficiency.bandwidth_fraction`).

Counting leaves the trial as it found it: gradients (restored), buffers such as batch
normalisation's running statistics (copied before and put back) and the random number
generators (forked) are untouched. Its time is set-up time, outside every step clock;
its memory is outside the measured peak (the trial restarts the probe after it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchscope.engine.trainer import MicroBatches, batch_length

if TYPE_CHECKING:
    from batchscope.core.results import TrialResult
    from batchscope.engine.trainer import Trainer


def _rng_devices(trainer: Trainer) -> list[Any]:
    """The accelerators whose generators the count must fork (CUDA only: fork_rng's kind)."""
    return [trainer.device] if trainer.device.type == "cuda" else []


@dataclass(frozen=True)
class StepCount:
    """What one optimizer step computes and moves, counted from its shapes."""

    #: model FLOPs (matmuls, convolutions, attention); None when none was counted
    flops: int | None
    #: bytes read and written by the forward, backward and optimizer (module docstring)
    bytes_moved: int


def bytes_counter() -> Any:
    """A dispatch mode that sums the bytes every non-view aten op reads and writes."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    def nbytes(tree: Any) -> int:
        leaves, _ = tree_flatten(tree)
        return sum(t.numel() * t.element_size() for t in leaves if isinstance(t, torch.Tensor))

    class BytesMoved(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.total = 0

        def __torch_dispatch__(
            self, func: Any, types: Any, args: Any = (), kwargs: Any = None
        ) -> Any:
            out = func(*args, **(kwargs or {}))
            if not getattr(func, "is_view", False):
                self.total += nbytes((args, kwargs or {})) + nbytes(out)
            return out

    return BytesMoved()


def cpu_attention_formulas() -> dict[Any, Any]:
    """FLOP formulas for the CPU kernel of ``scaled_dot_product_attention``.

    torch.utils.flop_counter counts the CUDA attention kernels (flash, memory-efficient,
    cuDNN) but not ``_scaled_dot_product_flash_attention_for_cpu``, so a transformer on
    the CPU would lose its attention FLOPs. The CPU kernel gets the same formulas as the
    CUDA ones (torch's own ``sdpa_flop_count``: 4·b·h·s_q·s_k·d forward, 2.5× that
    backward — causal masking not subtracted, as torch counts it on CUDA).
    """
    import torch
    from torch.utils import flop_counter

    aten = torch.ops.aten
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    formulas: dict[Any, Any] = {}
    if forward is not None:

        def forward_flops(query: Any, key: Any, value: Any, *_: Any, **__: Any) -> int:
            return int(flop_counter.sdpa_flop_count(query, key, value))

        formulas[forward] = forward_flops
    if backward is not None:

        def backward_flops(grad: Any, query: Any, key: Any, value: Any, *_: Any, **__: Any) -> int:
            return int(flop_counter.sdpa_backward_flop_count(grad, query, key, value))

        formulas[backward] = backward_flops
    return formulas


def count_step_flops(trainer: Trainer, batch: Any) -> int | None:
    """The FLOPs of one optimizer step on ``batch`` (a batch, or a :class:`MicroBatches`
    group, whose micro-batches are summed); None when the counter saw no op it counts.

    An op the counter cannot run raises (the caller records a note). The model's
    gradients, buffers and the random state are as before the call.
    """
    return count_step(trainer, batch).flops


def count_step(trainer: Trainer, batch: Any) -> StepCount:
    """FLOPs and bytes moved of one optimizer step on ``batch`` (see
    :func:`count_step_flops`); one forward and backward under both counters."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = trainer.model  # eager: the compiled wrapper would count its compilation
    group = list(batch) if isinstance(batch, MicroBatches) else [batch]
    params = list(model.parameters())
    grads = [p.grad for p in params]
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    for p in params:
        p.grad = None  # backward accumulates into an existing gradient in place
    try:
        with torch.random.fork_rng(devices=_rng_devices(trainer)):
            counter = FlopCounterMode(display=False, custom_mapping=cpu_attention_formulas())
            moved = bytes_counter()
            with counter, moved:
                for micro in group:
                    inputs, targets = trainer.inputs(micro)
                    with trainer.autocast():
                        loss = trainer.loss_fn(model(inputs), targets)
                    if loss.requires_grad:
                        loss.backward()
            total = int(counter.get_total_flops())
        trainer.sync()
        optimizer_bytes = 3 * sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    finally:
        for p, g in zip(params, grads, strict=True):
            p.grad = g  # the counted gradients are dropped (set to None before)
        with torch.no_grad():
            for name, b in model.named_buffers():
                if name in buffers:
                    b.copy_(buffers[name])
    return StepCount(total if total > 0 else None, int(moved.total) + optimizer_bytes)


def record_step_flops(trainer: Trainer, batch: Any, result: TrialResult) -> None:
    """Count ``batch``'s step FLOPs onto ``result`` (flops_per_step, flops_per_sample,
    bytes_per_step).

    The count is scaled to the trial's effective batch size when ``batch`` holds fewer
    samples (a data set smaller than one step: an ``--epochs`` run's partial batch).
    A failure leaves both fields None and says why in ``result.notes``; running out of
    memory is raised (the step itself would: the trial is out of memory).
    """
    group = list(batch) if isinstance(batch, MicroBatches) else [batch]
    try:
        count = count_step(trainer, batch)
    except Exception as exc:  # any op the counter trips on: the trial goes on without
        from batchscope.hardware.oom import is_oom_error

        if is_oom_error(exc):
            raise  # a step of this size does not fit: the trial's outcome, not the count's
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        result.notes.append(
            f"FLOPs not counted ({type(exc).__name__}: {first[:200]}): no MFU for this trial"
        )
        return
    counted, moved = count.flops, count.bytes_moved
    samples = sum(batch_length(b[1]) for b in group)
    effective = trainer.spec.batch_size * trainer.spec.accumulate
    scale = effective / samples if samples != effective and samples > 0 else 1.0
    result.bytes_per_step = round(moved * scale) if moved > 0 else None
    if counted is None:
        result.notes.append(
            "FLOPs not counted: the step holds no matmul or convolution that "
            "torch.utils.flop_counter counts, so it has no MFU"
        )
        return
    if scale != 1.0:
        result.notes.append(
            f"FLOPs counted on {samples} samples and scaled to the step's {effective}"
        )
        counted = round(counted * scale)
    result.flops_per_step = counted
    result.flops_per_sample = counted / effective
