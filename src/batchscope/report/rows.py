"""The table every report shows, as plain rows, so terminal and Markdown agree."""

from __future__ import annotations

from dataclasses import dataclass

from batchscope.analyse.speedup import best_throughput, ok_trials, relative_performance
from batchscope.core.results import RunResult, TrialResult
from batchscope.units import format_bytes, format_seconds, format_with_spread


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
    if run.is_protocol:
        return "Time (protocol)"
    return "Epoch time (est.)"


def headers(run: RunResult) -> list[str]:
    return [c.format(time=time_label(run)) for c in COLUMNS]


def _time(run: RunResult, t: TrialResult) -> str:
    if not t.ok:
        return "–"
    if run.is_protocol:
        return format_seconds(t.total_time_s)
    if t.samples_per_s and t.samples_per_epoch:
        return format_seconds(t.samples_per_epoch / t.samples_per_s)
    return "–"


def _step_time(t: TrialResult) -> str:
    s = t.step_time_s
    if s is None:
        return "–"
    if s.median >= 1:
        return f"{format_with_spread(s.median, s.iqr)} s (n={s.n})"
    return f"{format_with_spread(s.median, s.iqr, 1e3)} ms (n={s.n})"


def protocol_rate(t: TrialResult) -> float | None:
    """Samples trained per second of the whole ``--epochs`` protocol (validation included).

    Seed 003's relative performance compares training times; per sample, so a
    dropped last batch does not flatter a batch size.
    """
    if not t.ok or not t.total_time_s or not t.samples_trained:
        return None
    return t.samples_trained / t.total_time_s


def trial_row(
    run: RunResult, t: TrialResult, best: float | None, protocol_best: float | None = None
) -> Row:
    rel = relative_performance(t, best)
    if protocol_best:  # an --epochs protocol: relative to the fastest protocol, as seed 003
        rate = protocol_rate(t)
        rel = rate / protocol_best if rate else None
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
    """One row per trial of ``device``, ascending batch size.

    With repeats (any trial with ``repeat > 0``), one row per batch size instead,
    the repeats merged (see :func:`merged_rows`).
    """
    if any(t.repeat > 0 for t in run.trials if t.device == device):
        return merged_rows(run, device)
    best = best_throughput(ok_trials(run, device))
    trials = sorted(
        (t for t in run.trials if t.device == device), key=lambda t: (t.batch_size, t.repeat)
    )
    protocol_best = None
    if run.is_protocol:
        protocol_best = max((r for t in trials if (r := protocol_rate(t))), default=None)
    return [trial_row(run, t, best, protocol_best) for t in trials]


def merged_rows(run: RunResult, device: str) -> list[Row]:
    """One row per batch size, repeats merged (median of the repeats' medians).

    Step time: the merged median ± the median of the repeats' IQRs, with n as
    repeats × steps; samples/s: the merged figure with its range across repeats in
    brackets. A batch size where no repeat finished shows its first failure.
    """
    from batchscope.analyse.stats import median, merge_repeats

    by_size: dict[int, list[TrialResult]] = {}
    for t in run.trials:
        if t.device == device:
            by_size.setdefault(t.batch_size, []).append(t)
    merged = {}
    for b, trials in by_size.items():
        good = [t for t in trials if t.ok and t.step_time_s is not None]
        if good:
            merged[b] = merge_repeats(good)
    best = max((b / m.median_s for b, m in merged.items() if m.median_s > 0), default=None)
    rows = []
    for b in sorted(by_size):
        trials = sorted(by_size[b], key=lambda t: t.repeat)
        bad = [t for t in trials if not t.ok]
        if b not in merged:
            row = trial_row(run, bad[0] if bad else trials[0], None)
            row.batch_size = str(b)
            if len(trials) > 1:
                row.status += f" ({len(bad)} of {len(trials)} repeats failed)"
            rows.append(row)
            continue
        m = merged[b]
        good = [t for t in trials if t.ok and t.step_time_s is not None]
        rate = b / m.median_s if m.median_s > 0 else None
        if run.is_protocol:
            totals = [t.total_time_s for t in good if t.total_time_s is not None]
            time = format_seconds(median(totals)) if totals else "–"
        elif rate and good[0].samples_per_epoch:
            time = format_seconds(good[0].samples_per_epoch / rate)
        else:
            time = "–"
        # n: steps per repeat, "3×20" (the spread across repeats is the samples/s range)
        ns = [t.step_time_s.n for t in good if t.step_time_s is not None]
        count = (
            f"{len(ns)}×{ns[0]}" if len(set(ns)) == 1 and len(ns) > 1 else "+".join(map(str, ns))
        )
        step = f"{format_with_spread(m.median_s, m.within_iqr_s, 1e3)} ms (n={count})"
        rates = f"{rate:,.1f}" if rate else "–"
        if rate and m.n_repeats > 1:
            rates += f" ({b / max(m.medians_s):,.1f}–{b / min(m.medians_s):,.1f})"
        peaks = [t.peak_memory_bytes for t in good if t.peak_memory_bytes is not None]
        status = "ok"
        if bad:
            what = ", ".join(sorted({t.status for t in bad}))
            status = f"ok in {len(good)} of {len(trials)} repeats ({what})"
        rows.append(
            Row(
                batch_size=str(b),
                time=time,
                step_time=step,
                samples_per_s=rates,
                relative=f"{rate / best:.1%}" if rate and best else "–",
                samples_per_epoch=str(good[0].samples_per_epoch)
                if good[0].samples_per_epoch is not None
                else "–",
                memory=format_bytes(max(peaks)) if peaks else "–",
                status=status,
            )
        )
    return rows
