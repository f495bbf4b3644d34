"""``batchscope compare``: two runs side by side, B's speedup over A, what differs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from batchscope.cli.app import app
from batchscope.cli.commands.report import load_run, print_document
from batchscope.cli.console import stderr, stdout
from batchscope.cli.options import StoreOpt

COMPARE_EPILOG = """\
Examples:

  batchscope compare laptop.json workstation.json

  batchscope compare 20260101-1200 20260102-0900 --markdown compare.md

  batchscope compare baseline.json new.json --fail-if-slower 5%     # a CI gate: exit 1
"""


@app.command(epilog=COMPARE_EPILOG)
def compare(
    a: Annotated[
        str,
        typer.Argument(
            help="The baseline run A: a run id (or unique prefix) or a results JSON file.",
            show_default=False,
        ),
    ],
    b: Annotated[
        str,
        typer.Argument(
            help="The run B to set against A (id, prefix or JSON file).", show_default=False
        ),
    ],
    markdown_path: Annotated[
        str | None,
        typer.Option(
            "--markdown", help="Also write the comparison as Markdown.", show_default=False
        ),
    ] = None,
    json_path: Annotated[
        str | None,
        typer.Option(
            "--json",
            metavar="FILE",
            help="Also write B against A per batch size as JSON ('-': standard output).",
            show_default=False,
        ),
    ] = None,
    fail_if_slower: Annotated[
        str | None,
        typer.Option(
            "--fail-if-slower",
            metavar="FRACTION",
            help="Exit 1 when B is slower than A by more than this (e.g. 5%) beyond the noise "
            "(the 95 % interval's lower end) at any common batch size: a gate for CI.",
            show_default=False,
        ),
    ] = None,
    store_path: StoreOpt = None,
) -> None:
    """Two runs side by side: B's speedup over A per batch size, best vs best, what differs."""
    from batchscope.analyse.explain import compare_runs
    from batchscope.report.export import check_writable
    from batchscope.report.markdown import compare_document, render_markdown
    from batchscope.units import parse_fraction

    if markdown_path:
        check_writable(markdown_path, "--markdown")
    if json_path:
        check_writable(json_path, "--json")
    threshold = parse_fraction(fail_if_slower, what="--fail-if-slower") if fail_if_slower else None
    run_a = load_run(a, store_path)
    run_b = load_run(b, store_path)
    doc = compare_document(run_a, run_b)
    print_document(doc, stderr() if json_path == "-" else stdout())
    comparisons = compare_runs(run_a, run_b)
    if json_path:
        import json

        from batchscope.core.results import json_safe
        from batchscope.report.export import write_text

        data = {
            "a": run_a.run_id,
            "b": run_b.run_id,
            "comparisons": [c.to_dict() for c in comparisons],
        }
        write_text(json_path, json.dumps(json_safe(data), indent=2) + "\n", "--json")
    if markdown_path:
        from batchscope.errors import ExportError

        try:
            Path(markdown_path).write_text(render_markdown(doc), encoding="utf-8")
        except OSError as exc:
            raise ExportError(
                f"cannot write --markdown {markdown_path!r}: {exc.strerror or exc}"
            ) from exc
        stderr().print(f"wrote {markdown_path}", highlight=False)
    if threshold is not None:
        slower = [
            c
            for c in comparisons
            if c.batch_size is not None and (c.slower_beyond or 0.0) > threshold
        ]
        if slower:
            where = ", ".join(
                f"b={c.batch_size} ({c.series_b}: {c.b_over_a - 1:+.1%}, at least "
                f"{c.slower_beyond:+.1%})"
                for c in slower
            )
            stderr().print(
                f"B is slower than A by more than {threshold:.0%} beyond the noise at {where}: "
                "exit status 1",
                highlight=False,
            )
            raise typer.Exit(1)
