"""Hardware figures: nvtop-like timelines and the step-time split per batch size.

Trial boundaries are drawn as vertical lines labelled with the batch size, so a
sweep's timeline shows which batch size kept the device busy. Figures use
matplotlib's object API (no pyplot state), rendered with the Agg canvas.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchscope.core.results import RunResult
from batchscope.core.samples import Sample, samples_to_rows

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from batchscope.analyse.explain import RunAnalysis

GIB = 1024**3

#: figure file name -> title, for the report's alt text
HARDWARE_TITLES = {
    "timeline.png": "Hardware timeline: utilisation and memory during each trial",
    "step_split.png": "Where each step's time goes, per batch size",
}

#: figure file name -> caption: what is drawn and that there are no error bars
HARDWARE_CAPTIONS = {
    "timeline.png": (
        "The sweep as it ran, trial after trial. Top: CPU use of the measured process tree "
        "(% of all cores) and each GPU's utilisation; below: the process tree's resident "
        "memory and each GPU's memory used (and GPU power where it was read). Raw readings, "
        "so no bars; a dotted line and label (bs=…) mark where each trial started, gaps are "
        "the time between trials, a red ▲ a reading above 100 % (a sampling artefact)."
    ),
    "step_split.png": (
        "Bar height: the median time per sample at each batch size (the table's figure); "
        "segments: each phase's share of the measured steps' time in the first round (data "
        "wait, host-to-device copy, forward, backward, optimizer; compute without "
        '--breakdown). Shares, so no bars; "input-bound" marks a wait for data above 20 %.'
    ),
}

PHASE_COLOURS = {
    "data_wait": "tab:red",
    "h2d": "tab:purple",
    "forward": "tab:blue",
    "backward": "tab:orange",
    "optimizer": "tab:green",
    "compute": "tab:blue",
}


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    return buffer.getvalue()


#: the timeline's width (inches): the plots' width plus room for the legends on the right
TIMELINE_WIDTH = 10.0
#: the utilisation axis ends here (%); readings above (sampling artefacts of very short
#: intervals: a process cannot use more than every core) are marked at the top edge
UTIL_TOP = 105.0


def _top(values: Sequence[float | None], floor: float = 1e-9) -> float | None:
    """The axis' upper limit: the largest reading plus 15 % headroom (None without data)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite or max(finite) <= floor:
        return None
    return 1.15 * max(finite)


def _label_marks(ax: Any, marks: Sequence[tuple[float, str]], span: tuple[float, float]) -> None:
    """Each trial's label in a band above the top axes, where no trace can cover it.

    Horizontal when the labels fit between their lines, else upright; a label that would
    still touch its left neighbour is left out (its dotted line stays).
    """
    from matplotlib.transforms import blended_transform_factory

    if not marks:
        return
    lo, hi = span
    width_px = ax.get_position().width * ax.figure.get_figwidth() * ax.figure.dpi
    px_per_s = width_px / max(hi - lo, 1e-9)
    char_px = 6.4  # x-small text at the figure's dpi
    ordered = sorted(marks)
    gaps = [b[0] - a[0] for a, b in zip(ordered, ordered[1:], strict=False)]
    longest = max(len(label) for _, label in ordered)
    flat = not gaps or min(gaps) * px_per_s >= longest * char_px + 8
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    last_px: float | None = None
    for when, label in ordered:
        if not lo <= when <= hi:
            continue
        at_px = (when - lo) * px_per_s
        need = len(label) * char_px + 8 if flat else 13
        if last_px is not None and at_px - last_px < need:
            continue
        last_px = at_px
        ax.text(
            when,
            1.035,
            label,
            transform=trans,
            rotation=0 if flat else 90,
            ha="left" if flat else "center",
            va="bottom",
            fontsize="x-small",
            color="#333333",
            clip_on=False,
            zorder=10,
        )


def timeline_figure(
    rows: Sequence[dict[str, Any]],
    *,
    marks: Sequence[tuple[float, str]] = (),
    title: str = "Hardware timeline",
    cpu_cores: int | None = None,
) -> Figure:
    """Utilisation (CPU of the process tree as % of all cores, each GPU) and memory over time.

    ``rows`` are :func:`batchscope.hardware.monitor.samples_to_rows` dicts; rows with a
    ``None`` time are drawn as gaps (between trials). The trials' labels sit in a band
    above the plot and the legends right of it, so neither hides a trace; memory and
    power axes reach 15 % above their largest reading, so no trace is cut off.
    """
    from matplotlib.figure import Figure

    cores = cpu_cores or os.cpu_count() or 1
    gpu_indices = sorted(
        {
            int(k[3:].split("_")[0])
            for r in rows
            for k in r
            if k.startswith("gpu") and k.endswith("_utilization_percent")
        }
    )
    has_power = any(r.get(f"gpu{i}_power_w") is not None for r in rows for i in gpu_indices)
    n_axes = 3 if has_power else 2
    fig = Figure(figsize=(TIMELINE_WIDTH, 2.3 * n_axes + 1.0), layout="constrained")
    axes = fig.subplots(n_axes, 1, sharex=True)
    ax_util, ax_mem = axes[0], axes[1]
    t = [r.get("t_s") for r in rows]

    def series(key: str, scale: float = 1.0) -> list[float | None]:
        return [None if r.get(key) is None else float(r[key]) * scale for r in rows]

    cpu = series("cpu_process_percent", 1.0 / cores)
    util = [(f"CPU, process tree\n(% of {cores} cores)", "tab:blue", cpu)]
    util += [
        (f"GPU {i} utilisation", f"C{i + 1}", series(f"gpu{i}_utilization_percent"))
        for i in gpu_indices
    ]
    over: list[float] = []
    for label, colour, values in util:
        ax_util.plot(t, values, color=colour, label=label, zorder=3)
        over += [x for x, v in zip(t, values, strict=True) if x is not None and v and v > UTIL_TOP]
    if over:
        ax_util.plot(
            over,
            [UTIL_TOP - 2] * len(over),
            linestyle="none",
            marker="^",
            markersize=5,
            color="tab:red",
            clip_on=False,
            zorder=4,
            label="reading above 100 %\n(sampling artefact)",
        )
    ax_util.set_ylabel("Utilisation (%)")
    ax_util.set_ylim(0, UTIL_TOP)
    peak_bytes = max(
        (
            float(v)
            for key in ["rss_bytes", *(f"gpu{i}_memory_used_bytes" for i in gpu_indices)]
            for row in rows
            if isinstance(v := row.get(key), (int, float))
        ),
        default=0.0,
    )
    unit, unit_name = (GIB, "GiB") if peak_bytes >= GIB else (1024.0**2, "MiB")  # the data's scale
    memory = [("Resident memory\n(process tree)", "tab:blue", series("rss_bytes", 1 / unit))]
    memory += [
        (f"GPU {i} memory used", f"C{i + 1}", series(f"gpu{i}_memory_used_bytes", 1 / unit))
        for i in gpu_indices
    ]
    for label, colour, values in memory:
        ax_mem.plot(t, values, color=colour, label=label, zorder=3)
    ax_mem.set_ylabel(f"Memory ({unit_name})")
    ax_mem.set_ylim(0, _top([v for _, _, vs in memory for v in vs]) or 1.0)
    if has_power:
        power = [series(f"gpu{i}_power_w") for i in gpu_indices]
        for i, values in zip(gpu_indices, power, strict=True):
            axes[2].plot(t, values, color=f"C{i + 1}", label=f"GPU {i} power", zorder=3)
        axes[2].set_ylabel("Power (W)")
        axes[2].set_ylim(0, _top([v for vs in power for v in vs]) or 1.0)
    for ax in axes:
        for when, _label in marks:
            ax.axvline(when, color="grey", linewidth=0.8, linestyle=":", zorder=2)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    axes[-1].set_xlabel("Time (s)")
    fig.suptitle(title)
    times = [x for x in t if x is not None] + [w for w, _ in marks]
    if times:
        lo, hi = min(times), max(times)
        pad = 0.02 * (hi - lo) or 1.0
        ax_util.set_xlim(lo - pad, hi + pad)
        _label_marks(ax_util, marks, (lo - pad, hi + pad))
    return fig


def timeline_png(
    samples: Sequence[Sample],
    path: str | os.PathLike[str],
    *,
    marks: Sequence[tuple[float, str]] = (),
    title: str = "Hardware timeline",
    cpu_cores: int | None = None,
) -> Path:
    """Write the timeline of one sampler's readings to ``path`` (used by ``watch``)."""
    fig = timeline_figure(samples_to_rows(samples), marks=marks, title=title, cpu_cores=cpu_cores)
    out = Path(path)
    out.write_bytes(_png(fig))
    return out


def run_timeline_rows(run: RunResult) -> tuple[list[dict[str, Any]], list[tuple[float, str]]]:
    """The trials' timelines on one clock (seconds from the first trial's start).

    Consecutive trials are separated by a gap row, so the line breaks where a
    child process was starting rather than drawing a false ramp.
    """
    trials = [t for t in run.trials if t.timeline and t.timeline_start_unix is not None]
    if not trials:
        return [], []
    trials.sort(key=lambda t: t.timeline_start_unix or 0.0)
    origin = trials[0].timeline_start_unix or 0.0
    rows: list[dict[str, Any]] = []
    marks: list[tuple[float, str]] = []
    for trial in trials:
        offset = (trial.timeline_start_unix or 0.0) - origin
        label = f"{trial.device} bs={trial.batch_size}"
        if len({t.device for t in trials}) == 1:
            label = f"bs={trial.batch_size}"
        marks.append((offset, label))
        for row in trial.timeline:
            shifted = dict(row)
            shifted["t_s"] = offset + float(row.get("t_s") or 0.0)
            rows.append(shifted)
        rows.append({"t_s": None})
    return rows, marks


def run_timeline_png(run: RunResult) -> bytes | None:
    """The sweep's timeline, or None when no trial recorded one (``--sample-interval 0``)."""
    rows, marks = run_timeline_rows(run)
    if not rows:
        return None
    cores = run.settings.get("threads") and run.environment.get("cpu_cores_logical")
    fig = timeline_figure(
        rows,
        marks=marks,
        cpu_cores=cores or None,
        title=f"{run.workload.get('name', '')}: hardware during each trial",
    )
    return _png(fig)


def step_split_png(run: RunResult, analysis: RunAnalysis | None = None) -> bytes | None:
    """Stacked bars: the median time per sample, split by each phase's share of the step.

    The bar's height is the table's figure (the point's median time per sample); the
    split is each phase's share of the measured steps' time (first round). Per sample,
    so batch sizes compare fairly; with ``--breakdown`` the compute part is split into
    copy, forward, backward and optimizer.
    """
    from matplotlib.figure import Figure

    if analysis is None:
        from batchscope.analyse.explain import analyse_run

        analysis = analyse_run(run)
    trials = [t for t in run.trials if t.ok and t.time_split and t.repeat == 0]
    if not trials:
        return None
    devices = list(dict.fromkeys(t.device for t in trials))
    fig = Figure(figsize=(8, 4.6))
    axes = fig.subplots(1, len(devices), squeeze=False)[0]
    for ax, device in zip(axes, devices, strict=True):
        series = analysis.device(device)
        mine = sorted(
            (t for t in trials if t.device == device and series and series.point(t.batch_size)),
            key=lambda t: t.batch_size,
        )
        totals = [series.point(t.batch_size).time_per_sample_s for t in mine]  # type: ignore[union-attr]
        labels = [str(t.batch_size) for t in mine]
        phases = list(dict.fromkeys(p for t in mine for p in t.time_split))
        bottom = [0.0] * len(mine)
        for phase in phases:
            heights = [
                1e3 * total * t.time_split.get(phase, 0.0)
                for t, total in zip(mine, totals, strict=True)
            ]
            ax.bar(
                labels,
                heights,
                bottom=bottom,
                label=phase.replace("_", " "),
                color=PHASE_COLOURS.get(phase),
            )
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        for x, t in enumerate(mine):
            wait = t.time_split.get("data_wait")
            if wait is not None and wait > 0.2:
                ax.annotate(
                    f"input-bound\n{wait:.0%} wait",
                    (x, bottom[x]),
                    ha="center",
                    va="bottom",
                    fontsize="x-small",
                    color="tab:red",
                )
        ax.set_title(device)
        ax.set_xlabel("Batch size")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("Median time per sample (ms), split by phase")
    axes[-1].legend(fontsize="small", loc="upper right")
    fig.suptitle(f"{run.workload.get('name', '')}: where each step's time goes")
    fig.tight_layout()
    return _png(fig)


def render_hardware_plots(run: RunResult, analysis: RunAnalysis | None = None) -> dict[str, bytes]:
    """``{file name: PNG}`` of the hardware figures this run has data for."""
    out: dict[str, bytes] = {}
    timeline = run_timeline_png(run)
    if timeline is not None:
        out["timeline.png"] = timeline
    split = step_split_png(run, analysis)
    if split is not None:
        out["step_split.png"] = split
    return out
