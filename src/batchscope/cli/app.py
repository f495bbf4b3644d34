"""The typer application and the state every command shares (``--debug``).

Commands live in :mod:`batchscope.cli.commands`, one module each, and register
themselves on :data:`app`; :mod:`batchscope.cli.main` is the console script.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

app = typer.Typer(
    name="batchscope",
    help=(
        "Measure how batch size and hardware change training time and memory, "
        "and pick the batch size.\n\n"
        "Start with 'batchscope demo', then 'batchscope sweep WORKLOAD'. "
        "'batchscope workloads' lists the built-in workloads."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@dataclass
class CliState:
    """What the top-level options set, passed to every command as ``ctx.obj``."""

    debug: bool = False
    #: an interrupt already said what was saved (main() stays quiet then)
    interrupt_said: bool = False


def cli_state(ctx: typer.Context) -> CliState:
    """The run's :class:`CliState` (a fresh one when a command is invoked on its own)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def _print_version(value: bool) -> None:
    if value:
        from batchscope import __version__

        typer.echo(f"batchscope {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", metavar="", help="Show tracebacks and the trial processes' own output."
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            metavar="",
            callback=_print_version,
            is_eager=True,
            help="Print batchscope's version and exit.",
        ),
    ] = False,
) -> None:
    cli_state(ctx).debug = debug
