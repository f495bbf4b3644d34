"""Training variants: precision (autocast + gradient scaler), channels-last, torch.compile.

A variant is a further axis of the grid. What a device cannot do is found out by
trying it on a tiny tensor first, so such a trial is recorded as ``unsupported``
with the reason, never measured silently in another precision (CPU autocast, for
one, warns and turns itself off for a dtype it does not support).

Naming a variant and grouping trials by it is plain data: :mod:`batchscope.core.series`.

torch is imported inside the functions only (``import batchscope`` stays fast).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from batchscope.core.plan import TrialSpec
    from batchscope.core.results import TrialResult

#: torch.compile's backend; tests swap in "eager" (the inductor build takes ~30 s here)
COMPILE_BACKEND = "inductor"


def _dtype(precision: str) -> torch.dtype | None:
    import torch

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def unsupported_reason(device: torch.device, precision: str) -> str | None:
    """Why ``device`` cannot train in ``precision`` (None when it can).

    Runs one tiny linear forward/backward under autocast and checks that the
    output really has the asked dtype.
    """
    import torch

    dtype = _dtype(precision)
    if dtype is None:
        return None
    if not torch.amp.is_autocast_available(device.type):
        return (
            f"{precision} autocast is not available on {device.type} in torch {torch.__version__}"
        )
    if device.type == "cuda" and dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return f"{device} does not support bf16"
    try:
        layer = torch.nn.Linear(4, 4).to(device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with torch.autocast(device.type, dtype=dtype):
                out = layer(torch.ones(2, 4, device=device))
            out.float().sum().backward()
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot"
        return f"{precision} autocast failed on {device}: {type(exc).__name__}: {exc}"
    if out.dtype != dtype:
        said = "; ".join(str(w.message) for w in caught)[:200]
        return f"{precision} autocast on {device} computed in {out.dtype}" + (
            f" ({said})" if said else ""
        )
    return None


def autocast(
    device: torch.device, precision: str
) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """A factory of the context each forward pass runs in (a no-op for fp32)."""
    import torch

    dtype = _dtype(precision)
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> Any | None:
    """torch.amp.GradScaler for fp16 (small gradients underflow in half precision), else None.

    None too where the device has no scaler; fp16 then trains unscaled.
    """
    import torch

    if precision != "fp16":
        return None
    try:
        return torch.amp.GradScaler(device.type)
    except Exception:  # noqa: BLE001 - a device without a scaler
        return None


def channels_last_model(model: nn.Module) -> nn.Module:
    import torch

    return model.to(memory_format=torch.channels_last)


def channels_last_input(obj: Any) -> Any:
    """4-D tensors (also nested in tuples/lists) to channels-last; others unchanged."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.contiguous(memory_format=torch.channels_last) if obj.dim() == 4 else obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(channels_last_input(o) for o in obj)
    return obj


def compile_model(model: nn.Module) -> nn.Module:
    """torch.compile; the model's own parameters are shared, so its state_dict still restores."""
    import torch

    return torch.compile(model, backend=COMPILE_BACKEND)  # type: ignore[return-value]


class WarmupClock:
    """Times warm-up steps so compile time can be told apart from step time.

    ``compile_time_s`` = the first warm-up step minus the median of the others
    (with one warm-up step: that step's whole time, an upper bound).
    """

    def __init__(self) -> None:
        self.times: list[float] = []

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.times.append(time.perf_counter() - start)

    def compile_time_s(self) -> float | None:
        if not self.times:
            return None
        rest = sorted(self.times[1:])
        if not rest:
            return self.times[0]
        mid = len(rest) // 2
        median = rest[mid] if len(rest) % 2 else (rest[mid - 1] + rest[mid]) / 2
        return max(0.0, self.times[0] - median)


def has_batchnorm(model: nn.Module) -> bool:
    from torch import nn

    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def stamp(
    result: TrialResult,
    spec: TrialSpec,
    model: nn.Module | None = None,
    lr_targets: list[float] | None = None,
    scaler: Any | None = None,
) -> None:
    """Record the learning rate the trial ran with, and notes about its variant.

    The variant fields themselves come with :meth:`TrialResult.from_spec`.
    """
    if lr_targets:
        result.lr = lr_targets[0]
    if spec.precision == "fp16" and model is not None and scaler is None:
        result.notes.append("fp16 without a gradient scaler: this device has none")
    if spec.accumulate > 1 and model is not None and has_batchnorm(model):
        result.notes.append(
            f"the model has batch normalisation: its statistics come from micro-batches of "
            f"{spec.batch_size}, not from {spec.batch_size * spec.accumulate}, so accumulated "
            "training is not the same as the large batch"
        )


# ---------------------------------------------------------------- labels and views
