"""The table every report shows, as plain rows, so terminal, Markdown and HTML agree.

One row per batch size of a series, its rounds combined: every figure comes from the
analysis' points (:mod:`batchscope.analyse.points`), so the table, the plots and the
recommendation show the same numbers. Columns:

* **Step time** — the median step time with its 95 % interval; **n** the measured
  steps (``3×20``: three rounds of 20);
* **Samples/s** — samples per step ÷ the median step time, with its interval;
* **Relative** — samples/s as a share of the series' fastest (the point figures);
* **Time** — with ``--epochs`` the measured protocol (median over rounds); with
  steps the estimated epoch, ``samples_per_epoch / samples/s``;
* **Samples/epoch**, **Peak memory** (the largest over rounds) and **Status**, one word;
* **Tokens/step** and **Tokens/s** — only for a sequence workload (``gpt``, ``--seq-lens``):
  effective batch × sequence length, and that ÷ the median step time with its interval
  (the points' figures); the compact table then shows tokens/s instead of samples/s, and
  the peak memory stands beside the tokens per batch it was measured at;
* **MFU** — only in a run with a measured device peak: the model FLOPs utilisation,
  achieved FLOP/s (counted FLOPs per sample × samples/s) over the device's measured
  matmul peak, with its interval (:mod:`batchscope.analyse.efficiency`).

The terminal shows a compact table below 120 columns (batch, step time, n, samples/s,
relative, peak memory, status: it fits 80 columns) and the full one from 120 or with
``--wide``; reports always show the full one. MFU is a column of the full table only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from batchscope.analyse.efficiency import format_mfu
from batchscope.core.results import RunResult, TrialResult
from batchscope.report.wording import (
    fmt_rate,
    samples_per_s,
    step_time,
    steps_count,
    tokens_per_s,
)
from batchscope.units import format_bytes, format_seconds

if TYPE_CHECKING:
    from batchscope.analyse.explain import DeviceAnalysis


@dataclass
class Row:
    batch_size: str
    #: the median step time and its 95 % interval
    step_time: str
    #: measured steps: "20", or "3×20" for three rounds of 20
    n: str
    samples_per_s: str
    relative: str
    time: str
    samples_per_epoch: str
    memory: str
    status: str
    #: samples/s without its interval (the compact table's column)
    samples_per_s_value: str = "–"
    #: the MFU with its interval ("41 % [38–44]"), and whether the table has the column
    mfu: str = "–"
    show_mfu: bool = False
    #: a sequence workload's tokens per step and tokens/s (with and without its interval)
    tokens_per_step: str = "–"
    tokens_per_s: str = "–"
    tokens_per_s_value: str = "–"
    show_tokens: bool = False

    def cells(self, wide: bool = True) -> list[str]:
        """The row's cells for the full table (reports, ``--wide``) or the compact one."""
        return [getattr(self, field) for _, field in columns(wide, self.show_mfu, self.show_tokens)]


#: (header, Row field) of the full table; {time} is the protocol's or the estimated epoch's
WIDE = (
    ("Batch size", "batch_size"),
    ("Step time [95 % CI]", "step_time"),
    ("n", "n"),
    ("Samples/s [95 % CI]", "samples_per_s"),
    ("Relative", "relative"),
    ("{time}", "time"),
    ("Samples/epoch", "samples_per_epoch"),
    ("Peak memory", "memory"),
    ("Status", "status"),
)
#: the table that fits an 80-column terminal
COMPACT = (
    ("Batch", "batch_size"),
    ("Step time [95% CI]", "step_time"),
    ("n", "n"),
    ("Samples/s", "samples_per_s_value"),
    ("Rel.", "relative"),
    ("Peak mem", "memory"),
    ("Status", "status"),
)
#: the full table's MFU column, after "Relative", in a run with a measured peak
MFU_COLUMN = ("MFU [95 % CI]", "mfu")
#: the terminal table is the full one from this width on
WIDE_FROM_COLUMNS = 120


#: a sequence workload's columns: tokens per step after the batch size, tokens/s after samples/s
TOKENS_STEP_COLUMN = ("Tokens/step", "tokens_per_step")
TOKENS_COLUMN = ("Tokens/s [95 % CI]", "tokens_per_s")
COMPACT_TOKENS_COLUMN = ("Tokens/s", "tokens_per_s_value")


def _after(
    cols: tuple[tuple[str, str], ...], field: str, *new: tuple[str, str]
) -> tuple[tuple[str, str], ...]:
    at = [f for _, f in cols].index(field) + 1
    return (*cols[:at], *new, *cols[at:])


def columns(
    wide: bool = True, mfu: bool = False, tokens: bool = False
) -> tuple[tuple[str, str], ...]:
    """(header, Row field) of the full or compact table; ``mfu`` adds the MFU column
    to the full one; ``tokens`` (a sequence workload) adds tokens per step and tokens/s,
    in the compact table tokens/s instead of samples/s."""
    if not wide:
        if not tokens:
            return COMPACT
        return tuple(
            COMPACT_TOKENS_COLUMN if f == "samples_per_s_value" else (h, f) for h, f in COMPACT
        )
    cols: tuple[tuple[str, str], ...] = WIDE
    if tokens:
        cols = _after(cols, "batch_size", TOKENS_STEP_COLUMN)
        cols = _after(cols, "samples_per_s", TOKENS_COLUMN)
    if mfu:
        cols = _after(cols, "relative", MFU_COLUMN)
    return cols


def has_mfu(run: RunResult) -> bool:
    """Whether any trial of the run has an MFU (a FLOP count and a measured peak)."""
    return any(t.mfu is not None for t in run.trials)


def time_label(run: RunResult) -> str:
    """Epoch protocols show their measured wall time; step runs an estimated epoch."""
    if run.is_protocol:
        return "Time (protocol)"
    return "Epoch time (est.)"


def has_tokens(run: RunResult) -> bool:
    """Whether the run's workload has a sequence (its trials count tokens)."""
    return any(t.tokens_per_step for t in run.trials)


def headers(run: RunResult, wide: bool = True) -> list[str]:
    return [h.format(time=time_label(run)) for h, _ in columns(wide, has_mfu(run), has_tokens(run))]


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
    show_mfu, show_tokens = has_mfu(run), has_tokens(run)
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
                    n="–",
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
                    show_mfu=show_mfu,
                    tokens_per_step=f"{first.tokens_per_step:,}" if first.tokens_per_step else "–",
                    show_tokens=show_tokens,
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
        e = analysis.point_efficiency(b)
        rows.append(
            Row(
                batch_size=str(b),
                step_time=step_time(p),
                n=steps_count(p),
                samples_per_s=samples_per_s(p),
                samples_per_s_value=fmt_rate(p.samples_per_s),
                relative=f"{rel:.1%}" if rel is not None else "–",
                time=time,
                samples_per_epoch=str(p.samples_per_epoch)
                if p.samples_per_epoch is not None
                else "–",
                memory=format_bytes(p.peak_memory_bytes)
                if p.peak_memory_bytes is not None
                else "–",
                status=_status(trials),
                mfu=format_mfu(e.mfu, e.mfu_low, e.mfu_high) if e is not None else "–",
                show_mfu=show_mfu,
                tokens_per_step=f"{p.tokens_per_step:,}" if p.tokens_per_step else "–",
                tokens_per_s=tokens_per_s(p),
                tokens_per_s_value=fmt_rate(p.tokens_per_s),
                show_tokens=show_tokens,
            )
        )
    return rows
