"""``batchscope show``: a stored run's table and verdicts again."""

from __future__ import annotations

from typing import Annotated

import typer

from batchscope.cli.app import app
from batchscope.cli.common import store_for_reading
from batchscope.cli.console import stdout
from batchscope.cli.options import StoreOpt, WideOpt


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="A run id or a unique prefix of one.")],
    store_path: StoreOpt = None,
    wide: WideOpt = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the results JSON (with its 'analysis' verdicts) instead of the table.",
        ),
    ] = False,
) -> None:
    """Print a stored run's table and verdicts (or its results JSON with --json)."""
    from batchscope.report.terminal import print_run

    store = store_for_reading(store_path)
    run = store.get_run(store.resolve_run_id(run_id))
    if as_json:
        from batchscope.report.export import to_json

        typer.echo(to_json(run), nl=False)
        return
    print_run(run, stdout(), wide=wide or None)
