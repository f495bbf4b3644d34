"""``batchscope export``: a stored run as JSON, CSV or Markdown."""

from __future__ import annotations

from typing import Annotated

import typer

from batchscope.cli.app import app
from batchscope.cli.common import store_for_reading
from batchscope.cli.console import stderr
from batchscope.cli.options import StoreOpt


@app.command()
def export(
    run_id: Annotated[str, typer.Argument(help="A run id or a unique prefix of one.")],
    json_path: Annotated[str | None, typer.Option("--json", show_default=False)] = None,
    csv_path: Annotated[str | None, typer.Option("--csv", show_default=False)] = None,
    markdown_path: Annotated[str | None, typer.Option("--markdown", show_default=False)] = None,
    store_path: StoreOpt = None,
) -> None:
    """Write a stored run as JSON, CSV or Markdown (any time, even mid-sweep)."""
    from batchscope.report.export import check_writable, to_json, write_exports

    for path, flag in ((json_path, "--json"), (csv_path, "--csv"), (markdown_path, "--markdown")):
        if path:
            check_writable(path, flag)
    store = store_for_reading(store_path)
    run = store.get_run(store.resolve_run_id(run_id))
    if not (json_path or csv_path or markdown_path):
        typer.echo(to_json(run), nl=False)
        return
    for written in write_exports(
        run, json_path=json_path, csv_path=csv_path, markdown_path=markdown_path
    ):
        stderr().print(f"wrote {written}", highlight=False)
