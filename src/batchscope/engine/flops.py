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

Counting leaves the trial as it found it: gradients (restored), buffers such as batch
normalisation's running statistics (copied before and put back) and the random number
generators (forked) are untouched. Its time is set-up time, outside every step clock;
its memory is outside the measured peak (the trial restarts the probe after it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from batchscope.engine.trainer import MicroBatches, batch_length

if TYPE_CHECKING:
    from batchscope.core.results import TrialResult
    from batchscope.engine.trainer import Trainer


def _rng_devices(trainer: Trainer) -> list[Any]:
    """The accelerators whose generators the count must fork (CUDA only: fork_rng's kind)."""
    return [trainer.device] if trainer.device.type == "cuda" else []


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
            with counter:
                for micro in group:
                    inputs, targets = trainer.inputs(micro)
                    with trainer.autocast():
                        loss = trainer.loss_fn(model(inputs), targets)
                    if loss.requires_grad:
                        loss.backward()
            total = int(counter.get_total_flops())
        trainer.sync()
    finally:
        for p, g in zip(params, grads, strict=True):
            p.grad = g  # the counted gradients are dropped (set to None before)
        with torch.no_grad():
            for name, b in model.named_buffers():
                if name in buffers:
                    b.copy_(buffers[name])
    return total if total > 0 else None


def record_step_flops(trainer: Trainer, batch: Any, result: TrialResult) -> None:
    """Count ``batch``'s step FLOPs onto ``result`` (flops_per_step, flops_per_sample).

    The count is scaled to the trial's effective batch size when ``batch`` holds fewer
    samples (a data set smaller than one step: an ``--epochs`` run's partial batch).
    A failure leaves both fields None and says why in ``result.notes``; running out of
    memory is raised (the step itself would: the trial is out of memory).
    """
    group = list(batch) if isinstance(batch, MicroBatches) else [batch]
    try:
        counted = count_step_flops(trainer, batch)
    except Exception as exc:  # any op the counter trips on: the trial goes on without
        from batchscope.hardware.oom import is_oom_error

        if is_oom_error(exc):
            raise  # a step of this size does not fit: the trial's outcome, not the count's
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        result.notes.append(
            f"FLOPs not counted ({type(exc).__name__}: {first[:200]}): no MFU for this trial"
        )
        return
    if counted is None:
        result.notes.append(
            "FLOPs not counted: the step holds no matmul or convolution that "
            "torch.utils.flop_counter counts, so it has no MFU"
        )
        return
    samples = sum(batch_length(b[1]) for b in group)
    effective = trainer.spec.batch_size * trainer.spec.accumulate
    if samples != effective and samples > 0:
        result.notes.append(
            f"FLOPs counted on {samples} samples and scaled to the step's {effective}"
        )
        counted = round(counted * effective / samples)
    result.flops_per_step = counted
    result.flops_per_sample = counted / effective
