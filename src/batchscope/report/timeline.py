"""Hardware figures: nvtop-like timelines and the step-time split per batch size.

Trial boundaries are drawn as vertical lines labelled with the batch size, so a
sweep's timeline shows which batch size kept the device busy. Figures use
matplotlib's object API (no pyplot state), rendered with the Agg canvas.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchscope.core.results import RunResult
from batchscope.hardware.monitor import Sample, samples_to_rows

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from batchscope.analyse.explain import RunAnalysis

GIB = 1024**3

#: figure file name -> caption, for the report
HARDWARE_TITLES = {
    "timeline.png": "Hardware timeline: utilisation and memory during each trial",
    "step_split.png": "Where each step's time goes, per batch size",
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


def timeline_figure(
    rows: Sequence[dict[str, Any]],
    *,
    marks: Sequence[tuple[float, str]] = (),
    title: str = "Hardware timeline",
    cpu_cores: int | None = None,
) -> Figure:
    """Utilisation (CPU of the process tree as % of all cores, each GPU) and memory over time.

    ``rows`` are :func:`batchscope.hardware.monitor.samples_to_rows` dicts; rows with a
    ``None`` time are drawn as gaps (between trials).
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
    fig = Figure(figsize=(9, 2.3 * n_axes + 0.7))
    axes = fig.subplots(n_axes, 1, sharex=True)
    ax_util, ax_mem = axes[0], axes[1]
    t = [r.get("t_s") for r in rows]

    def series(key: str, scale: float = 1.0) -> list[float | None]:
        return [None if r.get(key) is None else float(r[key]) * scale for r in rows]

    ax_util.plot(
        t,
        series("cpu_process_percent", 1.0 / cores),
        color="tab:blue",
        label=f"CPU (process, % of {cores} cores)",
    )
    for i in gpu_indices:
        ax_util.plot(
            t,
            series(f"gpu{i}_utilization_percent"),
            color=f"C{i + 1}",
            label=f"GPU {i} utilisation",
        )
    ax_util.set_ylabel("Utilisation (%)")
    ax_util.set_ylim(0, 105)
    ax_mem.plot(
        t, series("rss_bytes", 1 / GIB), color="tab:blue", label="Resident memory (process tree)"
    )
    for i in gpu_indices:
        ax_mem.plot(
            t,
            series(f"gpu{i}_memory_used_bytes", 1 / GIB),
            color=f"C{i + 1}",
            label=f"GPU {i} memory used",
        )
    ax_mem.set_ylabel("Memory (GiB)")
    ax_mem.set_ylim(bottom=0)
    if has_power:
        for i in gpu_indices:
            axes[2].plot(t, series(f"gpu{i}_power_w"), color=f"C{i + 1}", label=f"GPU {i} power")
        axes[2].set_ylabel("Power (W)")
        axes[2].set_ylim(bottom=0)
    for ax in axes:
        for when, _label in marks:
            ax.axvline(when, color="grey", linewidth=0.8, linestyle=":")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
    for when, label in marks:
        ax_util.annotate(
            label,
            (when, 103),
            fontsize="x-small",
            rotation=90,
            va="top",
            ha="right",
            color="dimgrey",
        )
    axes[-1].set_xlabel("Time (s)")
    fig.suptitle(title)
    fig.tight_layout()
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
