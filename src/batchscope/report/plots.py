"""The report's figures, as PNG bytes: time per sample, throughput, memory, MFU, relative bars.

Every figure plots one line (one colour) per device over a log2 batch-size axis whose
ticks are the batch sizes measured; measurements carry their error bars, fits are
dashed, failed batch sizes are an × on the axis with their status.

matplotlib is imported here only, lazily (``import batchscope`` never loads it), and
through its object API with the Agg canvas, so no global state (``pyplot``, the
backend, rcParams) is touched. The PNGs are deterministic: the same analysis gives
the same bytes (no software/date metadata is written).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchscope.analyse.explain import NO_STEP_TIMES
from batchscope.report.wording import INTERVAL_NAME
from batchscope.units import format_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from batchscope.analyse.explain import DeviceAnalysis, RunAnalysis

#: Figure size (inches) and resolution: 880 × 550 pixels.
FIGSIZE = (8.0, 5.0)
DPI = 110

#: Okabe–Ito, a palette that colour-blind readers can tell apart; one colour per device.
PALETTE = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#000000",
    "#F0E442",
)


@dataclass(frozen=True)
class PlotSpec:
    """One figure of the report: its file stem, its title (alt text), its maker, and the
    caption under it, which says what is drawn and what the bars mean (not the title again)."""

    name: str
    title: str
    render: Callable[..., bytes | None]
    caption: str = ""

    @property
    def filename(self) -> str:
        return f"{self.name}.png"


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _safe(text: object) -> str:
    """User text for matplotlib: a ``$`` would start mathtext (and could raise)."""
    return str(text).replace("$", r"\$")


def _new_figure() -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    ax = fig.add_subplot()
    ax.grid(True, which="major", alpha=0.3)
    ax.set_axisbelow(True)
    return fig, ax


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _all_sizes(devices: Sequence[DeviceAnalysis]) -> list[int]:
    sizes: set[int] = set()
    for d in devices:
        sizes.update(p.batch_size for p in d.points)
        sizes.update(int(b) for b in d.failed)
    return sorted(sizes)


def _log2_axis(ax: Axes, sizes: Sequence[int]) -> None:
    """Log2 x axis whose ticks are exactly the batch sizes, labelled as integers."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xscale("log", base=2)
    if sizes:
        ax.set_xlim(min(sizes) / 1.35, max(sizes) * 1.35)
        ax.xaxis.set_major_locator(FixedLocator(list(sizes)))
        ax.set_xticklabels([str(s) for s in sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("Batch size (samples per step, log₂ scale)")


def _use_log_y(values: Sequence[float]) -> bool:
    """Log scale when the values span more than 20× (e.g. a CPU and a GPU together)."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return len(positive) > 1 and max(positive) / min(positive) > 20


def _log_y(ax: Axes) -> None:
    """Log y axis with plain-number labels (0.2, 0.5, 1, 2, 5 ...), not 2×10⁻¹."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.6g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _bar(length: float) -> float:
    """An error-bar length: an unknown (NaN) or unbounded (inf) end is not drawn."""
    return length if math.isfinite(length) and length > 0 else 0.0


def _time_unit(values: Sequence[float]) -> tuple[float, str]:
    top = max((v for v in values if math.isfinite(v)), default=1.0)
    if top < 1e-3:
        return 1e6, "µs"
    if top < 1:
        return 1e3, "ms"
    return 1.0, "s"


def _mark_failures(ax: Axes, devices: Sequence[DeviceAnalysis]) -> bool:
    """An × on the x axis at every failed batch size, with its status above it."""
    from matplotlib.transforms import blended_transform_factory

    trans = blended_transform_factory(ax.transData, ax.transAxes)
    any_failed = False
    for i, d in enumerate(devices):
        for b, status in sorted(d.failed.items()):
            any_failed = True
            ax.plot(
                [b],
                [0.0],
                marker="x",
                markersize=11,
                markeredgewidth=2.5,
                color=_color(i),
                transform=trans,
                clip_on=False,
                zorder=5,
                linestyle="none",
            )
            ax.text(
                b,
                0.035 + 0.05 * i,
                _safe("batch > data" if status == NO_STEP_TIMES else status),
                transform=trans,
                ha="center",
                va="bottom",
                fontsize=8.5,
                color=_color(i),
                fontweight="bold",
            )
    return any_failed


def _failure_handle() -> Any:
    from matplotlib.lines import Line2D

    return Line2D(
        [],
        [],
        marker="x",
        markersize=9,
        markeredgewidth=2.5,
        color="#555555",
        linestyle="none",
        label="batch size without step times (why)",
    )


def _legend(ax: Axes, handles: list[Any], failed: bool) -> None:
    """The legend in the order the artists were drawn: per device, measured then fit."""
    handles = list(handles)
    if failed:
        handles.append(_failure_handle())
    if handles:
        ax.legend(handles=handles, loc="best", fontsize=8.5, framealpha=0.9)


def _fit_grid(sizes: Sequence[int]) -> Any:
    import numpy as np

    return np.geomspace(min(sizes), max(sizes), 200)


def _empty(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color="#777777")


def _title(what: str, workload: str | None) -> str:
    return f"{what} — {_safe(workload)}" if workload else what


# ---------------------------------------------------------------- (a) time per sample


def _curve_values(fit: Any, grid: Any, scale: float = 1.0) -> list[float]:
    """The fitted curve on ``grid``, point by point (scalar ``predict`` suffices)."""
    return [float(fit.predict(float(b))) * scale for b in grid]


def _error_bars(
    values: Sequence[float], lows: Sequence[float | None], highs: Sequence[float | None]
) -> list[list[float]]:
    """Asymmetric bar lengths; a point without an interval gets none."""
    down = [_bar(v - lo) if lo is not None else 0.0 for v, lo in zip(values, lows, strict=True)]
    up = [_bar(hi - v) if hi is not None else 0.0 for v, hi in zip(values, highs, strict=True)]
    return [down, up]


def _measured(
    ax: Axes,
    xs: list[int],
    ys: list[float],
    bars: list[list[float]],
    judged: list[bool],
    i: int,
    label: str,
) -> Any:
    """The measured points with their 95 % intervals; points without one drawn hollow."""
    handle = ax.errorbar(
        xs,
        ys,
        yerr=bars,
        marker="o",
        markersize=6,
        capsize=4,
        linewidth=1.8,
        color=_color(i),
        label=label,
    )
    hollow = [(x, y) for x, y, j in zip(xs, ys, judged, strict=True) if not j]
    if hollow:
        ax.plot(
            [x for x, _ in hollow],
            [y for _, y in hollow],
            marker="o",
            markersize=9,
            markerfacecolor="white",
            markeredgecolor=_color(i),
            markeredgewidth=1.8,
            linestyle="none",
            zorder=4,
        )
    return handle


#: the legend's name for the error bars
BARS = "bars: 95 % interval of the median"


def figure_time_per_sample(analysis: RunAnalysis, *, workload: str | None = None) -> Figure:
    """Median step time ÷ batch size with its 95 % interval, and the fitted c/b^α + T_min."""
    devices = analysis.devices
    fig, ax = _new_figure()
    sizes = _all_sizes(devices)
    values = [p.time_per_sample_s for d in devices for p in d.points]
    scale, unit = _time_unit(values)
    handles: list[Any] = []
    unjudged = False
    for i, d in enumerate(devices):
        if not d.points:
            continue
        xs = [p.batch_size for p in d.points]
        ys = [p.time_per_sample_s * scale for p in d.points]
        bars = _error_bars(
            ys,
            [
                None if p.time_per_sample_low_s is None else p.time_per_sample_low_s * scale
                for p in d.points
            ],
            [
                None if p.time_per_sample_high_s is None else p.time_per_sample_high_s * scale
                for p in d.points
            ],
        )
        judged = [p.judged for p in d.points]
        unjudged = unjudged or not all(judged)
        handles.append(
            _measured(ax, xs, ys, bars, judged, i, f"{_safe(d.device)} measured ({BARS})")
        )
        fit = d.time_fit
        if fit is not None and fit.meaningful and len(xs) >= 2:
            grid = _fit_grid(xs)
            alpha = fit.params.get("alpha")
            what = f"α = {alpha.value:.2f}, " if alpha is not None and alpha.determined else ""
            quality = "" if fit.ok else " — does not fit"
            (line,) = ax.plot(
                grid,
                _curve_values(fit, grid, scale),
                linestyle="--" if fit.ok else ":",
                linewidth=1.5,
                color=_color(i),
                alpha=0.9,
                label=f"{_safe(d.device)} fit c/b^α + T_min: {what}R² = {fit.r2:.3f}{quality}",
            )
            handles.append(line)
    if unjudged:
        handles.append(_hollow_handle())
    if not values:
        _empty(ax, "no successful trials to plot")
    if _use_log_y(values):
        _log_y(ax)
    else:
        ax.set_ylim(bottom=0)
    _log2_axis(ax, sizes)
    failed = _mark_failures(ax, devices)
    ax.set_ylabel(f"Time per sample ({unit}) — lower is better")
    ax.set_title(_title("Time per sample against batch size", workload))
    _legend(ax, handles, failed)
    return fig


def _hollow_handle() -> Any:
    from matplotlib.lines import Line2D

    return Line2D(
        [],
        [],
        marker="o",
        markersize=9,
        markerfacecolor="white",
        markeredgecolor="#555555",
        linestyle="none",
        label="too few steps for an interval: not judged",
    )


# ---------------------------------------------------------------- (b) throughput


def figure_throughput(analysis: RunAnalysis, *, workload: str | None = None) -> Figure:
    """Samples per second with 95 % intervals, and the fitted saturation x_max·b/(b + b½)."""
    devices = analysis.devices
    fig, ax = _new_figure()
    sizes = _all_sizes(devices)
    values = [p.samples_per_s for d in devices for p in d.points]
    handles: list[Any] = []
    unjudged = False
    for i, d in enumerate(devices):
        if not d.points:
            continue
        xs = [p.batch_size for p in d.points]
        ys = [p.samples_per_s for p in d.points]
        bars = _error_bars(
            ys, [p.samples_per_s_low for p in d.points], [p.samples_per_s_high for p in d.points]
        )
        judged = [p.judged for p in d.points]
        unjudged = unjudged or not all(judged)
        handles.append(
            _measured(ax, xs, ys, bars, judged, i, f"{_safe(d.device)} measured ({BARS})")
        )
        fit = d.throughput_fit
        if fit is not None and fit.meaningful and len(xs) >= 2:
            grid = _fit_grid(xs)
            x_max = fit.params.get("x_max")
            b_half = fit.params.get("b_half")
            what = ""
            if x_max is not None and x_max.determined:
                what += f"x_max = {x_max.value:,.4g}/s, "
            if b_half is not None and b_half.determined:
                what += f"b½ = {b_half.value:.3g}, "
            quality = "" if fit.ok else " — does not fit"
            (line,) = ax.plot(
                grid,
                _curve_values(fit, grid),
                linestyle="--" if fit.ok else ":",
                linewidth=1.5,
                color=_color(i),
                alpha=0.9,
                label=f"{_safe(d.device)} saturation fit: {what}R² = {fit.r2:.3f}{quality}",
            )
            handles.append(line)
    if unjudged:
        handles.append(_hollow_handle())
    if not values:
        _empty(ax, "no successful trials to plot")
    if _use_log_y(values):
        _log_y(ax)
    else:
        ax.set_ylim(bottom=0)
    _log2_axis(ax, sizes)
    failed = _mark_failures(ax, devices)
    ax.set_ylabel("Throughput (samples/s) — higher is better")
    ax.set_title(_title("Training throughput against batch size", workload))
    _legend(ax, handles, failed)
    return fig


# ---------------------------------------------------------------- (c) memory


def has_memory(analysis: RunAnalysis) -> bool:
    return any(p.peak_memory_bytes is not None for d in analysis.devices for p in d.points)


def _byte_unit(top: float) -> tuple[float, str]:
    for unit, name in ((1024.0**3, "GiB"), (1024.0**2, "MiB"), (1024.0, "KiB")):
        if top >= unit:
            return unit, name
    return 1.0, "B"


def figure_memory(analysis: RunAnalysis, *, workload: str | None = None) -> Figure | None:
    """Peak memory per batch size, the fitted a + m·b line and the memory limit.

    ``None`` when no trial measured its memory (nothing to draw).
    """
    if not has_memory(analysis):
        return None
    devices = analysis.devices
    fig, ax = _new_figure()
    sizes = _all_sizes(devices)
    limits = sorted({int(d.memory_limit_bytes) for d in devices if d.memory_limit_bytes})
    peaks = [
        float(p.peak_memory_bytes)
        for d in devices
        for p in d.points
        if p.peak_memory_bytes is not None
    ]
    unit, unit_name = _byte_unit(max(peaks + [float(v) for v in limits]))
    handles: list[Any] = []
    for i, d in enumerate(devices):
        pts = [p for p in d.points if p.peak_memory_bytes is not None]
        if pts:
            (line,) = ax.plot(
                [p.batch_size for p in pts],
                [float(p.peak_memory_bytes or 0) / unit for p in pts],
                marker="o",
                markersize=6,
                linewidth=1.8,
                color=_color(i),
                label=f"{_safe(d.device)} peak memory (measured)",
            )
            handles.append(line)
        fit = d.memory_fit
        if fit is not None and fit.can_predict and sizes:
            grid = _fit_grid(sizes)  # the model reaches failed sizes too: why they failed
            (line,) = ax.plot(
                grid,
                _curve_values(fit, grid, 1.0 / unit),
                linestyle="--",
                linewidth=1.5,
                color=_color(i),
                alpha=0.9,
                label=f"{_safe(d.device)} model {format_bytes(fit.a_bytes)} "
                f"{'+' if fit.m_bytes_per_sample >= 0 else '−'} "
                f"{format_bytes(abs(fit.m_bytes_per_sample))}/sample (R² = {fit.r2:.3f}, "
                f"{fit.n} points)",
            )
            handles.append(line)
    for limit in limits:
        handles.append(
            ax.axhline(
                limit / unit,
                color="#C00000",
                linestyle="-.",
                linewidth=1.6,
                label=f"memory limit {format_bytes(limit)}",
            )
        )
    ax.set_ylim(bottom=0)
    _log2_axis(ax, sizes)
    failed = _mark_failures(ax, devices)
    ax.set_ylabel(f"Peak memory ({unit_name})")
    ax.set_title(_title("Peak memory against batch size", workload))
    _legend(ax, handles, failed)
    return fig


def figure_memory_tokens(analysis: RunAnalysis, *, workload: str | None = None) -> Figure | None:
    """A sequence workload's peak memory against tokens per batch (batch × sequence length),
    one line per series (sequence length), so lengths that hold the same tokens line up.

    ``None`` for a run without tokens or without a measured peak.
    """
    series = [
        (d, [p for p in d.points if p.peak_memory_bytes is not None and p.tokens_per_step])
        for d in analysis.devices
    ]
    series = [(d, pts) for d, pts in series if pts]
    if not series:
        return None
    fig, ax = _new_figure()
    unit, unit_name = _byte_unit(
        max(float(p.peak_memory_bytes or 0) for _, pts in series for p in pts)
    )
    handles: list[Any] = []
    for i, (d, pts) in enumerate(series):
        pts = sorted(pts, key=lambda p: p.tokens_per_step or 0)
        (line,) = ax.plot(
            [p.tokens_per_step or 0 for p in pts],
            [float(p.peak_memory_bytes or 0) / unit for p in pts],
            marker="o",
            markersize=6,
            linewidth=1.8,
            color=_color(i),
            label=f"{_safe(d.device)} peak memory (measured)",
        )
        handles.append(line)
    ax.set_ylim(bottom=0)
    tokens = sorted({p.tokens_per_step or 0 for _, pts in series for p in pts})
    _log2_axis(ax, tokens)
    ax.set_xlabel("Tokens per batch (effective batch × sequence length)")
    ax.set_ylabel(f"Peak memory ({unit_name})")
    ax.set_title(_title("Peak memory against tokens per batch", workload))
    _legend(ax, handles, False)
    return fig


def plot_memory_tokens(analysis: RunAnalysis, *, workload: str | None = None) -> bytes | None:
    """:func:`figure_memory_tokens` as PNG bytes (``None`` without tokens or memory)."""
    fig = figure_memory_tokens(analysis, workload=workload)
    return None if fig is None else _png(fig)


# ---------------------------------------------------------------- (c') MFU


def has_mfu(analysis: RunAnalysis) -> bool:
    return any(e.mfu is not None for d in analysis.devices for e in d.efficiency)


def figure_mfu(analysis: RunAnalysis, *, workload: str | None = None) -> Figure | None:
    """MFU per batch size with its interval, one line per series; ``None`` without one."""
    from batchscope.analyse.efficiency import format_mfu
    from batchscope.units import format_flops

    if not has_mfu(analysis):
        return None
    devices = analysis.devices
    fig, ax = _new_figure()
    sizes = _all_sizes(devices)
    handles: list[Any] = []
    for i, d in enumerate(devices):
        es = [e for e in d.efficiency if e.mfu is not None]
        if not es:
            continue
        ys = [100.0 * (e.mfu or 0.0) for e in es]
        lows = [None if e.mfu_low is None else 100.0 * e.mfu_low for e in es]
        highs = [None if e.mfu_high is None else 100.0 * e.mfu_high for e in es]
        judged = [e.mfu_low is not None and e.mfu_high is not None for e in es]
        peak = next(e for e in es if e.peak)
        label = f"{_safe(d.device)} (peak {format_flops(peak.peak)} {_safe(peak.peak_dtype or '')})"
        handles.append(
            _measured(
                ax, [e.batch_size for e in es], ys, _error_bars(ys, lows, highs), judged, i, label
            )
        )
        verdict = d.efficiency_verdict
        if verdict is not None:
            ax.annotate(
                _safe(format_mfu(verdict.mfu)),
                (verdict.batch_size, 100.0 * verdict.mfu),
                textcoords="offset points",
                xytext=(0, 9),
                ha="center",
                fontsize=8.5,
                color=_color(i),
            )
    ax.set_ylim(bottom=0)
    _log2_axis(ax, sizes)
    failed = _mark_failures(ax, devices)
    ax.set_ylabel("MFU (% of the measured matmul peak)")
    ax.set_title(_title("Model FLOPs utilisation against batch size", workload))
    _legend(ax, handles, failed)
    return fig


def plot_mfu(analysis: RunAnalysis, *, workload: str | None = None) -> bytes | None:
    """:func:`figure_mfu` as PNG bytes (``None`` without a measured peak)."""
    fig = figure_mfu(analysis, workload=workload)
    return None if fig is None else _png(fig)


# ---------------------------------------------------------------- (d) relative performance


def figure_relative(analysis: RunAnalysis, *, workload: str | None = None) -> Figure:
    """Seed 003's figure: each batch size's throughput as a % of its device's best."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    devices = analysis.devices
    fig, ax = _new_figure()
    ax.grid(False)
    ax.grid(True, axis="y", alpha=0.3)
    sizes = _all_sizes(devices)
    index = {b: k for k, b in enumerate(sizes)}
    k = max(1, len(devices))
    width = 0.8 / k
    handles: list[Any] = []
    any_failed = False
    highest = 100.0
    for i, d in enumerate(devices):
        offset = (i - (k - 1) / 2) * width
        best_point = d.best_point()
        handles.append(Patch(facecolor=_color(i), alpha=0.45, label=_safe(d.device)))
        for p in d.points:
            rel = d.relative(p.batch_size)
            pct = 100.0 * rel if rel is not None else 0.0
            is_best = best_point is not None and p.batch_size == best_point.batch_size
            ratio = d.ranking.ratio(p.batch_size)
            x = index[p.batch_size] + offset
            ax.bar(
                x,
                pct,
                width=width * 0.92,
                color=_color(i),
                alpha=1.0 if is_best else 0.45,
                edgecolor="black" if is_best else _color(i),
                linewidth=1.6 if is_best else 0.8,
            )
            top = pct
            if ratio is not None and not is_best:
                ax.errorbar(
                    [x],
                    [pct],
                    yerr=[[_bar(pct - 100 * ratio.low)], [_bar(100 * ratio.high - pct)]],
                    color="#333333",
                    capsize=3,
                    linewidth=1.0,
                    linestyle="none",
                )
                top = max(pct, 100 * ratio.high)
            highest = max(highest, top)
            ax.text(
                x,
                top + 1.5,
                f"{pct:.1f}%" + ("\nbest" if is_best else ""),
                ha="center",
                va="bottom",
                fontsize=8.5 if k == 1 else 7.5,
                fontweight="bold" if is_best else "normal",
            )
        for b, status in sorted(d.failed.items()):
            if int(b) not in index:
                continue
            any_failed = True
            x = index[int(b)] + offset
            ax.plot(
                [x],
                [0],
                marker="x",
                markersize=11,
                markeredgewidth=2.5,
                color=_color(i),
                clip_on=False,
                zorder=5,
                linestyle="none",
            )
            ax.text(
                x,
                3,
                _safe(status),
                ha="center",
                va="bottom",
                fontsize=8.5,
                color=_color(i),
                fontweight="bold",
            )
    if not sizes:
        _empty(ax, "no trials to plot")
    ax.axhline(95, color="#777777", linestyle=":", linewidth=1.2)
    handles.append(
        Patch(facecolor="#bbbbbb", edgecolor="black", linewidth=1.6, label="best batch size")
    )
    handles.append(Line2D([], [], color="#777777", linestyle=":", label="95 % of best"))
    handles.append(
        Line2D(
            [],
            [],
            color="#333333",
            marker="|",
            linestyle="none",
            label="95 % interval of the ratio",
        )
    )
    if any_failed:
        handles.append(_failure_handle())
    ax.set_xticks(list(range(len(sizes))))
    ax.set_xticklabels([str(s) for s in sizes])
    ax.set_xlim(-0.6, max(len(sizes), 1) - 0.4)
    ax.set_ylim(0, max(132.0, highest + 32.0))
    ax.set_yticks([0, 20, 40, 60, 80, 100])
    ax.set_xlabel("Batch size")
    ax.set_ylabel("Relative performance (% of the device's best samples/s)")
    ax.set_title(_title("Relative performance per batch size", workload))
    ax.legend(
        handles=handles,
        loc="upper center",
        ncol=len(handles),
        fontsize=8.5,
        framealpha=0.9,
        columnspacing=1.2,
        handletextpad=0.5,
    )
    return fig


def plot_time_per_sample(analysis: RunAnalysis, *, workload: str | None = None) -> bytes:
    """:func:`figure_time_per_sample` as PNG bytes."""
    return _png(figure_time_per_sample(analysis, workload=workload))


def plot_throughput(analysis: RunAnalysis, *, workload: str | None = None) -> bytes:
    """:func:`figure_throughput` as PNG bytes."""
    return _png(figure_throughput(analysis, workload=workload))


def plot_memory(analysis: RunAnalysis, *, workload: str | None = None) -> bytes | None:
    """:func:`figure_memory` as PNG bytes (``None`` when no memory was measured)."""
    fig = figure_memory(analysis, workload=workload)
    return None if fig is None else _png(fig)


def plot_relative(analysis: RunAnalysis, *, workload: str | None = None) -> bytes:
    """:func:`figure_relative` as PNG bytes."""
    return _png(figure_relative(analysis, workload=workload))


def figure_quality(analysis: RunAnalysis, *, workload: str | None = None) -> Figure | None:
    """The validation metric against batch size (final epoch) and against wall time.

    ``None`` when no device has per-epoch validation results (a --steps run). Left: the
    final value, median over repeats with min–max bars; right: one line per batch size
    and repeat over the protocol's wall time. A --target is a dashed horizontal line.
    """
    import statistics

    from matplotlib.figure import Figure

    devices = [d for d in analysis.devices if d.quality is not None]
    if not devices:
        return None
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for ax in (left, right):
        ax.grid(True, which="major", alpha=0.3)
        ax.set_axisbelow(True)
    first = devices[0].quality
    assert first is not None
    sizes = sorted({p.batch_size for d in devices if d.quality for p in d.quality.points})
    styles = ("-", "--", ":", "-.")
    cmap = _batch_colormap()
    for i, d in enumerate(devices):
        q = d.quality
        assert q is not None
        xs, mids, lo, hi = [], [], [], []
        for p in q.points:
            finals = sorted(p.final_values)
            if not finals:
                continue
            mid = statistics.median(finals)
            xs.append(p.batch_size)
            mids.append(mid)
            lo.append(mid - finals[0])
            hi.append(finals[-1] - mid)
            shade = cmap(sizes.index(p.batch_size) / max(1, len(sizes) - 1))
            name = f"b={p.batch_size}" + (f" ({_safe(d.device)})" if len(devices) > 1 else "")
            for j, curve in enumerate(p.curves):
                right.plot(
                    [t for t, _ in curve],
                    [v for _, v in curve],
                    marker="o",
                    markersize=3,
                    linewidth=1.4,
                    linestyle=styles[i % len(styles)],
                    color=shade,
                    label=name if j == 0 else None,
                )
        left.errorbar(
            xs,
            mids,
            yerr=[lo, hi],
            marker="o",
            markersize=6,
            capsize=4,
            linewidth=1.8,
            color=_color(i),
            label=f"{_safe(d.device)} final epoch (bars: min–max of repeats)",
        )
    better = "lower" if first.lower_is_better else "higher"
    for ax in (left, right):
        if first.target is not None:
            ax.axhline(
                first.target,
                color="#555555",
                linestyle="--",
                linewidth=1.2,
                label=f"target {first.target:g}",
            )
        ax.set_ylabel(f"Validation {_safe(first.metric)} — {better} is better")
    _log2_axis(left, sizes)
    left.set_title(_title(f"Validation {first.metric} by batch size", workload), fontsize=10)
    right.set_xlabel("Protocol wall time (s, after each validation)")
    right.set_title("… and over training time", fontsize=10)
    left.legend(fontsize=8, framealpha=0.9)
    right.legend(fontsize=7.5, framealpha=0.9, ncol=2)
    return fig


def _batch_colormap() -> Any:
    from matplotlib import colormaps

    return colormaps["viridis"]


def plot_quality(analysis: RunAnalysis, *, workload: str | None = None) -> bytes | None:
    """:func:`figure_quality` as PNG bytes (``None`` without per-epoch validation)."""
    fig = figure_quality(analysis, workload=workload)
    return None if fig is None else _png(fig)


#: what the caption says of points without an interval and of failed batch sizes
_HOLLOW = "hollow points: too few steps for an interval (not judged)"
_FAILED = "× on the axis: a batch size that failed (its status above it)"

#: The report's figures in display order.
PLOTS: tuple[PlotSpec, ...] = (
    PlotSpec(
        "time_per_sample",
        "Time per sample against batch size",
        plot_time_per_sample,
        "The median time per sample (step time ÷ batch size) at each batch size, one line "
        f"per series (lower is better); bars: {INTERVAL_NAME}; {_HOLLOW}; dashed: the fitted "
        f"T(b) = c/b^α + T_min (dotted where it does not fit); {_FAILED}.",
    ),
    PlotSpec(
        "throughput",
        "Throughput against batch size",
        plot_throughput,
        "Training samples per second (batch size ÷ median step time) at each batch size "
        f"(higher is better); bars: {INTERVAL_NAME}; {_HOLLOW}; dashed: the fitted saturation "
        f"curve X(b) = X_max·b/(b + b½), dotted where it does not fit; {_FAILED}.",
    ),
    PlotSpec(
        "memory",
        "Peak memory against batch size",
        plot_memory,
        "Peak memory of the trial at each batch size (the largest over rounds; one reading, "
        "so no bars); dashed: the fitted line a + m·b, drawn on to the failed sizes to show "
        f"why they failed; red dash-dot: the memory limit, when one was set; {_FAILED}.",
    ),
    PlotSpec(
        "memory_tokens",
        "Peak memory against tokens per batch",
        plot_memory_tokens,
        "A sequence workload only: the peak memory of each batch size (as in the memory "
        "figure: one reading, so no bars) against the tokens it holds, effective batch × "
        "sequence length, one line per sequence length; where a longer sequence lies above a "
        "shorter one at the same tokens, memory grows with the length itself, not only with "
        "the tokens.",
    ),
    PlotSpec(
        "mfu",
        "Model FLOPs utilisation against batch size",
        plot_mfu,
        "The model FLOPs utilisation at each batch size: the counted FLOPs of a training "
        "step (forward and backward matmuls and convolutions) per second, as a percentage of "
        "the device's matmul peak measured on this machine in the series' dtype (higher is "
        "better); bars: 95 % interval, from the step time's interval and the peak's; "
        f"{_HOLLOW}; {_FAILED}.",
    ),
    PlotSpec(
        "relative",
        "Relative performance per batch size",
        plot_relative,
        "Each batch size's samples/s as a percentage of its series' fastest (the black-edged "
        "bar, 100 %); bars: 95 % interval of the ratio to the fastest; dotted line: 95 % of "
        "the fastest; × at the bottom: a batch size that failed.",
    ),
    PlotSpec(
        "quality",
        "Validation metric against batch size and wall time",
        plot_quality,
        "Left: the validation metric after the final epoch at each batch size, median over "
        "repeats, bars: min–max of the repeats. Right: the metric after each epoch against "
        "the protocol's wall time, one line per batch size and repeat. Dashed: the --target.",
    ),
)


def render_plots(analysis: RunAnalysis, *, workload: str | None = None) -> dict[str, bytes]:
    """Every figure that has something to show, as ``{file name: PNG bytes}``, in order.

    Empty when the run has no trial at all (nothing to draw).
    """
    out: dict[str, bytes] = {}
    if not _all_sizes(analysis.devices):
        return out
    for spec in PLOTS:
        png = spec.render(analysis, workload=workload)
        if png is not None:
            out[spec.filename] = png
    return out


def plot_title(filename: str) -> str:
    """The human title of a figure from its file name (for captions and alt text)."""
    for spec in PLOTS:
        if spec.filename == filename:
            return spec.title
    from batchscope.report.scaling import SCALING_PNG, SCALING_TITLE
    from batchscope.report.timeline import HARDWARE_TITLES

    if filename == SCALING_PNG:
        return SCALING_TITLE
    return HARDWARE_TITLES.get(filename, filename)


def plot_caption(filename: str) -> str:
    """What a figure shows and what its bars are, for the text under it (never its title)."""
    for spec in PLOTS:
        if spec.filename == filename:
            return spec.caption
    from batchscope.report.scaling import SCALING_CAPTION, SCALING_PNG
    from batchscope.report.timeline import HARDWARE_CAPTIONS

    if filename == SCALING_PNG:
        return SCALING_CAPTION
    return HARDWARE_CAPTIONS.get(filename, "")
