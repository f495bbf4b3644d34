"""The table every report shows, as plain rows, so terminal, Markdown and HTML agree.

One row per batch size of a series, its rounds combined: every figure comes from the
analysis' points (:mod:`batchscope.analyse.points`), so the table, the plots and the
recommendation show the same numbers. Columns:

* **Step time** — the median step time with its 95 % interval and the measured steps
  (``3×20``: three rounds of 20);
* **Samples/s** — samples per step ÷ the median step time, with its interval;
* **Relative** — samples/s as a share of the series' fastest (the point figures);
* **Time** — with ``--epochs`` the measured protocol (median over rounds); with
  steps the estimated epoch, ``samples_per_epoch / samples/s``;
* **Samples/epoch**, **Peak memory** (the largest over rounds) and **Status**, one word.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from batchscope.core.results import RunResult, TrialResult
from batchscope.report.wording import samples_per_s, step_time, steps_count
from batchscope.units import format_bytes, format_seconds

if TYPE_CHECKING:
    from batchscope.analyse.explain import DeviceAnalysis


@dataclass
class Row:
    batch_size: str
    step_time: str
    samples_per_s: str
    relative: str
    time: str
    samples_per_epoch: str
    memory: str
    status: str


COLUMNS = (
    "Batch size",
    "Step time [95 % CI] (n)",
    "Samples/s [95 % CI]",
    "Relative",
    "{time}",
    "Samples/epoch",
    "Peak memory",
    "Status",
)


def time_label(run: RunResult) -> str:
    """Epoch protocols show their measured wall time; step runs an estimated epoch."""
    if run.is_protocol:
        return "Time (protocol)"
    return "Epoch time (est.)"


def headers(run: RunResult) -> list[str]:
    return [c.format(time=time_label(run)) for c in COLUMNS]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


def _status(trials: list[TrialResult]) -> str:
    bad = [t for t in trials if not t.ok]
    if not bad:
        return "ok"
    statuses = sorted({t.status for t in bad})
    if len(bad) == len(trials):
        return "/".join(statuses)
    return f"ok {len(trials) - len(bad)}/{len(trials)}"


def device_rows(run: RunResult, device: str, analysis: DeviceAnalysis | None = None) -> list[Row]:
    """One row per batch size of ``device`` (a series of the run's series view)."""
    if analysis is None:
        from batchscope.analyse.explain import analyse_device

        analysis = analyse_device(run, device)
    by_size: dict[int, list[TrialResult]] = {}
    for t in run.trials:
        if t.device == device:
            by_size.setdefault(t.batch_size, []).append(t)
    rows = []
    for b in sorted(by_size):
        trials = sorted(by_size[b], key=lambda t: t.repeat)
        p = analysis.point(b)
        if p is None:
            first = trials[0]
            rows.append(
                Row(
                    batch_size=str(b),
                    step_time="–",
                    samples_per_s="–",
                    relative="–",
                    time=format_seconds(first.total_time_s)
                    if first.ok and first.total_time_s
                    else "–",
                    samples_per_epoch=str(first.samples_per_epoch)
                    if first.samples_per_epoch is not None
                    else "–",
                    memory=format_bytes(first.peak_memory_bytes)
                    if first.peak_memory_bytes is not None
                    else "–",
                    status=_status(trials) if not all(t.ok for t in trials) else "no steps",
                )
            )
            continue
        good = [t for t in trials if t.ok and t.step_time_s is not None]
        if run.is_protocol:
            totals = [t.total_time_s for t in good if t.total_time_s is not None]
            time = format_seconds(_median(totals)) if totals else "–"
        elif p.samples_per_epoch:
            time = format_seconds(p.samples_per_epoch / p.samples_per_s)
        else:
            time = "–"
        rel = analysis.relative(b)
        rows.append(
            Row(
                batch_size=str(b),
                step_time=f"{step_time(p)} ({steps_count(p)})",
                samples_per_s=samples_per_s(p),
                relative=f"{rel:.1%}" if rel is not None else "–",
                time=time,
                samples_per_epoch=str(p.samples_per_epoch)
                if p.samples_per_epoch is not None
                else "–",
                memory=format_bytes(p.peak_memory_bytes)
                if p.peak_memory_bytes is not None
                else "–",
                status=_status(trials),
            )
        )
    return rows
