"""The terminal table (rich), one per series, its verdict lines, then the speedups."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from batchscope.core.results import RunResult
from batchscope.report.rows import WIDE_FROM_COLUMNS, device_rows, headers

if TYPE_CHECKING:
    from batchscope.analyse.explain import RunAnalysis


def render_run(run: RunResult, analysis: RunAnalysis | None = None, *, wide: bool = True) -> Group:
    """The tables (full, or compact for a narrow terminal), verdict lines and speedups."""
    from batchscope.analyse.explain import analyse_run
    from batchscope.core.series import series_view
    from batchscope.report.wording import machine_lines, speedup_line, summary_lines

    raw = run  # the scaling table reads the trials' world sizes, which the view folds in
    run = series_view(run)  # one table per (device, variant): "cpu bf16"
    if analysis is None:
        analysis = analyse_run(run)
    parts: list[Table | Text] = []
    workload = run.workload.get("name", "?")
    for device in run.devices:
        found = analysis.device(device)
        table = Table(
            title=f"{workload} on {device}",
            title_justify="left",
            box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD,
            pad_edge=wide,
        )
        cols = headers(run, wide)
        for i, header in enumerate(cols):
            table.add_column(
                header, justify="left" if i == len(cols) - 1 else "right", no_wrap=not wide
            )
        for row in device_rows(run, device, found):
            style = None if row.status == "ok" else "red"
            table.add_row(*row.cells(wide), style=style)
        parts.append(table)
        if found is not None:
            parts += [Text(line) for line in summary_lines(found)]
            parts += [Text(f"warning: {w}", style="yellow") for w in found.warnings]
    # per batch size, then best against best
    for s in analysis.speedups + analysis.best_vs_best:
        parts.append(Text(speedup_line(run, s)))
    parts += [Text(f"note: {line}", style="yellow") for line in machine_lines(run)]
    parts += _scaling_parts(raw, wide)
    return Group(*parts)


def _scaling_parts(run: RunResult, wide: bool) -> list[Table | Text]:
    """The data-parallel table (its world-size column) and verdicts, when more than one
    world size ran."""
    from batchscope.report.scaling import COMPACT_HEADERS, HEADERS, scaling_lines, scaling_rows

    rows = scaling_rows(run, compact=not wide)
    if not rows:
        return []
    table = Table(
        title=f"{run.workload.get('name', '?')}: data-parallel scaling",
        title_justify="left",
        box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD,
        pad_edge=wide,
    )
    for i, header in enumerate(HEADERS if wide else COMPACT_HEADERS):
        table.add_column(header, justify="left" if i < 2 else "right")
    for row in rows:
        table.add_row(*row)
    parts: list[Table | Text] = [table]
    if not wide:
        modes = {t.scaling_mode for t in run.trials if t.world_size is not None}
        batch = "global (strong scaling)" if modes == {"strong"} else "per device"
        parts.append(Text(f"Batch: {batch}; Eff.: scaling efficiency; n.d.: not determined"))
    return [*parts, *(Text(line) for line in scaling_lines(run))]


def print_run(run: RunResult, console: Console, *, wide: bool | None = None) -> None:
    """Print the run at the console's width: the full table from 120 columns (or ``wide``)."""
    if wide is None:
        wide = console.width >= WIDE_FROM_COLUMNS
    console.print(render_run(run, wide=wide))
