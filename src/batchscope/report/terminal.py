"""The terminal table (rich), one per device, then the speedup lines."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from batchscope.analyse.speedup import device_speedups
from batchscope.core.results import RunResult
from batchscope.report.rows import device_rows, headers


def speedup_lines(run: RunResult) -> list[str]:
    """hyperfine's phrasing: 'cuda:0 ran 45.8 ± 0.6 times faster than cpu at batch size 64'."""
    return [
        f"{s.fast} ran {s.ratio:.3g} ± {s.error:.2g} times faster than {s.slow} "
        f"at batch size {s.batch_size} (per sample)"
        for s in device_speedups(run)
    ]


def render_run(run: RunResult) -> Group:
    from batchscope.analyse.explain import analyse_run, speedup_text, summary_lines
    from batchscope.engine.variants import series_view

    run = series_view(run)  # one table per (device, variant): "cpu bf16"
    analysis = analyse_run(run)
    parts: list[Table | Text] = []
    workload = run.workload.get("name", "?")
    for device in run.devices:
        table = Table(title=f"{workload} on {device}", title_justify="left")
        for i, header in enumerate(headers(run)):
            table.add_column(header, justify="left" if i == len(headers(run)) - 1 else "right")
        for row in device_rows(run, device):
            style = None if row.status == "ok" else "red"
            table.add_row(*vars(row).values(), style=style)
        parts.append(table)
        found = analysis.device(device)
        if found is not None:
            parts += [Text(line) for line in summary_lines(found)]
            parts += [Text(f"warning: {w}", style="yellow") for w in found.warnings]
    # per batch size (repeats merged), then best against best
    for s in analysis.speedups + analysis.best_vs_best:
        parts.append(Text(speedup_text(s)))
    return Group(*parts)


def print_run(run: RunResult, console: Console) -> None:
    console.print(render_run(run))
