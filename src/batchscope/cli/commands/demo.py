"""``batchscope demo``: the write-ups' ResNet-18 batch-size experiment on the built-in photos."""

from __future__ import annotations

from typing import Annotated

import typer

from batchscope.cli.app import app, cli_state
from batchscope.cli.common import default_threads, workload_options
from batchscope.cli.options import WideOpt
from batchscope.cli.request import SweepRequest
from batchscope.cli.run_report import run_and_report

#: The quick demo's layout. Batch sizes ×4 apart: on a 2-core CPU neighbours at ×2 differ
#: by about as much as the machine's round-to-round drift, so their ordering would come
#: out differently from run to run; ×4 apart they differ by well beyond it.
QUICK_BATCH_SIZES = "2,8,32,128"
QUICK_IMAGE_SIZE = 32
QUICK_IMAGES = 160
QUICK_WARMUP = 3
QUICK_REPEATS = 3
QUICK_MAX_ERROR = 0.02
QUICK_MAX_TIME_S = 4.0
QUICK_MIN_STEPS = 10


@app.command()
def demo(
    ctx: typer.Context,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="The write-ups' exact protocol: 600 192×192 images, 80/20, fine_tune(3) = "
            "1 frozen + 3 epochs, batch sizes 16..256 (~15 min per device on a 2-core CPU).",
        ),
    ] = False,
    devices: Annotated[str, typer.Option("--devices", "-d", help="Devices to compare.")] = "auto",
    batch_sizes: Annotated[
        str | None,
        typer.Option(
            "--batch-sizes",
            "-b",
            help="Comma list or range. Default: 2,8,32,128 (×4 apart, so that "
            "neighbours differ by more than a busy CPU's drift); with --full 16..256, "
            "as in the write-ups.",
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
    """The write-ups' question, ResNet-18's best batch size on this machine, answered in ~2 minutes.

    The quick demo measures in steps mode: each trial times steps until its median is
    known to ±2 % or 4 s pass (at least 10 steps), in 3 interleaved rounds so the
    machine's drift enters every interval. --full runs the write-ups' own protocol.
    """
    if json_path:
        from batchscope.report.export import check_writable

        check_writable(json_path, "--json")
    if batch_sizes is None:
        batch_sizes = "16..256" if full else QUICK_BATCH_SIZES
    if full:
        what = (
            "demo --full: ResNet-18 on 600 built-in 192×192 photos (480 train / 120 "
            "validation), fine_tune(3) = 1 frozen + 3 epochs, warm-up 3 steps"
        )
        options = workload_options(None, None, 600, 0)
        protocol: dict[str, object] = dict(
            steps=None, epochs=3, freeze_epochs=1, warmup=3, repeats=1
        )
    else:
        what = (
            f"demo: ResNet-18 on built-in {QUICK_IMAGE_SIZE}×{QUICK_IMAGE_SIZE} photos, "
            f"batch sizes {batch_sizes}; each trial times training steps until its median "
            f"is known to ±{QUICK_MAX_ERROR:.0%} or {QUICK_MAX_TIME_S:g} s pass (at least "
            f"{QUICK_MIN_STEPS} steps, after {QUICK_WARMUP} warm-up), in {QUICK_REPEATS} "
            "interleaved rounds — smaller images than the write-ups' 192×192 and no epochs, "
            "to answer in about 2 minutes on a 2-core CPU; 'batchscope demo --full' runs "
            "the write-ups' photos, epochs and batch sizes"
        )
        options = workload_options(
            None, None, QUICK_IMAGES, 0, image_size=QUICK_IMAGE_SIZE, workload="resnet18"
        )
        protocol = dict(
            steps=None,
            epochs=None,
            freeze_epochs=0,
            warmup=QUICK_WARMUP,
            repeats=QUICK_REPEATS,
            max_error=QUICK_MAX_ERROR,
            max_time_s=QUICK_MAX_TIME_S,
            min_steps=QUICK_MIN_STEPS,
        )
    protocol.update(
        threads=default_threads(), seed=0, workers=0, drop_last=False, memory_limit_bytes=None
    )
    request = SweepRequest(
        workload="resnet18",
        options=options,
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
