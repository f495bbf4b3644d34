"""From raw step times to a trial's step statistics: one rule for every way of training.

The engine, the framework callbacks (fastai, Keras) and ``batchscope.measure``
all time steps the same way and summarise them here, so a step means the same
thing in every table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from batchscope.core.results import StepStats, TrialResult
from batchscope.core.tokens import stamp_token_rates

#: the phases ``--breakdown`` separates, after the data wait
PHASES = ("h2d", "forward", "backward", "optimizer")

#: a trial whose steps wait for data longer than this fraction is input-bound
INPUT_BOUND_FRACTION = 0.2


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


def summarise_steps(
    result: TrialResult,
    *,
    batch_size: int,
    step_times: Sequence[float],
    waits: Sequence[float],
    step_frozen: Sequence[bool],
    warmup: int,
    phases: Sequence[tuple[float, ...]] = (),
    cures: str = "more --workers, pinned memory, or lighter transforms",
) -> None:
    """Fill ``result``'s step statistics, data-wait split and input-bound diagnosis.

    ``step_times`` are full-size steps only (warm-up already left out); when a
    frozen-body phase came first only the unfrozen steps count (timing.unfrozen_steps).
    """
    steps, wait_list, phase_list = list(step_times), list(waits), list(phases)
    if not steps:
        return
    chosen = unfrozen_steps(list(step_frozen), warmup)
    if chosen is not None:
        keep, n_frozen, rewarm = chosen
        frozen = [t for t, f in zip(steps, step_frozen, strict=True) if f]
        steps, wait_list = [steps[i] for i in keep], [wait_list[i] for i in keep]
        phase_list = [phase_list[i] for i in keep] if phase_list else phase_list
        result.notes.append(unfrozen_note(n_frozen, rewarm, StepStats.from_samples(frozen).median))
    from batchscope.core.precision import median_precision

    n = len(steps)
    result.measured_steps = n
    result.step_times_s = steps
    result.step_time_s = StepStats.from_samples(steps)
    result.precision_reached = median_precision(steps).relative_half_width
    result.data_wait_s = StepStats.from_samples(wait_list)
    result.samples_per_s = batch_size / result.step_time_s.median
    stamp_token_rates(result)  # a sequence workload's tokens/s, from the same median
    total, wait = math.fsum(steps), math.fsum(wait_list)
    result.data_wait_fraction = wait / total if total > 0 else 0.0
    split_s = {"data_wait": wait / n}
    if phase_list:
        for i, name in enumerate(PHASES):
            split_s[name] = math.fsum(p[i] for p in phase_list) / n
    else:
        split_s["compute"] = (total - wait) / n
    result.time_split_s = split_s
    result.time_split = {k: v * n / total for k, v in split_s.items()} if total > 0 else {}
    if result.data_wait_fraction > INPUT_BOUND_FRACTION:
        result.diagnosis.append(
            f"input-bound: {result.data_wait_fraction:.0%} of each step waits for data "
            f"(over {INPUT_BOUND_FRACTION:.0%}); try {cures}"
        )
