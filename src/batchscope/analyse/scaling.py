"""Data-parallel scaling: each trial's efficiency against its one-rank reference, and the
figures the table, plot and verdict line read.

``scaling_efficiency`` of a trial of N ranks = its global ``samples_per_s`` ÷ (N × the
``samples_per_s`` of the one-rank trial of the same round, device and variant at the
same per-device batch (``weak`` scaling: ``--batch-sizes``) or the same global batch
(``strong``: ``--global-batch-sizes``)). The one-rank reference runs the same DDP path
(:mod:`batchscope.engine.ddp`), so the ratio measures the ranks, not a different
engine. Its 95 % interval combines the two medians' intervals conservatively (low: the
trial's slow end over the reference's fast end). A one-rank trial is its own
reference: efficiency 1 by definition, no interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from batchscope.core.results import RunResult, TrialResult


def _rates(t: TrialResult) -> tuple[float, float | None, float | None] | None:
    """Global samples/s of ``t`` and the same over its median's 95 % interval."""
    stats, batch = t.step_time_s, t.global_batch_size
    if not t.ok or stats is None or not batch or stats.median <= 0:
        return None
    low = batch / stats.median_high if stats.median_high else None
    high = batch / stats.median_low if stats.median_low else None
    return batch / stats.median, low, high


def _same_series(a: TrialResult, b: TrialResult) -> bool:
    return (a.device, a.precision, a.channels_last, a.compile, a.accumulate) == (
        b.device,
        b.precision,
        b.channels_last,
        b.compile,
        b.accumulate,
    )


def reference_for(trial: TrialResult, others: Iterable[TrialResult]) -> TrialResult | None:
    """The ok one-rank trial ``trial``'s efficiency divides by (see the module docstring)."""
    strong = trial.scaling_mode == "strong"
    for t in others:
        if t.world_size != 1 or not t.ok or t.repeat != trial.repeat or not _same_series(t, trial):
            continue
        if strong and t.global_batch_size == trial.global_batch_size:
            return t
        if not strong and t.per_device_batch_size == trial.per_device_batch_size:
            return t
    return None


def stamp_scaling(trial: TrialResult, others: Iterable[TrialResult]) -> None:
    """Set ``trial``'s ``scaling_efficiency`` (and interval) when its reference ran ok."""
    if trial.world_size is None or not trial.ok:
        return
    if trial.world_size == 1:
        trial.scaling_efficiency = 1.0
        return
    ref = reference_for(trial, others)
    mine = _rates(trial)
    theirs = _rates(ref) if ref is not None else None
    if mine is None or theirs is None:
        return
    n = trial.world_size
    trial.scaling_efficiency = mine[0] / (n * theirs[0])
    if mine[1] is not None and theirs[2] is not None:
        trial.scaling_efficiency_low = mine[1] / (n * theirs[2])
    if mine[2] is not None and theirs[1] is not None:
        trial.scaling_efficiency_high = mine[2] / (n * theirs[1])


def _geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


@dataclass
class ScalingFigure:
    """One world size of one (series, batch) line: its rounds combined."""

    #: the series without the world size ("cpu", "cpu bf16")
    series: str
    world_size: int
    #: per-device batch (weak) or global batch (strong): what the line holds fixed
    batch_size: int
    scaling_mode: str
    samples_per_s: float
    #: samples_per_s ÷ the one-rank samples_per_s (None when the reference failed)
    speedup: float | None
    efficiency: float | None
    efficiency_low: float | None
    efficiency_high: float | None
    #: median of the rounds' determined comm_fraction; None: not determined
    comm_fraction: float | None
    comm_fraction_high: float | None = None
    rounds: int = 1
    notes: list[str] = field(default_factory=list)


def scaling_figures(run: RunResult) -> list[ScalingFigure]:
    """Every data-parallel (series, batch, world size) of ``run``, ordered for plotting.

    Rounds combine by geometric mean (throughput, efficiency); an efficiency interval is
    the widest of the rounds' (conservative). Empty for a run without ``--world-sizes``.
    """
    from batchscope.core.series import variant_label

    groups: dict[tuple[str, int, int, str], list[TrialResult]] = {}
    for t in run.trials:
        if t.world_size is None or not t.ok or _rates(t) is None:
            continue
        series = " ".join(
            p
            for p in (
                t.device,
                variant_label(t.precision, t.channels_last, t.compile, t.accumulate),
            )
            if p
        )
        mode = t.scaling_mode or "weak"
        fixed = (t.global_batch_size if mode == "strong" else t.per_device_batch_size) or 0
        groups.setdefault((series, fixed, t.world_size, mode), []).append(t)
    out: list[ScalingFigure] = []
    for (series, fixed, world, mode), trials in sorted(groups.items()):
        rates = [r[0] for t in trials if (r := _rates(t))]
        sps = _geomean(rates)
        effs = [t.scaling_efficiency for t in trials if t.scaling_efficiency]
        lows = [t.scaling_efficiency_low for t in trials if t.scaling_efficiency_low is not None]
        highs = [t.scaling_efficiency_high for t in trials if t.scaling_efficiency_high]
        comm = sorted(t.comm_fraction for t in trials if t.comm_fraction is not None)
        comm_high = [t.comm_fraction_high for t in trials if t.comm_fraction_high is not None]
        eff = _geomean(effs) if effs else None
        out.append(
            ScalingFigure(
                series=series,
                world_size=world,
                batch_size=fixed,
                scaling_mode=mode,
                samples_per_s=sps,
                speedup=None if eff is None else eff * world,
                efficiency=eff,
                efficiency_low=min(lows) if lows and world > 1 else None,
                efficiency_high=max(highs) if highs and world > 1 else None,
                comm_fraction=comm[len(comm) // 2] if comm else None,
                comm_fraction_high=max(comm_high) if comm_high else None,
                rounds=len(trials),
            )
        )
    return out


def world_sizes_run(run: RunResult) -> list[int]:
    """The world sizes of ``run``'s trials (empty when none ran data parallel)."""
    return sorted({t.world_size for t in run.trials if t.world_size is not None})


def headline(figures: Sequence[ScalingFigure]) -> list[ScalingFigure]:
    """Per series and batch, the largest world size with an efficiency: the verdict's line."""
    best: dict[tuple[str, int], ScalingFigure] = {}
    for f in figures:
        if f.world_size < 2 or f.efficiency is None:
            continue
        key = (f.series, f.batch_size)
        if key not in best or f.world_size > best[key].world_size:
            best[key] = f
    return [best[k] for k in sorted(best)]
