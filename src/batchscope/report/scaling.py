"""Data-parallel scaling in the reports: the table with its world-size column, the
verdict lines and the scaling plot — shown only when more than one world size ran.

Every figure comes from :func:`batchscope.analyse.scaling.scaling_figures` (one
definition); the wording from :mod:`batchscope.report.wording`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from batchscope.analyse.scaling import (
    ScalingFigure,
    headline,
    scaling_figures,
    world_sizes_run,
)
from batchscope.core.results import RunResult
from batchscope.report.wording import fmt_rate, percent_interval, scaling_line

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SCALING_PNG = "scaling.png"
SCALING_TITLE = "Data-parallel scaling against world size"
SCALING_CAPTION = (
    "Left: global samples/s against the number of ranks, one line per batch (per device for "
    "weak scaling, global for strong); dotted: perfect scaling from one rank. Right: scaling "
    "efficiency with its 95 % interval (samples/s ÷ (ranks × one rank's samples/s))."
)

HEADERS = [
    "Series",
    "Batch",
    "World size",
    "Global batch",
    "Samples/s",
    "Per device",
    "Efficiency [95 % CI]",
    "Exposed comm",
]
#: the same columns in a terminal narrower than 120 columns (efficiency without its
#: interval, like the compact main table's samples/s; "n.d.": not determined)
COMPACT_HEADERS = ["Series", "Batch", "Ranks", "Global", "Samples/s", "/device", "Eff.", "Comm"]


def shows_scaling(run: RunResult) -> bool:
    """The scaling table, lines and plot appear when more than one world size ran."""
    return len(world_sizes_run(run)) > 1


def _batch_label(f: ScalingFigure) -> str:
    return f"{f.batch_size} global" if f.scaling_mode == "strong" else f"{f.batch_size}/device"


def scaling_rows(run: RunResult, *, compact: bool = False) -> list[list[str]]:
    """One row per (series, batch, world size): the table's cells (see ``HEADERS``, or
    ``COMPACT_HEADERS`` with ``compact``)."""
    if not shows_scaling(run):
        return []
    rows = []
    for f in scaling_figures(run):
        global_batch = f.batch_size if f.scaling_mode == "strong" else f.batch_size * f.world_size
        if f.world_size == 1:
            eff = "1" if compact else "1 (reference)"
        elif f.efficiency is None:
            eff = "–"
        elif compact:
            eff = f"{100 * f.efficiency:.0f} %"
        else:
            eff = percent_interval(f.efficiency, f.efficiency_low, f.efficiency_high)
        if f.comm_fraction is not None:
            comm = f"{100 * f.comm_fraction:.0f} %"
        elif f.comm_fraction_high is not None:
            comm = "n.d." if compact else "not determined"
        else:
            comm = "–"
        rows.append(
            [
                f.series,
                str(f.batch_size) if compact else _batch_label(f),
                str(f.world_size),
                str(global_batch),
                fmt_rate(f.samples_per_s),
                fmt_rate(f.samples_per_s / f.world_size),
                eff,
                comm,
            ]
        )
    return rows


def scaling_lines(run: RunResult) -> list[str]:
    """The verdict lines: per series and batch, the largest world size against one rank."""
    if not shows_scaling(run):
        return []
    return [scaling_line(f) for f in headline(scaling_figures(run))]


def figure_scaling(run: RunResult) -> Figure | None:
    """Samples/s and efficiency against world size, one line per (series, batch)."""
    if not shows_scaling(run):
        return None
    from matplotlib.figure import Figure

    figures = scaling_figures(run)
    lines: dict[tuple[str, int, str], list[ScalingFigure]] = {}
    for f in figures:
        lines.setdefault((f.series, f.batch_size, _batch_label(f)), []).append(f)
    fig = Figure(figsize=(10.0, 4.2), dpi=110)
    rate_ax, eff_ax = fig.subplots(1, 2)
    worlds = world_sizes_run(run)
    for i, ((series, _, batch), points) in enumerate(sorted(lines.items())):
        points.sort(key=lambda f: f.world_size)
        color = f"C{i % 10}"
        label = f"{series}, b={batch}".replace("$", r"\$")
        xs = [f.world_size for f in points]
        rate_ax.plot(xs, [f.samples_per_s for f in points], "o-", color=color, label=label)
        one = next((f for f in points if f.world_size == 1), None)
        if one is not None:
            rate_ax.plot(xs, [one.samples_per_s * x for x in xs], ":", color=color, alpha=0.6)
        effs = [f for f in points if f.efficiency is not None]
        ys = [100.0 * (f.efficiency or 0.0) for f in effs]
        low = [
            y - 100.0 * f.efficiency_low if f.efficiency_low is not None else 0.0
            for y, f in zip(ys, effs, strict=True)
        ]
        high = [
            100.0 * f.efficiency_high - y if f.efficiency_high is not None else 0.0
            for y, f in zip(ys, effs, strict=True)
        ]
        eff_ax.errorbar(
            [f.world_size for f in effs], ys, yerr=[low, high], fmt="o-", color=color, capsize=3
        )
    for ax in (rate_ax, eff_ax):
        ax.set_xscale("log", base=2)
        ax.set_xticks(worlds, [str(w) for w in worlds])
        ax.set_xlabel("world size (ranks)")
        ax.grid(True, alpha=0.3)
    rate_ax.set_ylabel("samples/s (global)")
    rate_ax.set_ylim(bottom=0)
    rate_ax.legend(fontsize=8)
    eff_ax.axhline(100.0, color="grey", lw=0.8, ls="--")
    eff_ax.set_ylabel("scaling efficiency (%)")
    eff_ax.set_ylim(bottom=0)
    workload = str(run.workload.get("name", "")).replace("$", r"\$")
    fig.suptitle(f"{SCALING_TITLE}: {workload}" if workload else SCALING_TITLE)
    return fig


def render_scaling_plots(run: RunResult) -> dict[str, bytes]:
    """``{"scaling.png": PNG}`` when more than one world size ran, else empty."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figure_scaling(run)
    if fig is None:
        return {}
    FigureCanvasAgg(fig)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return {SCALING_PNG: buffer.getvalue()}
