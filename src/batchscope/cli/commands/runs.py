"""``batchscope runs``: the runs in the results store."""

from __future__ import annotations

from batchscope.cli.app import app
from batchscope.cli.common import store_for_reading
from batchscope.cli.console import stdout
from batchscope.cli.options import StoreOpt


@app.command()
def runs(store_path: StoreOpt = None) -> None:
    """List the runs in the results store."""
    from rich.table import Table

    store = store_for_reading(store_path)
    table = Table()
    for col in ("Run id", "Created", "Workload", "Devices", "OK", "Failed", "Planned"):
        table.add_column(col)
    for r in store.list_runs():
        table.add_row(
            r.run_id,
            r.created,
            r.workload,
            ",".join(r.devices),
            str(r.n_ok),
            str(r.n_failed),
            str(r.n_planned),
        )
    stdout().print(table)
