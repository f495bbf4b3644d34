"""``batchscope maxbs``: the largest batch size that fits a memory budget, verified."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from batchscope.cli.app import app, cli_state
from batchscope.cli.common import default_threads, workload_options
from batchscope.cli.console import stderr, stdout
from batchscope.cli.display import SearchDisplay
from batchscope.cli.options import DataOpt, ImageSizeOpt, ImagesOpt, WeightsOpt

if TYPE_CHECKING:
    from rich.console import Console

    from batchscope.run.maxbs import MaxBatchResult, SearchTrial

MAXBS_EPILOG = """\
How it searches: two small probe sizes, a line memory(b) = a + m·b through their
peaks, a jump to the largest size the line allows under the budget, then
verification and bisection until the size one --granularity step above the answer
has failed; a bisection skips sizes the line already rules out. Every attempt is
--steps training steps (default 2: the peak comes once the optimizer state exists)
and one validation step in a fresh process; the answer is re-run until it has passed
--verify-repeats times, and once more if the boundary looks unrepeatable.

The budget: --memory-limit; without it, a GPU's free memory, or on the CPU the
memory available on the machine. On the CPU a trial fails when its measured peak
(growth of resident memory over the set-up) exceeds the budget less --margin.

Examples:

  batchscope maxbs resnet18 --device cpu --memory-limit 4GiB

  batchscope maxbs simplecnn --memory-limit 1GiB --granularity 8 --margin 0.1 --json m.json

  batchscope maxbs my_project/train.py:make_workload --device cuda

  batchscope maxbs --lightning examples/lightning_digits.py:make --memory-limit 256MiB
"""


@app.command(epilog=MAXBS_EPILOG)
def maxbs(
    ctx: typer.Context,
    workload: Annotated[
        str | None,
        typer.Argument(
            help="A built-in name (see 'batchscope workloads'), 'module:function' or "
            "'path/to/file.py:function' returning a batchscope.Workload. Omit it with "
            "--lightning.",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        str,
        typer.Option("--device", "-d", help="cpu, cuda, cuda:N, mps or xpu."),
    ] = "cpu",
    memory_limit: Annotated[
        str | None,
        typer.Option(
            "--memory-limit",
            help="The memory budget, e.g. 4GiB or 512MB (default: a GPU's free memory; "
            "on the CPU, the memory available).",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps",
            help="Training steps per attempt (then one validation step). Default: 2, "
            "as many as the peak needs (the optimizer state exists after the first).",
            show_default=False,
        ),
    ] = None,
    granularity: Annotated[
        int | None,
        typer.Option(
            "--granularity",
            metavar="G",
            help="The answer is a multiple of this. Default: 8 on a GPU (tensor cores work "
            "in multiples of 8), 1 on the CPU.",
            show_default=False,
        ),
    ] = None,
    margin: Annotated[
        float,
        typer.Option(
            "--margin", help="Fraction of the budget kept free, in [0, 1): 0.1 keeps 10 %."
        ),
    ] = 0.0,
    start: Annotated[
        int | None,
        typer.Option(
            "--start",
            help="The first size tried (default: 8, rounded up to --granularity).",
            show_default=False,
        ),
    ] = None,
    max_batch_size: Annotated[
        int | None,
        typer.Option(
            "--max-batch-size",
            help="Search no higher than this (default and upper bound: the training set size).",
            show_default=False,
        ),
    ] = None,
    verify_repeats: Annotated[
        int,
        typer.Option(
            "--verify-repeats",
            help="How many times the answer must run and pass (1: no re-run unless "
            "the boundary looks unrepeatable, then one more).",
        ),
    ] = 1,
    trial_timeout: Annotated[
        float | None,
        typer.Option(
            "--trial-timeout",
            help="Seconds before an attempt is stopped and counted as not fitting.",
            show_default=False,
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            help="torch.set_num_threads for every attempt (default: all cores available).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for weights, data order and data.")] = 0,
    data: DataOpt = None,
    weights: WeightsOpt = None,
    images: ImagesOpt = None,
    image_size: ImageSizeOpt = None,
    json_path: Annotated[
        str | None,
        typer.Option(
            "--json", help="Write the answer and every attempt as JSON.", show_default=False
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    lightning_entry: Annotated[
        str | None,
        typer.Option(
            "--lightning",
            metavar="ENTRY",
            help="Search your LightningModule: 'module:make' or 'file.py:make', where "
            "make(batch_size) returns (module, datamodule) or (module, train_loader"
            "[, val_loader]); each attempt is a Trainer fit of --steps steps and one "
            "validation batch in a fresh process (needs 'pip install batchscope\\[lightning]').",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Find the largest batch size that trains within a memory budget."""
    import json

    from batchscope.errors import UsageError
    from batchscope.report.export import check_writable, write_text
    from batchscope.run.maxbs import ATTEMPT_STEPS, check_args, find_max_batch_size
    from batchscope.units import parse_bytes

    if json_path:
        check_writable(json_path, "--json")
    framework = "torch"
    if lightning_entry is not None:
        if workload is not None:
            raise UsageError("give one of WORKLOAD and --lightning, not both")
        if not lightning_entry.strip():
            raise UsageError("--lightning is empty: name 'module:make' or 'file.py:make'")
        if data or weights or images is not None or image_size:
            raise UsageError(
                "--data, --weights, --images and --image-size are for built-in workloads: "
                "your --lightning module provides the data"
            )
        workload, framework = lightning_entry, "lightning"
    elif workload is None:
        raise UsageError(
            "what should be searched? give a WORKLOAD (e.g. simplecnn; see 'batchscope "
            "workloads') or --lightning module:make"
        )
    limit = parse_bytes(memory_limit, what="--memory-limit") if memory_limit is not None else None
    if threads is not None and threads < 1:
        raise UsageError(f"--threads {threads} must be at least 1")
    if granularity is None:  # tensor cores want multiples of 8; a CPU has no such grain
        granularity = 1 if device.strip().lower() == "cpu" else 8
    # every flag is checked before the workload is loaded
    check_args(
        steps=ATTEMPT_STEPS if steps is None else steps,
        granularity=granularity,
        margin=margin,
        start=start,
        max_batch_size=max_batch_size,
        threads=threads,
        verify_repeats=verify_repeats,
        memory_limit_bytes=limit,
        trial_timeout_s=trial_timeout,
    )
    options = workload_options(
        data, weights, images, seed, image_size=image_size, workload=workload
    )
    err = stderr()
    display = SearchDisplay(err, enabled=not quiet)
    with display:
        result = find_max_batch_size(
            workload,
            device=device,
            memory_limit_bytes=limit,
            steps=steps,
            granularity=granularity,
            margin=margin,
            start=start,
            max_batch_size=max_batch_size,
            workload_options=options,
            threads=threads or default_threads(),
            seed=seed,
            verify_repeats=verify_repeats,
            trial_timeout_s=trial_timeout,
            on_event=display.on_event,
            debug=cli_state(ctx).debug,
            framework=framework,
        )
    print_result(result, stdout())
    if json_path:
        write_text(json_path, json.dumps(result.to_dict(), indent=2) + "\n", "--json")
        if not quiet:
            err.print(f"wrote {json_path}", highlight=False)
    if result.max_batch_size is None:
        raise typer.Exit(1)


def _outcome(trial: SearchTrial) -> str:
    if trial.fits:
        return "[green]fits[/]"
    return f"[red]{trial.status}[/]"


def print_result(result: MaxBatchResult, console: Console) -> None:
    """The answer, every attempt, the memory line and the time: what ``maxbs`` prints."""
    from rich.table import Table

    from batchscope.units import format_bytes, format_seconds

    budget = f"{format_bytes(result.budget_bytes)} ({result.budget_source})"
    if result.margin:
        budget += f" less a {result.margin:g} margin = {format_bytes(result.limit_bytes)}"
    where = f"{result.workload} on {result.device}, budget {budget}"
    if result.max_batch_size is None:
        console.print(f"[bold red]No batch size fits[/]: {where}", highlight=False)
    else:
        runs = result.verified_runs
        console.print(
            f"[bold]Largest batch size: {result.max_batch_size}[/]  ({where}; "
            f"passed {runs} run{'s' if runs != 1 else ''})",
            highlight=False,
        )
        if result.limited_by != "memory":
            cap = "training set size" if result.limited_by == "training set" else "--max-batch-size"
            console.print(f"limited by the {cap}, not by memory", highlight=False)
        elif result.smallest_failure is not None:
            failed = next(
                t for t in result.trials if t.batch_size == result.smallest_failure and not t.fits
            )
            why = failed.error or failed.status
            console.print(f"batch size {result.smallest_failure} does not: {why}", highlight=False)
    if result.uncertain_band:
        lo, hi = result.uncertain_band
        sizes = f"batch size {lo}" if lo == hi else f"batch sizes {lo}–{hi}"
        console.print(
            f"[yellow]uncertain:[/] {sizes} passed and failed on different runs: outcomes "
            "there are not repeatable, so the answer is the largest size below that passed "
            "every run",
            highlight=False,
        )
    table = Table(box=None, pad_edge=False)
    for col, justify in (
        ("#", "right"),
        ("Batch size", "right"),
        ("Why", "left"),
        ("Outcome", "left"),
        ("Peak memory", "right"),
        ("Step time", "right"),
        ("Trial time", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for i, t in enumerate(result.trials, 1):
        table.add_row(
            str(i),
            str(t.batch_size),
            t.reason,
            _outcome(t),
            format_bytes(t.peak_memory_bytes),
            format_seconds(t.step_time_s),
            format_seconds(t.seconds),
        )
    console.print(table)
    fit = result.memory_fit
    if fit is not None:
        line = (
            f"memory ≈ {format_bytes(fit.a_bytes)} + {format_bytes(fit.m_bytes_per_sample)} × "
            f"batch size (R² {fit.r2:.4f}, {fit.n} points"
        )
        if fit.m_ci95_bytes is not None:
            lo_m, hi_m = fit.m_ci95_bytes
            line += f"; per sample 95 % CI {format_bytes(lo_m)}–{format_bytes(hi_m)}"
        console.print(line + ")", highlight=False)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    n = len(result.trials)
    console.print(
        f"{n} trial{'s' if n != 1 else ''} in {format_seconds(result.seconds)}", highlight=False
    )
