"""``batchscope workloads``: the built-in workloads, one line each."""

from __future__ import annotations

from batchscope.cli.app import app
from batchscope.cli.console import stdout


@app.command()
def workloads() -> None:
    """List the built-in workloads, one line each."""
    from rich.table import Table

    from batchscope.workloads import describe_builtins

    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for name, description in describe_builtins():
        table.add_row(name, description)
    table.add_row("module:function", "your own: a function returning a batchscope.Workload")
    table.add_row("file.py:function", "the same, from a file (see examples/custom_workload.py)")
    stdout().print(table)
