"""The console script: parse, run the command, and turn every user error into one line.

Importing the command modules registers their commands on :data:`batchscope.cli.app.app`.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from batchscope.cli import commands  # noqa: F401  (registers every command)
from batchscope.cli.app import CliState, app
from batchscope.cli.console import fail, stderr
from batchscope.errors import BatchscopeError


def bad_value(exc: Exception, argv: list[str] | None) -> str:
    """', got 'abc'' for a parser error on an option whose message does not show the value."""
    param = getattr(exc, "param", None)
    opts = [o for o in (getattr(param, "opts", None) or []) if o.startswith("-")]
    args = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(args):
        for opt in opts:
            if arg == opt and i + 1 < len(args):
                value = args[i + 1]
            elif opt.startswith("--") and arg.startswith(opt + "="):
                value = arg[len(opt) + 1 :]
            else:
                continue
            if repr(value) not in exc.format_message():  # type: ignore[attr-defined]
                return f", got {value!r}"
            return ""
    return ""


def hide_flag_types(command: Any) -> None:
    """Show on/off flags (``--help``, ``--install-completion``, ...) without a ``<bool>``.

    typer 0.29 prints the value type beside every option, flags included, as if
    ``--help`` took a value named ``bool``; an empty metavar removes it. The help
    option is built lazily per command and then cached, so it is built here once.
    """
    help_option = command.get_help_option(typer.Context(command))
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        hide_flag_types(sub)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: one line and exit 2 for every user error, 130 on Ctrl-C.

    typer (pinned in pyproject.toml) vendors its own click: its parse errors are
    ``typer.TyperException`` subclasses with ``exit_code`` and ``format_message``,
    caught by that public type.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    hide_flag_types(command)
    state = CliState(debug="--debug" in args)
    if not args:  # no arguments: the help is the answer (and exit status 2)
        with command.make_context("batchscope", ["--help"], resilient_parsing=True) as root:
            typer.echo(command.get_help(root))
        sys.exit(2)
    try:
        code = command.main(args=args, prog_name="batchscope", standalone_mode=False, obj=state)
    except BatchscopeError as exc:
        if state.debug:
            raise
        fail(str(exc), exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        stderr().print("interrupted: nothing was measured or saved")
        sys.exit(130)
    except typer.TyperException as exc:
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        fail(f"{message}{bad_value(exc, args)}{hint}", int(getattr(exc, "exit_code", 2)))
    if code == 130 and not state.interrupt_said:
        # typer turned a Ctrl-C into Exit(130) before any handler of ours saw it
        stderr().print("interrupted: nothing was measured or saved")
    sys.exit(code if isinstance(code, int) else 0)
