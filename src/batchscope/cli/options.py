"""Options shared by several commands, declared once (typer ``Annotated`` types)."""

from __future__ import annotations

from typing import Annotated

import typer

WorkloadArg = Annotated[
    str,
    typer.Argument(
        help="A built-in name (see 'batchscope workloads'), 'module:function' or "
        "'path/to/file.py:function' returning a batchscope.Workload.",
        show_default=False,
    ),
]


DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        rich_help_panel="What to run",
        metavar="FOLDER",
        help="Image folder, one sub-folder per class (resnet18); split 80/20 with a fixed seed.",
        show_default=False,
    ),
]


WeightsOpt = Annotated[
    str | None,
    typer.Option(
        "--weights",
        rich_help_panel="What to run",
        metavar="FILE",
        help="State-dict file for the model body (resnet18), "
        "loaded with weights_only=True. Nothing is downloaded.",
        show_default=False,
    ),
]


ImagesOpt = Annotated[
    int | None,
    typer.Option(
        "--images",
        rich_help_panel="What to run",
        metavar="N",
        help="How many built-in samples to generate (resnet18 default 600, like the write-ups).",
        show_default=False,
        min=2,
    ),
]


#: the smallest --image-size (equal to ``workloads.resnet18.MIN_IMAGE_SIZE``, which
#: imports torch and so is not read here; a test holds the two equal)
MIN_IMAGE_SIZE = 32

ImageSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--image-size",
        rich_help_panel="What to run",
        metavar="PIXELS",
        help="Side of the square images (resnet18 only; default 192, like the write-ups; "
        f"at least {MIN_IMAGE_SIZE}).",
        show_default=False,
        min=MIN_IMAGE_SIZE,
    ),
]


StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        metavar="FILE",
        help="SQLite results store (default: batchscope-results/batchscope.db)",
        show_default=False,
    ),
]


WideOpt = Annotated[
    bool,
    typer.Option(
        "--wide",
        metavar="",
        rich_help_panel="Outputs",
        help="The full table (interval of samples/s, MFU, time, samples/epoch) even in a "
        "terminal narrower than 120 columns.",
    ),
]


NoPeakOpt = Annotated[
    bool,
    typer.Option(
        "--no-peak",
        metavar="",
        rich_help_panel="How to measure",
        help="Measure no device peak: the trials keep their FLOP counts and FLOP/s but get "
        "no MFU. The peak (a few seconds of matmuls in a fresh process) is otherwise measured "
        "once per machine, device, dtype and threads and cached in the store. "
        "BATCHSCOPE_NO_PEAK=1 does the same.",
    ),
]


ExecutorOpt = Annotated[
    str,
    typer.Option(
        "--executor",
        metavar="local|gpus|ray",
        rich_help_panel="Many trials at once",
        help="local: one trial after another (default); gpus: this node, one trial per "
        "visible GPU at a time, each pinned with CUDA_VISIBLE_DEVICES; ray: each trial a Ray "
        "task (a local Ray cluster, or --ray-address). Parallel trials on one machine perturb "
        "each other: the run's notes say so.",
    ),
]


RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        metavar="ADDRESS",
        rich_help_panel="Many trials at once",
        help="With --executor ray: join this Ray cluster (host:port, or 'auto'); without it "
        "a local Ray cluster is started for the sweep.",
        show_default=False,
    ),
]

SeqLensOpt = Annotated[
    str | None,
    typer.Option(
        "--seq-lens",
        rich_help_panel="What to run",
        metavar="LENGTHS",
        help="Sequence lengths, a sweep axis beside the batch size (gpt; e.g. 128,256,512): "
        "each length is its own series, and throughput is counted in tokens "
        "(batch × length). Default: the workload's own (gpt: 128).",
        show_default=False,
    ),
]


ParallelCpuTrialsOpt = Annotated[
    bool,
    typer.Option(
        "--parallel-cpu-trials",
        metavar="",
        rich_help_panel="Many trials at once",
        help="With --executor gpus or ray: let CPU-device trials run at the same time on one "
        "machine (by default never two at once: they would share its cores).",
    ),
]

LayersOpt = Annotated[
    int | None,
    typer.Option(
        "--layers",
        rich_help_panel="What to run",
        metavar="N",
        help="Transformer blocks (gpt only; default 2).",
        show_default=False,
        min=1,
    ),
]

WidthOpt = Annotated[
    int | None,
    typer.Option(
        "--width",
        rich_help_panel="What to run",
        metavar="N",
        help="Embedding width (gpt only; default 128; divisible by --heads).",
        show_default=False,
        min=1,
    ),
]

HeadsOpt = Annotated[
    int | None,
    typer.Option(
        "--heads",
        rich_help_panel="What to run",
        metavar="N",
        help="Attention heads (gpt only; default 4).",
        show_default=False,
        min=1,
    ),
]


WorldSizesOpt = Annotated[
    str | None,
    typer.Option(
        "--world-sizes",
        rich_help_panel="Data parallel",
        metavar="SIZES",
        help="Run every trial data parallel with each of these numbers of ranks (1,2,4), "
        "launched by torch's elastic launcher (torchrun) with DistributedDataParallel: gloo "
        "on CPUs, NCCL on GPUs, one device per rank. --batch-sizes are then per device.",
        show_default=False,
    ),
]


GlobalBatchSizesOpt = Annotated[
    str | None,
    typer.Option(
        "--global-batch-sizes",
        rich_help_panel="Data parallel",
        metavar="SIZES",
        help="With --world-sizes, instead of --batch-sizes: fixed global batches divided "
        "across the ranks (strong scaling); each must be divisible by every world size "
        "× --accumulate.",
        show_default=False,
    ),
]


NnodesOpt = Annotated[
    int,
    typer.Option(
        "--nnodes",
        rich_help_panel="Data parallel",
        metavar="N",
        help="Nodes each data-parallel trial spans (passed to torch's launcher; run the same "
        "command on every node, with --rdzv-endpoint).",
        min=1,
    ),
]


RdzvEndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--rdzv-endpoint",
        rich_help_panel="Data parallel",
        metavar="HOST:PORT",
        help="The c10d rendezvous of a data-parallel trial across nodes (default: this "
        "node, a free port).",
        show_default=False,
    ),
]
