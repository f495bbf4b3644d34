"""``batchscope report``: a run's report folder again (from the store or a results JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from batchscope.cli.app import app
from batchscope.cli.common import store_for_reading
from batchscope.cli.console import stdout
from batchscope.cli.options import StoreOpt
from batchscope.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from batchscope.core.results import RunResult
    from batchscope.report.markdown import Document

RunArg = Annotated[
    str,
    typer.Argument(
        help="A run id (or a unique prefix) from the results store, or a results JSON file "
        "(schema batchscope.results/1, from 'sweep --json').",
        show_default=False,
    ),
]


def _looks_like_file(ref: str) -> bool:
    return ref.endswith(".json") or "/" in ref or "\\" in ref or Path(ref).expanduser().is_file()


def load_run(ref: str, store_path: str | None) -> RunResult:
    """A run from a results JSON file, or from the store by id or unique prefix."""
    from batchscope.report.build import load_results_json

    if _looks_like_file(ref):
        return load_results_json(ref)
    try:
        store = store_for_reading(store_path)
    except UsageError as exc:
        raise UsageError(
            f"{ref!r} is neither a results JSON file nor a run id in a store ({exc})"
        ) from None
    try:
        run: RunResult = store.get_run(store.resolve_run_id(ref))
        return run
    finally:
        store.close()


REPORT_EPILOG = """\
Examples:

  batchscope report 20260101-1200          (a stored run, by a unique prefix of its id)

  batchscope report results.json --out my-report
"""


@app.command(epilog=REPORT_EPILOG)
def report(
    run: RunArg,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="Folder for report.html, report.md and the PNG plots "
            "(default: batchscope-results/RUN_ID/).",
            show_default=False,
        ),
    ] = None,
    store_path: StoreOpt = None,
) -> None:
    """Write a run's report: one self-contained HTML file, Markdown, and the plots."""
    from batchscope.report.build import check_report_dir, default_report_dir, write_report

    if out is not None:
        check_report_dir(out)
    result = load_run(run, store_path)
    files = write_report(result, out if out is not None else default_report_dir(result.run_id))
    console = stdout()
    console.print(f"wrote the report of run {result.run_id} to {files.directory}/", highlight=False)
    for path in files.all:
        console.print(f"  {path}", highlight=False)


# ---------------------------------------------------------------- compare


def print_document(doc: Document, console: Console) -> None:
    """A report document on the terminal. User text is never read as rich markup."""
    from rich.table import Table as RichTable
    from rich.text import Text

    from batchscope.report.markdown import Bullets, Fields, Heading, Paragraph, Table

    console.print(Text(doc.title, style="bold"))
    for block in doc.blocks:
        if isinstance(block, Heading):
            console.print()
            console.print(Text(block.text, style="bold"))
        elif isinstance(block, Paragraph):
            if block.kind == "warning":
                console.print(Text("warning: " + block.text, style="bold yellow"))
            else:
                console.print(Text(block.text, style="dim" if block.kind == "muted" else ""))
        elif isinstance(block, Bullets):
            style = "yellow" if block.kind == "warning" else ""
            for item in block.items:
                console.print(Text(f"• {item}", style=style))
        elif isinstance(block, Fields):
            grid = RichTable.grid(padding=(0, 1))
            grid.add_column(style="bold", no_wrap=True)
            grid.add_column()
            for label, value in block.items:
                grid.add_row(Text(f"{label}:"), Text(value))
            console.print(grid)
        elif isinstance(block, Table):
            table = RichTable()
            for header, align in zip(block.headers, block.align, strict=False):
                table.add_column(Text(header), justify="right" if align == "right" else "left")
            for i, row in enumerate(block.rows):
                table.add_row(
                    *(Text(c) for c in row), style="red" if i in block.failed_rows else None
                )
            console.print(table)
