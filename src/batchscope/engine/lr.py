"""Learning rate across batch sizes: the scaling rules and a linear warm-up ramp.

A larger batch averages the gradient over more samples, so each step is less noisy
and fewer steps are taken per epoch; keeping the learning rate fixed then trains
less per epoch. The usual rules scale it with the (effective) batch size ``b``
relative to a base ``b0`` whose rate was tuned: ``linear`` (lr × b/b0, Goyal et al.
2017, for SGD) and ``sqrt`` (lr × √(b/b0), for Adam-type optimizers).
"""

from __future__ import annotations

import math
from typing import Any


def scale_factor(rule: str, batch_size: int, base_batch_size: int) -> float:
    """The factor the base learning rate is multiplied by at ``batch_size``."""
    ratio = batch_size / base_batch_size
    if rule == "linear":
        return ratio
    if rule == "sqrt":
        return math.sqrt(ratio)
    return 1.0


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Fraction of the target rate at optimizer step ``step`` (0-based): (step+1)/N, then 1."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return 1.0
    return (step + 1) / warmup_steps


def scale_optimizer(optimizer: Any, factor: float) -> list[float]:
    """Multiply every param group's lr by ``factor``; returns the new (target) rates."""
    targets = []
    for group in optimizer.param_groups:
        group["lr"] = float(group["lr"]) * factor
        targets.append(group["lr"])
    return targets


def set_rates(optimizer: Any, targets: list[float], factor: float) -> None:
    """Set each param group's lr to ``factor`` × its target (the warm-up ramp)."""
    for group, target in zip(optimizer.param_groups, targets, strict=True):
        group["lr"] = target * factor
