"""``batchscope sweep``: a batch-size sweep, its table, verdicts and report."""

from __future__ import annotations

from typing import Annotated

import typer

from batchscope.cli.app import app, cli_state
from batchscope.cli.common import given_params
from batchscope.cli.options import (
    DataOpt,
    ExecutorOpt,
    GlobalBatchSizesOpt,
    HeadsOpt,
    ImageSizeOpt,
    ImagesOpt,
    LayersOpt,
    NnodesOpt,
    NoPeakOpt,
    ParallelCpuTrialsOpt,
    RayAddressOpt,
    RdzvEndpointOpt,
    SeqLensOpt,
    WeightsOpt,
    WideOpt,
    WidthOpt,
    WorldSizesOpt,
)
from batchscope.cli.request import build_sweep_request
from batchscope.cli.run_report import run_and_report

SWEEP_EPILOG = """\
Examples (the experiments of the four write-ups batchscope replaces):

  batchscope sweep resnet18 --batch-sizes 16..256 --epochs 3 --freeze-epochs 1

  batchscope sweep resnet18 --data ~/birds --devices cpu,cuda --epochs 3 --freeze-epochs 1

  batchscope sweep simplecnn --batch-sizes 32,256 --steps 50 --json r.json

  batchscope sweep linear --batch-sizes 32,128,512 --epochs 10

  batchscope sweep gpt --batch-sizes 4,16,64 --seq-lens 128,256 --max-time 3s

  batchscope sweep my_project/train.py:make_workload --batch-sizes 8..128

Where you already train (fastai, Keras 3 on the PyTorch backend, Lightning):

  batchscope sweep --fastai examples/fastai_pets.py:make_learner -b 16..256 --fit "fine_tune(3)"

  batchscope sweep --keras examples/keras_linear.py:make_model -b 32..1024 --epochs 3

  batchscope sweep --lightning examples/lightning_digits.py:make -b 16..256 --steps 30
"""


@app.command(epilog=SWEEP_EPILOG)
def sweep(
    ctx: typer.Context,
    workload: Annotated[
        str | None,
        typer.Argument(
            help="A built-in name (see 'batchscope workloads'), 'module:function' or "
            "'path/to/file.py:function' returning a batchscope.Workload. Omit it with "
            "--fastai, --keras or --lightning.",
            show_default=False,
        ),
    ] = None,
    batch_sizes: Annotated[
        str,
        typer.Option(
            "--batch-sizes",
            "-b",
            rich_help_panel="What to run",
            metavar="SIZES",
            help="Comma list (16,32,64), a doubling range (16..256: 16, 32, ..., 256), a "
            "linear range (16..128:16: 16, 32, 48, ...), or a mix.",
        ),
    ] = "16,32,64,128,256",
    devices: Annotated[
        str,
        typer.Option(
            "--devices",
            "-d",
            rich_help_panel="Devices and variants",
            metavar="DEVICES",
            help="cpu, cuda, cuda:N, mps, a comma list, "
            "or auto (cpu and every GPU present). Default: the fastest device "
            "present.",
            show_default=False,
        ),
    ] = "best",
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps",
            rich_help_panel="How to measure",
            metavar="N",
            help="Measure exactly this many training steps per trial. Without --steps or "
            "--epochs each trial measures until its median step is known to --max-error.",
            show_default=False,
        ),
    ] = None,
    max_error: Annotated[
        str | None,
        typer.Option(
            "--max-error",
            rich_help_panel="How to measure",
            metavar="FRACTION",
            help="Adaptive steps: stop once the 95 % interval of the median step time is "
            "within ± this (2% or 0.02). Default: 2%.",
            show_default=False,
        ),
    ] = None,
    max_time: Annotated[
        str | None,
        typer.Option(
            "--max-time",
            rich_help_panel="How to measure",
            metavar="DURATION",
            help="Adaptive steps: stop a trial after this long even if --max-error is not "
            "reached (15s, 2m; the trial then says so). Default: 15s.",
            show_default=False,
        ),
    ] = None,
    min_steps: Annotated[
        int | None,
        typer.Option(
            "--min-steps",
            rich_help_panel="How to measure",
            metavar="N",
            help="Adaptive steps: never fewer measured steps than this (default 10; an "
            "interval of the median needs at least 6).",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs",
            rich_help_panel="How to measure",
            metavar="N",
            help="Run a protocol of N epochs instead, "
            "validating after each (like fastai's fine_tune).",
            show_default=False,
        ),
    ] = None,
    freeze_epochs: Annotated[
        int,
        typer.Option(
            "--freeze-epochs",
            rich_help_panel="How to measure",
            metavar="K",
            help="With --epochs: first train only the head "
            "and normalisation layers for K epochs (fine_tune(N) = 1 + N).",
        ),
    ] = 0,
    warmup: Annotated[
        int | None,
        typer.Option(
            "--warmup",
            rich_help_panel="How to measure",
            metavar="N",
            help="Untimed warm-up steps per trial; the model is restored afterwards "
            "(default: 3; with --fastai/--keras/--lightning 1: their first steps are "
            "trained as part of the protocol and only left out of the step statistics).",
            show_default=False,
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            rich_help_panel="How to measure",
            metavar="N",
            help="torch.set_num_threads for every trial "
            "(default: all cores available to this process).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            rich_help_panel="What to run",
            metavar="N",
            help="Seed for weights, data order and data.",
        ),
    ] = 0,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            rich_help_panel="How to measure",
            metavar="N",
            help="DataLoader worker processes.",
        ),
    ] = 0,
    drop_last: Annotated[
        bool,
        typer.Option(
            "--drop-last",
            rich_help_panel="How to measure",
            metavar="",
            help="Drop the last partial training batch (fastai does).",
        ),
    ] = False,
    repeats: Annotated[
        str,
        typer.Option(
            "--repeats",
            rich_help_panel="Rounds",
            metavar="N|auto",
            help="Rounds: run the whole grid N times, a fresh process per trial, the order of "
            "batch sizes rotated each round (seeds seed, seed+1, ...); the spread between "
            "rounds enters every interval. 'auto': add rounds (from 2) until the verdicts "
            "stop changing, at most --max-rounds or --time-budget.",
        ),
    ] = "1",
    max_rounds: Annotated[
        int,
        typer.Option(
            "--max-rounds",
            rich_help_panel="Rounds",
            metavar="N",
            help="With --repeats auto: at most this many rounds.",
        ),
    ] = 5,
    time_budget: Annotated[
        str | None,
        typer.Option(
            "--time-budget",
            rich_help_panel="Rounds",
            metavar="DURATION",
            help="With --repeats auto: start no new round after this long (e.g. 10m).",
            show_default=False,
        ),
    ] = None,
    wide: WideOpt = False,
    no_peak: NoPeakOpt = False,
    data: DataOpt = None,
    weights: WeightsOpt = None,
    images: ImagesOpt = None,
    image_size: ImageSizeOpt = None,
    seq_lens: SeqLensOpt = None,
    layers: LayersOpt = None,
    width: WidthOpt = None,
    heads: HeadsOpt = None,
    json_path: Annotated[
        str | None,
        typer.Option(
            "--json",
            rich_help_panel="Outputs",
            metavar="FILE",
            help="Write the results JSON (schema batchscope.results/1).",
            show_default=False,
        ),
    ] = None,
    csv_path: Annotated[
        str | None,
        typer.Option(
            "--csv",
            rich_help_panel="Outputs",
            metavar="FILE",
            help="Write one CSV row per trial.",
            show_default=False,
        ),
    ] = None,
    markdown_path: Annotated[
        str | None,
        typer.Option(
            "--markdown",
            rich_help_panel="Outputs",
            metavar="FILE",
            help="Write a Markdown report.",
            show_default=False,
        ),
    ] = None,
    store_path: Annotated[
        str | None,
        typer.Option(
            "--store",
            rich_help_panel="Store and resume",
            metavar="FILE",
            help="SQLite results store (default: batchscope-results/batchscope.db)",
            show_default=False,
        ),
    ] = None,
    no_store: Annotated[
        bool,
        typer.Option(
            "--no-store",
            rich_help_panel="Store and resume",
            metavar="",
            help="Keep nothing on disk but the exports you ask for.",
        ),
    ] = False,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            rich_help_panel="Store and resume",
            metavar="RUN_ID",
            help="Run only the trials of this run id that have no result yet.",
            show_default=False,
        ),
    ] = None,
    isolation: Annotated[
        str,
        typer.Option(
            "--isolation",
            rich_help_panel="How to measure",
            metavar="process|none",
            help="process: each trial in a fresh "
            "child process (survives OOM and crashes); none: "
            "in this process, for debugging.",
        ),
    ] = "process",
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    parallel_cpu_trials: ParallelCpuTrialsOpt = False,
    trial_timeout: Annotated[
        float | None,
        typer.Option(
            "--trial-timeout",
            rich_help_panel="How to measure",
            metavar="SECONDS",
            help="Seconds before a trial is stopped and recorded as 'timeout'.",
            show_default=False,
        ),
    ] = None,
    memory_limit: Annotated[
        str | None,
        typer.Option(
            "--memory-limit",
            rich_help_panel="How to measure",
            metavar="SIZE",
            help="CPU: treat a trial whose peak memory exceeds this (e.g. 4GiB) as out of memory.",
            show_default=False,
        ),
    ] = None,
    breakdown: Annotated[
        bool,
        typer.Option(
            "--breakdown",
            rich_help_panel="How to measure",
            metavar="",
            help="Split each step into data wait, host-to-device copy, forward, backward and "
            "optimizer by synchronising the device between them (the syncs cost time "
            "themselves, so step times grow a little).",
        ),
    ] = False,
    sample_interval: Annotated[
        float,
        typer.Option(
            "--sample-interval",
            rich_help_panel="How to measure",
            metavar="SECONDS",
            help="Seconds between hardware readings (utilisation, memory, power, energy) "
            "during each trial; 0 turns the sampler off.",
        ),
    ] = 0.1,
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            rich_help_panel="Devices and variants",
            metavar="LIST",
            help="Comma list of fp32, bf16, fp16: each a further axis of the grid (autocast; "
            "fp16 with a gradient scaler). A precision the device cannot do is recorded "
            "as 'unsupported'.",
        ),
    ] = "fp32",
    channels_last: Annotated[
        bool,
        typer.Option(
            "--channels-last",
            rich_help_panel="Devices and variants",
            metavar="",
            help="Model and 4-D inputs in torch.channels_last memory format.",
        ),
    ] = False,
    compile_model: Annotated[
        bool,
        typer.Option(
            "--compile",
            rich_help_panel="Devices and variants",
            metavar="",
            help="torch.compile the model; the compile time (first warm-up step minus the "
            "median of the others) is reported apart as compile_time_s. Needs --warmup ≥ 1.",
        ),
    ] = False,
    accumulate: Annotated[
        int,
        typer.Option(
            "--accumulate",
            rich_help_panel="Devices and variants",
            metavar="K",
            help="Gradient accumulation: K micro-batches of the batch size per optimizer "
            "step (effective batch K × b; a timed step is the whole optimizer step).",
        ),
    ] = 1,
    lr_scaling: Annotated[
        str,
        typer.Option(
            "--lr-scaling",
            rich_help_panel="Devices and variants",
            metavar="RULE",
            help="none, linear (lr × b/b0, the usual rule for SGD) or sqrt (lr × √(b/b0), "
            "the usual rule for Adam), with b the effective batch size.",
        ),
    ] = "none",
    base_batch_size: Annotated[
        int | None,
        typer.Option(
            "--base-batch-size",
            rich_help_panel="Devices and variants",
            metavar="B0",
            help="b0 for --lr-scaling: the batch size the workload's lr was tuned for "
            "(default: the smallest effective batch size of the sweep).",
            show_default=False,
        ),
    ] = None,
    lr_warmup_steps: Annotated[
        int,
        typer.Option(
            "--lr-warmup-steps",
            rich_help_panel="Devices and variants",
            metavar="N",
            help="Ramp the lr linearly over the first N optimizer steps of the measured "
            "protocol (lr × 1/N, 2/N, ... 1).",
        ),
    ] = 0,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            rich_help_panel="How to measure",
            metavar="METRIC=VALUE",
            help="With --epochs: METRIC=VALUE (accuracy=0.95, error_rate=0.05, val_loss=0.2); "
            "record the epoch, wall time and samples at which validation first reaches it "
            "(≤ for val_loss and names ending in loss/error/error_rate, else ≥).",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", rich_help_panel="Outputs", metavar="", help="No progress display."
        ),
    ] = False,
    out_dir: Annotated[
        str | None,
        typer.Option(
            "--out",
            rich_help_panel="Outputs",
            metavar="FOLDER",
            help="Write the report (report.html, report.md, PNG plots) into this folder "
            "(default: batchscope-results/RUN_ID/; none with --no-store).",
            show_default=False,
        ),
    ] = None,
    no_report: Annotated[
        bool,
        typer.Option(
            "--no-report",
            rich_help_panel="Outputs",
            metavar="",
            help="Write no report folder at the end.",
        ),
    ] = False,
    world_sizes: WorldSizesOpt = None,
    global_batch_sizes: GlobalBatchSizesOpt = None,
    nnodes: NnodesOpt = 1,
    rdzv_endpoint: RdzvEndpointOpt = None,
    fastai_entry: Annotated[
        str | None,
        typer.Option(
            "--fastai",
            rich_help_panel="fastai, Keras and Lightning",
            metavar="ENTRY",
            help="Sweep your fastai Learner: 'module:make_learner' or 'file.py:make_learner', "
            "where make_learner(bs) returns a Learner whose DataLoaders use batch size bs. "
            "Each trial runs --fit (needs 'pip install batchscope\\[fastai]').",
            show_default=False,
        ),
    ] = None,
    fit: Annotated[
        str | None,
        typer.Option(
            "--fit",
            rich_help_panel="fastai, Keras and Lightning",
            metavar="PROTOCOL",
            help="With --fastai: the protocol each trial runs, e.g. 'fine_tune(3)', "
            "'fit_one_cycle(3)', 'fit(2, lr=1e-3)' (default: fine_tune(1)).",
            show_default=False,
        ),
    ] = None,
    keras_entry: Annotated[
        str | None,
        typer.Option(
            "--keras",
            rich_help_panel="fastai, Keras and Lightning",
            metavar="ENTRY",
            help="Sweep your Keras 3 model on the PyTorch backend: 'module:make_model', where "
            "make_model() returns a compiled model and the module holds x_train, y_train "
            "(or load_data()); each trial runs model.fit(batch_size=b) for --epochs "
            "(default 1; needs 'pip install batchscope\\[keras]').",
            show_default=False,
        ),
    ] = None,
    lightning_entry: Annotated[
        str | None,
        typer.Option(
            "--lightning",
            rich_help_panel="fastai, Keras and Lightning",
            metavar="ENTRY",
            help="Sweep your LightningModule: 'module:make' or 'file.py:make', where "
            "make(batch_size) returns (module, datamodule) or (module, train_loader"
            "[, val_loader]); each trial runs a Trainer for --steps, --epochs or adaptive "
            "steps (needs 'pip install batchscope\\[lightning]').",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run a batch-size sweep and print the table (per device) with speedups.

    The workload is a built-in, your own batchscope.Workload, your fastai Learner
    (--fastai), your Keras model (--keras) or your LightningModule (--lightning).
    """
    values = {k: v for k, v in locals().items() if k != "ctx"}
    request = build_sweep_request(values, given_params(ctx))
    run_and_report(request, cli_state(ctx))
