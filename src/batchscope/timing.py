"""Device-synchronised clocks.

GPU work is asynchronous: a clock read right after ``loss.backward()`` measures
the launch, not the work. Every step boundary therefore waits for the device
before the clock is read. On the CPU the wait is a no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A zero-argument function that blocks until ``device`` has finished its queued work."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()

        def sync_cuda() -> None:
            torch.cuda.synchronize(index)

        return sync_cuda
    if device.type == "mps":
        return torch.mps.synchronize
    if device.type == "xpu":  # pragma: no cover - needs an Intel GPU
        return torch.xpu.synchronize  # type: ignore[no-any-return,unused-ignore]
    return _no_sync


def _no_sync() -> None:
    """CPU kernels run synchronously: nothing to wait for."""


def unfrozen_steps(step_frozen: list[bool], warmup: int) -> tuple[list[int], int, int] | None:
    """Which timed steps describe the batch size when a frozen-body phase came first.

    Steps with the body frozen (fastai's ``fine_tune``, ``--freeze-epochs``) skip
    most of the backward pass, so pooling them with full steps would make the
    spread a mixture of two step times. Returns ``(kept indices, frozen steps,
    re-warmed steps)``: the unfrozen steps less their first ``warmup`` (unfreezing
    allocates the body's gradients), at least one kept; None when only one kind ran.
    """
    n_frozen = sum(step_frozen)
    if not 0 < n_frozen < len(step_frozen):
        return None
    unfrozen = [i for i, frozen in enumerate(step_frozen) if not frozen]
    rewarm = min(warmup, len(unfrozen) - 1)
    return unfrozen[rewarm:], n_frozen, rewarm


def unfrozen_note(n_frozen: int, rewarm: int, frozen_median_s: float) -> str:
    """The note a trial carries when :func:`unfrozen_steps` chose its steps."""
    again = f", less the first {rewarm} after unfreezing (warm-up)" if rewarm else ""
    return (
        f"step statistics come from the unfrozen epochs' steps{again}; the {n_frozen} "
        f"frozen-body steps (median {frozen_median_s * 1e3:.1f} ms: less backward work) "
        "count in the protocol's time only"
    )
