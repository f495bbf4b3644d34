"""``batchscope env``: the machine fingerprint recorded with every run."""

from __future__ import annotations

from typing import Annotated

import typer

from batchscope.cli.app import app
from batchscope.cli.console import stdout


@app.command()
def env(
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
) -> None:
    """Print the machine and software fingerprint recorded with every run."""
    import json

    from rich.table import Table

    from batchscope.hardware.envinfo import collect
    from batchscope.units import format_bytes

    info = collect()
    if json_out:
        typer.echo(json.dumps(info, indent=2))
        return
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in info.items():
        if key == "memory_bytes":
            value = format_bytes(value)
        elif key == "gpus":
            value = (
                "; ".join(f"{g['name']} ({format_bytes(g['memory_bytes'])})" for g in value)
                or "none"
            )
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        table.add_row(key, str(value))
    stdout().print(table)
