"""``batchscope noise``: the gradient noise scale and, with a sweep, the goodput."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from batchscope.cli.app import app
from batchscope.cli.common import store_for_reading, workload_options
from batchscope.cli.console import stderr, stdout
from batchscope.cli.options import (
    DataOpt,
    ImageSizeOpt,
    ImagesOpt,
    StoreOpt,
    WeightsOpt,
    WorkloadArg,
)

if TYPE_CHECKING:
    from batchscope.core.results import RunResult
    from batchscope.run.noise_run import GoodputChoice, GoodputRow, NoiseEstimate

NOISE_EPILOG = """\
How: a short training run at --batch-size; each step's batch is split into
--micro-batches parts whose gradients give unbiased estimates of |G|² and tr(Σ)
(McCandlish et al. 2018, Appendix A). B_noise = tr(Σ)/|G|², averaged over steps
before dividing; the interval is a 95 % percentile bootstrap over steps.

E(b) = (B_noise + b0)/(B_noise + b) is the work a sample does at batch size b
relative to the smallest size b0; goodput(b) = throughput(b) × E(b).

Examples:

  batchscope noise digits --batch-size 256 --micro-batches 8 --steps 100

  batchscope sweep digits --batch-sizes 16..256 --json run.json
  batchscope noise digits --run run.json
"""


def _load_run(text: str, store_path: str | None, no_store: bool = False) -> RunResult:
    """A results JSON file, or a run id (prefix) in the results store."""

    if text.endswith(".json") or Path(text).expanduser().is_file():
        from batchscope.report.build import load_results_json

        return load_results_json(text)
    if no_store:
        from batchscope.errors import UsageError

        raise UsageError(f"--run {text}: with --no-store, --run takes a results JSON file")
    store = store_for_reading(store_path)
    return store.get_run(store.resolve_run_id(text))


@app.command(epilog=NOISE_EPILOG)
def noise(
    workload: WorkloadArg,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Base batch size B of the training run.")
    ] = 256,
    micro_batches: Annotated[
        int,
        typer.Option("--micro-batches", help="Split each batch into k micro-batches of B/k."),
    ] = 8,
    steps: Annotated[int, typer.Option("--steps", help="Training steps to measure.")] = 200,
    every: Annotated[
        int, typer.Option("--every", help="One estimate per this many steps (its window).")
    ] = 20,
    run_ref: Annotated[
        str | None,
        typer.Option(
            "--run",
            help="A sweep's results JSON or run id: goodput against its measured throughput.",
            show_default=False,
        ),
    ] = None,
    sizes_text: Annotated[
        str | None,
        typer.Option(
            "--batch-sizes",
            help="Batch sizes for the E(b) table (default: the --run's, else 16..1024).",
            show_default=False,
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or mps.")] = "cpu",
    seed: Annotated[int, typer.Option("--seed", help="Seed for weights, data order and data.")] = 0,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads", help="torch.set_num_threads (default: all cores).", show_default=False
        ),
    ] = None,
    data: DataOpt = None,
    weights: WeightsOpt = None,
    images: ImagesOpt = None,
    image_size: ImageSizeOpt = None,
    json_path: Annotated[
        str | None,
        typer.Option("--json", help="Write the estimates and goodput as JSON.", show_default=False),
    ] = None,
    store_path: StoreOpt = None,
    no_store: Annotated[
        bool,
        typer.Option(
            "--no-store",
            help="Touch no results store: noise never writes one, and with this it reads none "
            "either (--run then takes a results JSON file).",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Estimate the gradient noise scale (≈ critical batch size), E(b) and goodput."""
    import json

    from batchscope.cli.common import default_threads
    from batchscope.core.plan import check_device_names, parse_batch_sizes
    from batchscope.report.export import check_writable, write_text
    from batchscope.run.noise_run import (
        best_goodput,
        check_same_workload,
        check_settings,
        efficiency_table,
        estimate_noise_scale,
        goodput,
    )

    if json_path:
        check_writable(json_path, "--json")
    check_settings(batch_size, micro_batches, steps, every)
    check_device_names(device)
    if no_store and store_path is not None:
        from batchscope.errors import UsageError

        raise UsageError("--store and --no-store contradict each other")
    run = _load_run(run_ref, store_path, no_store) if run_ref else None
    if run is not None:
        check_same_workload(workload, run)
    if sizes_text is not None:
        sizes = parse_batch_sizes(sizes_text)
    elif run is not None:
        sizes = sorted({t.batch_size for t in run.trials if t.ok})
    else:
        sizes = parse_batch_sizes("16..1024")
    options = workload_options(
        data, weights, images, seed, image_size=image_size, workload=workload
    )
    err = stderr()
    with (
        err.status("estimating the gradient noise scale…", spinner="dots")
        if not quiet
        else contextlib.nullcontext()
    ) as status:

        def progress(done: int, total: int) -> None:
            if status is not None and (done % 10 == 0 or done == total):
                status.update(f"estimating the gradient noise scale: step {done}/{total}")

        est = estimate_noise_scale(
            workload,
            batch_size=batch_size,
            micro_batches=micro_batches,
            steps=steps,
            every=every,
            seed=seed,
            threads=default_threads() if threads is None else threads,
            device=device,
            workload_options=options,
            progress=progress,
        )
    efficiency = efficiency_table(est, sizes)
    rows = goodput(est, run) if run is not None else []
    choices = best_goodput(est, rows) if rows else []
    print_noise(est, efficiency, rows, choices)
    if json_path:
        from dataclasses import asdict

        from batchscope.core.results import json_safe

        payload = {
            "noise": est.to_dict(),
            "efficiency": json_safe(efficiency),
            "run_id": run.run_id if run is not None else None,
            "goodput": json_safe([asdict(r) for r in rows]),
            "best": [asdict(c) for c in choices],
        }
        write_text(json_path, json.dumps(payload, indent=2, allow_nan=False) + "\n", "--json")
        if not quiet:
            err.print(f"wrote {json_path}", highlight=False)


def _num(x: float, digits: int = 3) -> str:
    from batchscope.run.noise_run import format_noise

    if isinstance(x, float) and math.isnan(x):
        return "–"
    return format_noise(x) if digits == 3 else f"{x:.{digits}f}"


def print_noise(
    est: NoiseEstimate,
    efficiency: list[dict[str, float]],
    rows: list[GoodputRow],
    choices: list[GoodputChoice],
) -> None:
    """The curve over training, B_noise with its interval, E(b), goodput and the choice."""
    from rich.table import Table

    out = stdout()
    table = Table(
        title=f"Gradient noise scale of {est.workload} over training "
        f"(B={est.batch_size} = {est.micro_batches} × {est.micro_batch_size}, {est.device})",
        title_justify="left",
    )
    for col in ("Step", "Train loss", "B_simple", "95 % interval", "|G|²", "tr(Σ)"):
        table.add_column(col, justify="right")
    for p in est.points:
        table.add_row(
            str(p.step),
            f"{p.train_loss:.4g}" if p.train_loss is not None else "–",
            _num(p.b_simple),
            f"{_num(p.low)} – {_num(p.high)}",
            f"{p.grad_sq:.3g}",
            f"{p.trace_sigma:.3g}",
        )
    out.print(table)
    lines = [
        f"B_noise ≈ {_num(est.b_noise)} (95 % interval {_num(est.low)} – {_num(est.high)}, "
        f"percentile bootstrap over {est.steps} steps; steps close in training are "
        "correlated, so the interval is a lower bound): the critical batch size, beyond "
        "which a larger batch buys few fewer steps",
    ]
    lines += [f"note: {n}" for n in est.notes]
    for line in lines:
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if efficiency:
        eff = Table(title="Statistical efficiency per sample, relative to the smallest size")
        for col in ("Batch size", "E(b)", "95 % interval"):
            eff.add_column(col, justify="right")
        for r in efficiency:
            eff.add_row(
                str(int(r["batch_size"])),
                _num(r["efficiency"], 2),
                f"{_num(r['efficiency_low'], 2)} – {_num(r['efficiency_high'], 2)}",
            )
        out.print(eff)
    if rows:
        good = Table(title="Goodput = throughput × E(b) (useful samples/s)")
        for col in ("Device", "Batch size", "Samples/s", "E(b)", "Goodput", "95 % (B_noise only)"):
            good.add_column(col, justify="right")
        for g in rows:
            good.add_row(
                g.device,
                str(g.batch_size),
                f"{g.samples_per_s:,.0f}",
                _num(g.efficiency, 2),
                f"{g.goodput:,.0f}",
                f"{g.goodput_low:,.0f} – {g.goodput_high:,.0f}",
            )
        out.print(good)
    for c in choices:
        out.print(
            f"{c.device}: goodput-optimal: b={c.batch_size}: {c.reason}; "
            f"throughput-optimal: b={c.fastest_batch_size}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
