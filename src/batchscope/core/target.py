"""Time-to-target: parse ``--target METRIC=VALUE`` and find when a trial reached it.

Why: the fastest batch size per sample is not the one that reaches a useful model
soonest, since large batches often need more epochs. With ``--epochs``, every trial
validates after each epoch; this module reads those records and says at which epoch,
after how much wall time and how many trained samples the target was first met.

``time_s`` is the protocol's wall time until the end of that epoch's validation: the
sum of the epoch times up to it (each epoch's time includes its validation; warm-up
and set-up are not part of it). A metric the workload does not report is not an
error that stops the sweep: the trial records ``"reported": false`` with a note, and
the recommendation says no batch size reached the target.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchscope.errors import UsageError

if TYPE_CHECKING:
    from batchscope.core.results import EpochRecord, TrialResult

_TARGET_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*=\s*(\S+)\s*$")

#: suffixes of metrics where lower is better ("reached" means ≤ VALUE)
LOWER_IS_BETTER_SUFFIXES = ("loss", "error", "error_rate")


@dataclass(frozen=True)
class Target:
    """A validation metric and the value that counts as good enough."""

    metric: str
    value: float

    @property
    def lower_is_better(self) -> bool:
        return is_loss_like(self.metric)

    @property
    def text(self) -> str:
        """``accuracy ≥ 0.95`` / ``val_loss ≤ 0.1``."""
        return f"{self.metric} {'≤' if self.lower_is_better else '≥'} {self.value:g}"

    def met_by(self, value: float) -> bool:
        return value <= self.value if self.lower_is_better else value >= self.value


def is_loss_like(metric: str) -> bool:
    """``val_loss`` and names ending in loss/error/error_rate: lower is better."""
    name = metric.lower()
    return name == "val_loss" or name.endswith(LOWER_IS_BETTER_SUFFIXES)


def parse_target(text: str) -> Target:
    """``"accuracy=0.95"`` → :class:`Target`; anything else is a one-line UsageError."""
    match = _TARGET_RE.match(text or "")
    if match is None:
        raise UsageError(
            f"--target {text!r} is not METRIC=VALUE: use e.g. accuracy=0.95, "
            "error_rate=0.05 or val_loss=0.2"
        )
    metric, raw = match.groups()
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(
            f"--target {text!r}: {raw!r} is not a number: use e.g. accuracy=0.95"
        ) from None
    if not math.isfinite(value):
        raise UsageError(f"--target {text!r}: the value must be a finite number")
    return Target(metric, value)


def _metric_value(record: EpochRecord, metric: str) -> float | None:
    if metric == "val_loss":
        return record.val_loss
    value = record.metrics.get(metric)
    return None if value is None else float(value)


def evaluate_target(target: Target, epochs: Sequence[EpochRecord]) -> dict[str, Any]:
    """The trial's ``target`` record: when (epoch, wall time, samples) it was first met."""
    out: dict[str, Any] = {
        "metric": target.metric,
        "value": target.value,
        "lower_is_better": target.lower_is_better,
        "reached": False,
        "epoch": None,
        "time_s": None,
        "samples": None,
        "reported": False,
        "best": None,
    }
    elapsed = 0.0
    samples = 0
    best: float | None = None
    for record in epochs:
        elapsed += record.time_s
        samples += record.samples
        value = _metric_value(record, target.metric)
        if value is None or math.isnan(value):
            continue
        out["reported"] = True
        if best is None or (value < best if target.lower_is_better else value > best):
            best = value
        if target.met_by(value):
            out.update(reached=True, epoch=record.epoch, time_s=elapsed, samples=samples)
            break
    out["best"] = best
    return out


def apply_target(result: TrialResult, text: str | None) -> None:
    """Record ``text``'s target on ``result`` (engine hook; a no-op without a target)."""
    if not text:
        return
    target = parse_target(text)
    result.target = evaluate_target(target, result.epochs)
    if result.epochs and not result.target["reported"]:
        names = ["val_loss"] if any(e.val_loss is not None for e in result.epochs) else []
        names += sorted({k for e in result.epochs for k in e.metrics})
        have = ", ".join(names) if names else "none (no validation set)"
        result.notes.append(
            f"--target metric {target.metric!r} is not reported by this workload "
            f"(it reports: {have})"
        )


# ---------------------------------------------------------------- across trials


@dataclass
class TargetChoice:
    """The batch size that reached the target soonest, and how the others did."""

    batch_size: int
    reason: str


def soonest_to_target(trials: Sequence[TrialResult]) -> TargetChoice | None:
    """The batch size with the smallest median time-to-target.

    Only sizes that reached the target in every repeat compete; when none did, the
    sizes that reached it in the most repeats do, and the reason says how many.
    None when no trial recorded a target or none reached it.
    """
    by_size: dict[int, list[dict[str, Any]]] = {}
    for t in trials:
        if t.ok and t.target:
            by_size.setdefault(t.batch_size, []).append(t.target)
    if not by_size:
        return None
    counts = {b: sum(1 for r in recs if r["reached"]) for b, recs in by_size.items()}
    best_count = max(counts.values())
    if best_count == 0:
        return None
    full = [b for b, recs in by_size.items() if counts[b] == len(recs)]
    pool = full or [b for b in by_size if counts[b] == best_count]

    def median_time(b: int) -> float:
        return statistics.median(r["time_s"] for r in by_size[b] if r["reached"])

    best = min(pool, key=lambda b: (median_time(b), b))
    recs = [r for r in by_size[best] if r["reached"]]
    first = recs[0]
    what = f"{first['metric']} {'≤' if first['lower_is_better'] else '≥'} {first['value']:g}"
    epochs = statistics.median(r["epoch"] for r in recs)
    samples = statistics.median(r["samples"] for r in recs)
    reason = (
        f"{what} after a median {median_time(best):.3g} s of training "
        f"(epoch {epochs:g}, {samples:,.0f} samples), the soonest; reached in {counts[best]} "
        f"of {len(by_size[best])} repeat(s)"
    )
    others = [b for b in sorted(by_size) if b != best and counts[b] < len(by_size[b])]
    if not full:
        reason += "; no batch size reached it in every repeat"
    elif others:
        reason += "; not reached in every repeat: " + ", ".join(
            f"b={b} ({counts[b]}/{len(by_size[b])})" for b in others
        )
    return TargetChoice(best, reason)


@dataclass
class QualityPoint:
    """One batch size's validation metric: per repeat, over the epochs of training."""

    batch_size: int
    #: per repeat: (cumulative wall time s, metric value) after each epoch
    curves: list[list[tuple[float, float]]] = field(default_factory=list)

    @property
    def final_values(self) -> list[float]:
        return [c[-1][1] for c in self.curves if c]


@dataclass
class Quality:
    """What the report plots: one validation metric against batch size and wall time."""

    metric: str
    lower_is_better: bool
    points: list[QualityPoint]
    target: float | None = None


def quality(trials: Sequence[TrialResult]) -> Quality | None:
    """The metric to plot (the target's, else the workload's first, else val_loss).

    None when no trial recorded epochs with a validation result.
    """
    ok = [t for t in trials if t.ok and t.epochs]
    if not ok:
        return None
    metric: str | None = None
    target_value: float | None = None
    for t in ok:
        if t.target and t.target.get("reported"):
            metric, target_value = t.target["metric"], float(t.target["value"])
            break
    if metric is None:
        names = [k for t in ok for e in t.epochs for k in e.metrics]
        if names:
            metric = names[0]
        elif any(e.val_loss is not None for t in ok for e in t.epochs):
            metric = "val_loss"
        else:
            return None
    by_size: dict[int, QualityPoint] = {}
    for t in sorted(ok, key=lambda t: (t.batch_size, t.repeat)):
        curve: list[tuple[float, float]] = []
        elapsed = 0.0
        for e in t.epochs:
            elapsed += e.time_s
            value = _metric_value(e, metric)
            if value is not None and math.isfinite(value):
                curve.append((elapsed, value))
        if curve:
            by_size.setdefault(t.batch_size, QualityPoint(t.batch_size)).curves.append(curve)
    if not by_size:
        return None
    return Quality(
        metric=metric,
        lower_is_better=is_loss_like(metric),
        points=[by_size[b] for b in sorted(by_size)],
        target=target_value,
    )
