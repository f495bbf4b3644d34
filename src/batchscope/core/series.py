"""Series: a device, or a device with a variant — how every report groups trials.

A variant (precision, channels-last, torch.compile, gradient accumulation, a
sequence workload's length) is a further axis of the grid. :func:`series_view`
makes each (device, variant) its own series named e.g. ``"cpu bf16"``, keyed by
the effective batch size, so analysis that groups by device never merges a bf16
trial with an fp32 one as a "repeat".
Plain data: the torch side of variants is :mod:`batchscope.engine.variants`.
"""

from __future__ import annotations

import dataclasses

from batchscope.core.results import RunResult, TrialResult
from batchscope.errors import UsageError

PRECISIONS = ("fp32", "bf16", "fp16")


def parse_precisions(text: str | list[str]) -> list[str]:
    """``"fp32,bf16"`` → ``["fp32", "bf16"]`` in the given order, without duplicates."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in items:
        name = raw.strip().lower()
        if name not in PRECISIONS:
            raise UsageError(
                f"unknown precision {raw.strip()!r}: use one or more of {', '.join(PRECISIONS)}"
            )
        if name not in out:
            out.append(name)
    if not out:
        raise UsageError(f"--precision is empty: use one or more of {', '.join(PRECISIONS)}")
    return out


def variant_label(
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    accumulate: int = 1,
    seq_len: int | None = None,
    world_size: int | None = None,
) -> str:
    """``"seq=256 bf16 channels-last compiled acc=4 2 ranks"``; empty for the default variant.

    A sequence workload's every trial names its length, so each length is a series; a
    data-parallel world size is a series of its own (``"cpu 2 ranks"``, ``"cpu 1 rank"``
    for the one-rank DDP reference), so the analysis and recommendation apply per world size.
    """
    parts = [f"seq={seq_len}"] if seq_len else []
    if precision != "fp32":
        parts.append(precision)
    if channels_last:
        parts.append("channels-last")
    if compile:
        parts.append("compiled")
    if accumulate > 1:
        parts.append(f"acc={accumulate}")
    if world_size is not None:
        parts.append(f"{world_size} rank{'s' if world_size != 1 else ''}")
    return " ".join(parts)


def trial_variant(t: TrialResult) -> str:
    return variant_label(
        t.precision, t.channels_last, t.compile, t.accumulate, t.seq_len, t.world_size
    )


def has_variants(run: RunResult) -> bool:
    return any(trial_variant(t) for t in run.trials)


def series_view(run: RunResult) -> RunResult:
    """The run as the reports group it: one "device" per (device, variant).

    A variant trial's ``device`` becomes ``"cpu bf16"`` and its ``batch_size`` the
    effective batch size (micro-batch × accumulation; a data-parallel trial's
    ``global_batch_size``, with ``flops_per_sample`` its device's share, so that
    achieved FLOP/s stay per device against one device's peak), so per-sample figures,
    fits and cross-"device" speedups (``cpu bf16`` against ``cpu``) stay right.
    The variant fields are folded in and reset, which makes the view idempotent;
    a run without variants is returned as it is. Never stored: JSON keeps the raw trials.
    """
    if not has_variants(run):
        return run
    trials = []
    for t in run.trials:
        label = trial_variant(t)
        if not label:
            trials.append(t)
            continue
        batch = t.effective_batch_size or t.batch_size * t.accumulate
        flops = t.flops_per_sample
        if t.world_size is not None:
            batch = t.global_batch_size or batch * t.world_size
            flops = None if flops is None else flops / t.world_size
        trials.append(
            dataclasses.replace(
                t,
                device=f"{t.device} {label}",
                batch_size=batch,
                precision="fp32",
                channels_last=False,
                compile=False,
                accumulate=1,
                seq_len=None,  # folded into the name; tokens_per_step keeps the tokens
                world_size=None,
                flops_per_sample=flops,
            )
        )
    return dataclasses.replace(run, trials=trials)
