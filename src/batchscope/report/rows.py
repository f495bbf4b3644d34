"""The table every report shows, as plain rows, so terminal and Markdown agree."""

from __future__ import annotations

from dataclasses import dataclass

from ..analysis import best_throughput, ok_trials, relative_performance
from ..results import RunResult, TrialResult
from ..units import format_bytes, format_seconds, format_with_spread


@dataclass
class Row:
    batch_size: str
    time: str
    step_time: str
    samples_per_s: str
    relative: str
    samples_per_epoch: str
    memory: str
    status: str


COLUMNS = (
    "Batch size",
    "{time}",
    "Step time (median ± IQR)",
    "Samples/s",
    "Relative performance",
    "Samples/epoch",
    "Peak memory",
    "Status",
)


def time_label(run: RunResult) -> str:
    """Epoch protocols show their measured wall time; step runs an estimated epoch."""
    if run.settings.get("epochs") is not None:
        return "Time (protocol)"
    return "Epoch time (est.)"


def headers(run: RunResult) -> list[str]:
    return [c.format(time=time_label(run)) for c in COLUMNS]


def _time(run: RunResult, t: TrialResult) -> str:
    if not t.ok:
        return "–"
    if run.settings.get("epochs") is not None:
        return format_seconds(t.total_time_s)
    if t.samples_per_s and t.samples_per_epoch:
        return format_seconds(t.samples_per_epoch / t.samples_per_s)
    return "–"


def _step_time(t: TrialResult) -> str:
    s = t.step_time_s
    if s is None:
        return "–"
    return f"{format_with_spread(s.median, s.iqr, 1e3)} ms (n={s.n})"


def trial_row(run: RunResult, t: TrialResult, best: float | None) -> Row:
    rel = relative_performance(t, best)
    label = str(t.batch_size) if t.repeat == 0 else f"{t.batch_size} (repeat {t.repeat + 1})"
    status = t.status if t.ok else f"{t.status}: {t.error or ''}".rstrip(": ")
    return Row(
        batch_size=label,
        time=_time(run, t),
        step_time=_step_time(t),
        samples_per_s=f"{t.samples_per_s:,.1f}" if t.samples_per_s else "–",
        relative=f"{rel:.1%}" if rel is not None else "–",
        samples_per_epoch=str(t.samples_per_epoch) if t.samples_per_epoch is not None else "–",
        memory=format_bytes(t.peak_memory_bytes) if t.peak_memory_bytes is not None else "–",
        status=status,
    )


def device_rows(run: RunResult, device: str) -> list[Row]:
    """One row per trial of ``device``, ascending batch size."""
    best = best_throughput(ok_trials(run, device))
    trials = sorted(
        (t for t in run.trials if t.device == device), key=lambda t: (t.batch_size, t.repeat)
    )
    return [trial_row(run, t, best) for t in trials]
