"""CLI commands: hardware monitoring (``watch``)."""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import shlex
from pathlib import Path
from typing import Annotated

import typer

from batchscope.cli.app import app
from batchscope.cli.console import stderr
from batchscope.errors import ExportError
from batchscope.run.watch import WatchResult
from batchscope.units import format_bytes, format_seconds

WATCH_EPILOG = """\
Examples:

  batchscope watch -- python train.py --bs 64

  batchscope watch --out runs/fastai-bs64 -- python fastai_script.py
"""


def _command_text(command: list[str], limit: int = 80) -> str:
    """The command on one line, shortened: a ``-c`` script must not span the screen."""
    text = " ".join(" ".join(shlex.join(command).split()).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary_lines(result: WatchResult) -> list[str]:
    s = result.summary

    def pct(x: float | None) -> str:
        return "not available" if x is None else f"{x:.0f} %"

    cores = os.cpu_count() or 1

    def of_all(x: float | None) -> float | None:  # the timeline's unit: % of all cores
        return None if x is None else x / cores

    lines = [
        f"command: {_command_text(result.command)} → exit status {result.returncode}"
        + (" (interrupted)" if result.interrupted else ""),
        f"duration: {format_seconds(result.duration_s)} ({s.n_samples} samples)",
        f"CPU (process tree), % of all {cores} cores: mean "
        f"{pct(of_all(s.cpu_process_percent_mean))}, max {pct(of_all(s.cpu_process_percent_max))}",
        f"peak resident memory: {format_bytes(s.peak_rss_bytes)}",
    ]
    if s.gpu_utilization_percent_mean is not None:
        lines.append(
            f"GPU utilisation: mean {pct(s.gpu_utilization_percent_mean)}, "
            f"max {pct(s.gpu_utilization_percent_max)}"
        )
        lines.append(f"peak GPU memory used: {format_bytes(s.gpu_memory_used_bytes_max)}")
    else:
        lines.append("GPU: not available (" + result.unavailable.get("gpu", "no GPU") + ")")
    if s.energy_j is not None:
        lines.append(f"energy: {s.energy_j:,.1f} J")
    else:
        lines.append("energy: not available (no RAPL counter or GPU energy reading)")
    return lines


def _check_out_dir(out_dir: Path) -> None:
    """Refuse an --out that cannot become a writable folder, without creating anything."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ExportError(f"--out {str(out_dir)!r} is a file, not a folder")
        if not os.access(out_dir, os.W_OK | os.X_OK):
            raise ExportError(f"--out {str(out_dir)!r} is not writable")
        return
    parent = out_dir.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ExportError(f"--out {str(out_dir)!r} cannot be created: {str(parent)!r} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(
            f"--out {str(out_dir)!r} cannot be created: folder {str(parent)!r} is not writable"
        )


@app.command(epilog=WATCH_EPILOG)
def watch(
    command: Annotated[
        list[str], typer.Argument(help="The command to run, after '--'.", show_default=False)
    ],
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="Folder for timeline.png, "
            "samples.csv and summary.json (default: "
            "batchscope-results/watch-TIME)",
            show_default=False,
        ),
    ] = None,
    sample_interval: Annotated[
        float, typer.Option("--sample-interval", help="Seconds between readings.")
    ] = 0.1,
) -> None:
    """Run any command and record CPU/GPU utilisation, memory, power and energy over time."""
    from batchscope.report.timeline import timeline_png
    from batchscope.run.watch import watch_command

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = Path(out) if out else Path("batchscope-results") / f"watch-{stamp}"
    _check_out_dir(out_dir)

    def make_out_dir() -> None:
        # only once the command runs: a command that cannot start leaves nothing behind
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(
                f"--out {str(out_dir)!r} cannot be created: {exc.strerror or exc} "
                "(the command was stopped)"
            ) from exc

    result = watch_command(command, interval_s=sample_interval, on_started=make_out_dir)
    from batchscope.core.samples import samples_to_rows

    rows = samples_to_rows(result.samples)
    fields = sorted({k for row in rows for k in row}, key=lambda k: (k != "t_s", k))
    with open(out_dir / "samples.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "summary.json").write_text(
        json.dumps(
            {
                "command": result.command,
                "returncode": result.returncode,
                "duration_s": result.duration_s,
                "interrupted": result.interrupted,
                "summary": result.summary.to_dict(),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    timeline_png(
        result.samples,
        out_dir / "timeline.png",
        title=f"batchscope watch: {_command_text(result.command, 70)}",
    )
    err = stderr()
    for line in _summary_lines(result):
        err.print(line, highlight=False, markup=False)
    err.print(f"wrote {out_dir / 'timeline.png'}, samples.csv, summary.json", highlight=False)
    code = result.returncode
    raise typer.Exit(code if code >= 0 else 128 - code)
