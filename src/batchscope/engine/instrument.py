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
