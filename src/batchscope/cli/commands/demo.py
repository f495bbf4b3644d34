"""``batchscope demo``: the seeds' ResNet-18 batch-size experiment on the built-in photos."""

from __future__ import annotations

from typing import Annotated

import typer

from batchscope.cli.app import app, cli_state
from batchscope.cli.common import default_threads, workload_options
from batchscope.cli.options import WideOpt
from batchscope.cli.request import SweepRequest
from batchscope.cli.run_report import run_and_report


@app.command()
def demo(
    ctx: typer.Context,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="The seed's exact protocol: 600 images, "
            "80/20, fine_tune(3) = 1 frozen + 3 epochs (~15 min "
            "per device on a 2-core CPU).",
        ),
    ] = False,
    devices: Annotated[str, typer.Option("--devices", "-d", help="Devices to compare.")] = "auto",
    batch_sizes: Annotated[
        str | None,
        typer.Option(
            "--batch-sizes",
            "-b",
            help="Comma list or power-of-two range. Default: 16..128 (the 128 training "
            "images hold no batch of 256); with --full 16..256, as in the seeds.",
            show_default=False,
        ),
    ] = None,
    json_path: Annotated[
        str | None,
        typer.Option(
            "--json", help="Write the results JSON (batchscope.results/1).", show_default=False
        ),
    ] = None,
    no_store: Annotated[
        bool, typer.Option("--no-store", help="Keep nothing on disk but the --json you ask for.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    wide: WideOpt = False,
) -> None:
    """Reproduce the seed experiment: ResNet-18 on 192×192 photos, batch sizes 16–128 or 16–256."""
    if json_path:
        from batchscope.report.export import check_writable

        check_writable(json_path, "--json")
    if batch_sizes is None:
        batch_sizes = "16..256" if full else "16..128"
    if full:
        images, epochs, freeze, warmup = 600, 3, 1, 3
        what = (
            "demo --full: ResNet-18 on 600 built-in 192×192 photos (480 train / 120 "
            "validation), fine_tune(3) = 1 frozen + 3 epochs, warm-up 3 steps"
        )
    else:
        images, epochs, freeze, warmup = 160, 1, 0, 1
        what = (
            "demo: ResNet-18 on 160 built-in 192×192 photos (128 train / 32 validation), "
            "1 epoch, warm-up 1 step — reduced from the seed's 600 images and fine_tune(3) "
            "to finish in under 2 minutes on a 2-core CPU; batch sizes 16–128 (b=256 "
            "would be larger than the 128 training images, and b=128 times a single "
            "step); 'batchscope demo --full' runs the seed's protocol and batch sizes"
        )
    protocol = dict(
        steps=None,
        epochs=epochs,
        freeze_epochs=freeze,
        warmup=warmup,
        threads=default_threads(),
        seed=0,
        workers=0,
        drop_last=False,
        repeats=1,
        memory_limit_bytes=None,
    )
    request = SweepRequest(
        workload="resnet18",
        options=workload_options(None, None, images, 0),
        batch_sizes=batch_sizes,
        devices=devices,
        protocol=protocol,
        no_store=no_store,
        json_path=json_path,
        quiet=quiet,
        announce=what,
        wide=wide,
    )
    run_and_report(request, cli_state(ctx))
