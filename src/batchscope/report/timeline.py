"""Timelines like nvtop's graph: utilisation, memory and power over time.

Trial boundaries (or any marks) are drawn as vertical lines with their labels,
so a sweep's timeline shows which batch size kept the device busy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..monitor import Sample


def timeline_png(
    samples: Sequence[Sample],
    path: str | os.PathLike[str],
    *,
    marks: Sequence[tuple[float, str]] = (),
    title: str = "Hardware timeline",
    cpu_cores: int | None = None,
) -> Path:
    """Write the timeline PNG to ``path`` and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cores = cpu_cores or os.cpu_count() or 1
    t = [s.t_s for s in samples]
    gpu_indices = sorted({g.index for s in samples for g in s.gpus})
    has_power = any(g.power_w is not None for s in samples for g in s.gpus)
    rows = 3 if has_power else 2
    fig, axes = plt.subplots(rows, 1, figsize=(9, 2.4 * rows + 0.6), sharex=True)
    ax_util, ax_mem = axes[0], axes[1]

    cpu = [
        None if s.cpu_process_percent is None else s.cpu_process_percent / cores for s in samples
    ]
    ax_util.plot(t, cpu, label=f"CPU (process, % of {cores} cores)", color="tab:blue")
    for i in gpu_indices:
        util = [
            next((g.utilization_percent for g in s.gpus if g.index == i), None) for s in samples
        ]
        ax_util.plot(t, util, label=f"GPU {i} utilisation", color=f"C{i + 1}")
    ax_util.set_ylabel("Utilisation (%)")
    ax_util.set_ylim(0, 105)
    ax_util.legend(loc="upper right", fontsize="small")

    gib = 1024**3
    ax_mem.plot(
        t,
        [None if s.rss_bytes is None else s.rss_bytes / gib for s in samples],
        label="Resident memory (process tree)",
        color="tab:blue",
    )
    for i in gpu_indices:
        mem = [
            next(
                (
                    g.memory_used_bytes / gib
                    for g in s.gpus
                    if g.index == i and g.memory_used_bytes is not None
                ),
                None,
            )
            for s in samples
        ]
        ax_mem.plot(t, mem, label=f"GPU {i} memory used", color=f"C{i + 1}")
    ax_mem.set_ylabel("Memory (GiB)")
    ax_mem.set_ylim(bottom=0)
    ax_mem.legend(loc="upper right", fontsize="small")

    if has_power:
        ax_pow = axes[2]
        for i in gpu_indices:
            power = [next((g.power_w for g in s.gpus if g.index == i), None) for s in samples]
            ax_pow.plot(t, power, label=f"GPU {i} power", color=f"C{i + 1}")
        ax_pow.set_ylabel("Power (W)")
        ax_pow.set_ylim(bottom=0)
        ax_pow.legend(loc="upper right", fontsize="small")

    for ax in axes:
        for when, _label in marks:
            ax.axvline(when, color="grey", linewidth=0.8, linestyle=":")
        ax.grid(alpha=0.3)
    for when, label in marks:
        ax_util.annotate(
            label,
            (when, 102),
            fontsize="x-small",
            rotation=90,
            va="top",
            ha="right",
            color="dimgrey",
        )
    axes[-1].set_xlabel("Time (s)")
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return out
