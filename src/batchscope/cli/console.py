"""Where the CLI writes: results to stdout, progress and messages to stderr.

``batchscope sweep ... > table.txt`` captures exactly the table. Every user error is
one line on stderr (:func:`fail`) and exit status 2.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from rich.console import Console


def stderr() -> Console:
    return Console(stderr=True)


def stdout() -> Console:
    """Results console: the terminal's width (``COLUMNS``, or 80 when piped to a file)."""
    return Console(soft_wrap=False)


def print_error(message: str) -> None:
    """One line on stderr: what is wrong and what is accepted."""
    console = stderr()
    # a user's exception text may span lines; the error stays on one
    message = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    console.print("[bold red]batchscope: error:[/] ", end="", markup=True)
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    print_error(message)
    sys.exit(code)
