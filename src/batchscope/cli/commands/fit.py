"""``batchscope fit``: fit the curve models to a table measured elsewhere; test for a U."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from batchscope.cli.app import app
from batchscope.cli.console import stderr, stdout

if TYPE_CHECKING:
    from batchscope.analyse.curves import CurveFit
    from batchscope.analyse.fit_table import TableFit

FIT_EPILOG = """\
The table: a header row, a batch_size column and one time or throughput column,
found by name (time_per_sample_s, step_time_s, epoch_time_s, training_time_s,
time_s, time, seconds, samples_per_s, throughput; a suffix such as
training_time_gpu is fine) or given with --time-column. Values may carry units:
9.44, 9.44s, 14.1 seconds, 250 ms, 1,234.5 samples/s. A Markdown pipe table is
read too.

What the column holds decides the fit: per-step times are divided by the batch
size; per-epoch times (a fixed data set, like the write-ups' training times) are fitted
as they are, and their throughput is the relative performance (best time / time).
--kind overrides what the column name suggests.

A column named se, stderr, spread, iqr, stdev, std, sd, sigma or error (in the value
column's unit) is read as the standard error of each value: it weights the fit, gives
its chi-square test and lets the U-shape test judge a rise against the noise (a
spread of raw steps is larger than a standard error, so the verdicts only get more
cautious). Without one, nothing is called a U shape: a rise is described, not judged.

Needs at least 3 distinct batch sizes (3 parameters); the 95 % intervals need 4.
A batch size given twice or more is averaged, with a note.

Example:  batchscope fit examples/seed_tables/seed003_gpu.csv --json fit.json
"""


@app.command(epilog=FIT_EPILOG)
def fit(
    table: Annotated[
        str,
        typer.Argument(
            help="CSV with batch_size and a time or throughput column.", show_default=False
        ),
    ],
    json_path: Annotated[
        str | None,
        typer.Option(
            "--json", help="Also write the fits as JSON to this file.", show_default=False
        ),
    ] = None,
    time_column: Annotated[
        str | None,
        typer.Option(
            "--time-column",
            help="The column to fit (default: detected from the names above).",
            show_default=False,
        ),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            help="What the column holds: per-sample, per-step, per-epoch or throughput "
            "(default: from its name).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Fit T(b) = c/b^α + T_min and X(b) = X_max·b/(b + b_half) to a table; test for a U shape."""
    import json

    from batchscope.analyse.fit_table import KINDS, fit_table, read_table
    from batchscope.errors import UsageError
    from batchscope.report.export import check_writable, write_text

    if kind is not None and kind not in KINDS:
        raise UsageError(f"--kind {kind!r} is not one of {', '.join(KINDS)}")
    if json_path:
        check_writable(json_path, "--json")
    result = fit_table(read_table(table, time_column=time_column, kind=kind))
    out = stdout()
    for line in fit_lines(result):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if json_path:
        text = json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n"
        write_text(json_path, text, "--json")
        stderr().print(f"wrote {json_path}", highlight=False)


def _interval(fit: CurveFit, name: str, unit: str) -> tuple[str, str]:
    from batchscope.report.wording import fmt_time

    e = fit.params[name]

    def fmt(x: float) -> str:
        if unit == "s":
            return fmt_time(x)
        return "0" if x == 0 else f"{x:.4g}"

    if not e.determined:
        return "not determined", f"({e.note})" if e.note else ""
    interval = f"95 % interval [{fmt(e.low)}–{fmt(e.high)}]" if e.known else "interval unknown"
    return fmt(e.value), interval


def _model_lines(title: str, fit: CurveFit, units: dict[str, str]) -> list[str]:
    from batchscope.report.wording import format_r2

    labels = {"c": "c", "alpha": "α", "t_min": "T_min", "x_max": "X_max", "b_half": "b_half"}
    lines = [f"{title}: {fit.formula}"]
    if not fit.meaningful:
        lines.append(f"  not a result: {fit.shows or fit.verdict}")
        lines.append(f"  verdict: {fit.verdict}")
        return lines
    cells = [(labels[name], *_interval(fit, name, units.get(name, ""))) for name in fit.params]
    w0 = max(len(c[0]) for c in cells)
    w1 = max(len(c[1]) for c in cells)
    for label, value, interval in cells:
        lines.append(f"  {label:<{w0}} = {value:>{w1}}   {interval}")
    dof = f", {fit.dof} degree{'s' if fit.dof != 1 else ''} of freedom" if fit.dof > 0 else ""
    weighted = ", weighted by the standard errors" if fit.weighted else ""
    lines.append(f"  R² {format_r2(fit.r2)} (n = {fit.n}{dof}{weighted})")
    lines.append(f"  verdict: {fit.verdict}")
    lines += [f"  note: {n}" for n in fit.notes]
    return lines


def fit_lines(result: TableFit) -> list[str]:
    """What ``batchscope fit`` prints: the input, each model, and the U-shape verdict."""
    t = result.table
    what = {
        "per-sample": "time per sample",
        "per-step": "time per step (divided by the batch size: time per sample)",
        "per-epoch": "time per epoch of a fixed data set",
        "throughput": "throughput (samples/s)",
    }[t.kind]
    spread = (
        f"standard errors from column {t.spread_column!r} weight the fit"
        if t.spreads is not None
        else "no standard-error column: an unweighted fit, nothing judged against noise"
    )
    lines = [
        f"{t.path}: {len(t.batch_sizes)} batch sizes ({t.batch_sizes[0]}–{t.batch_sizes[-1]}); "
        f"column {t.value_column!r} read as {what} (from the {t.kind_source}); {spread}",
    ]
    lines += [f"note: {n}" for n in t.notes]
    time_units = {"c": "", "alpha": "", "t_min": "s"}
    lines += [""] + _model_lines(f"time model ({result.time_quantity})", result.time, time_units)
    lines += [""] + _model_lines(
        f"throughput model ({result.throughput_quantity})", result.throughput, {}
    )
    u = result.u_shape
    lines += ["", f"U shape: {u.message}"]
    return lines
