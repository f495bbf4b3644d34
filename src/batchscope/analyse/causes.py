"""What the measurements themselves say shapes the curve, in words with their figures.

Data waits that grow with the batch size, ``drop_last`` shrinking the epoch, peaks
near ``--memory-limit``, out-of-memory and failed sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

from batchscope.analyse.points import NO_STEP_TIMES, Point
from batchscope.core.results import TrialResult
from batchscope.units import format_bytes

#: a peak at or above this fraction of --memory-limit is "near" it
NEAR_LIMIT = 0.80


def measured_causes(
    points: list[Point],
    failed: dict[int, str],
    trials: Sequence[TrialResult],
    memory_limit_bytes: int | None,
) -> list[str]:
    """What the measurements themselves say shapes the curve, with the figures."""
    causes: list[str] = []
    waits = [p for p in points if p.data_wait_fraction is not None]
    if len(waits) >= 2:
        first, last = waits[0], waits[-1]
        f0, f1 = first.data_wait_fraction or 0.0, last.data_wait_fraction or 0.0
        peak = max(waits, key=lambda p: p.data_wait_fraction or 0.0)
        if f1 - f0 >= 0.05 and f1 >= 1.5 * f0:
            causes.append(
                f"waiting for data grows with batch size: {f0:.0%} of the step time at "
                f"b={first.batch_size}, {f1:.0%} at b={last.batch_size}; the input pipeline, "
                "not the model, slows large batches (try more --workers or faster storage)"
            )
        elif (peak.data_wait_fraction or 0.0) >= 0.25:
            causes.append(
                f"waiting for data takes {peak.data_wait_fraction:.0%} of the step time at "
                f"b={peak.batch_size}: the input pipeline limits the speed (try more --workers)"
            )
    if any(t.drop_last for t in trials if t.ok):
        epochs = [p for p in points if p.samples_per_epoch is not None]
        if len({p.samples_per_epoch for p in epochs}) > 1:
            most = max(epochs, key=lambda p: p.samples_per_epoch or 0)
            least = min(epochs, key=lambda p: p.samples_per_epoch or 0)
            assert most.samples_per_epoch is not None and least.samples_per_epoch is not None
            lost = most.samples_per_epoch - least.samples_per_epoch
            causes.append(
                f"drop_last leaves out the last partial batch: an epoch holds "
                f"{most.samples_per_epoch} samples at b={most.batch_size} but "
                f"{least.samples_per_epoch} at b={least.batch_size} ({lost} fewer, "
                f"{lost / most.samples_per_epoch:.0%}); per-epoch times shrink for that reason "
                "alone, so compare per sample"
            )
    if memory_limit_bytes:
        close = [
            p
            for p in points
            if p.peak_memory_bytes is not None
            and p.peak_memory_bytes >= NEAR_LIMIT * memory_limit_bytes
        ]
        if close:
            p = min(close, key=lambda p: p.batch_size)
            assert p.peak_memory_bytes is not None
            causes.append(
                f"peak memory at b={p.batch_size} is {format_bytes(p.peak_memory_bytes)}, "
                f"{p.peak_memory_bytes / memory_limit_bytes:.0%} of --memory-limit "
                f"{format_bytes(memory_limit_bytes)}: larger batches are near what fits"
            )
    by_status: dict[str, list[int]] = {}
    for b, status in sorted(failed.items()):
        by_status.setdefault(status, []).append(b)
    ok_sizes = [p.batch_size for p in points]
    for status, sizes in by_status.items():
        names = ", ".join(f"b={b}" for b in sizes)
        if status == "oom":
            larger = ok_sizes and min(sizes) > max(ok_sizes)
            where = ", every size above the largest that ran" if larger else ""
            causes.append(f"{names} ran out of memory (oom){where}")
        elif status == NO_STEP_TIMES:
            for b in sizes:
                epoch = next(
                    (t.samples_per_epoch for t in trials if t.batch_size == b and t.ok), None
                )
                held = f" (an epoch holds {epoch} samples)" if epoch is not None else ""
                causes.append(
                    f"b={b} ran, but no step had a full batch of {b}{held}: it has no step "
                    "times, only the protocol's time; use more data or --steps for them"
                )
        else:
            errors = [
                t.error for t in trials if t.batch_size in sizes and t.status == status and t.error
            ]
            detail = f": {errors[0]}" if errors else ""
            causes.append(f"{names} ended with status {status!r}{detail}")
    return causes
