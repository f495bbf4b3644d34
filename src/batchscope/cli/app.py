"""The command line: parse → call the Python API → print.

Results go to stdout, progress and messages to stderr, so ``batchscope sweep ... >
table.txt`` captures exactly the table. Every user error is one line and exit
status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from batchscope.errors import BatchscopeError, UsageError

app = typer.Typer(
    name="batchscope",
    help=(
        "Measure how batch size and hardware change training time and memory, "
        "and pick the batch size.\n\n"
        "Start with 'batchscope demo', then 'batchscope sweep WORKLOAD'. "
        "'batchscope workloads' lists the built-in workloads."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

_state: dict[str, Any] = {"debug": False}

SWEEP_EPILOG = """\
Examples (the seeds' experiments):

  batchscope sweep resnet18 --batch-sizes 16..256 --epochs 3 --freeze-epochs 1

  batchscope sweep resnet18 --data ~/birds --devices cpu,cuda --epochs 3 --freeze-epochs 1

  batchscope sweep simplecnn --batch-sizes 32,256 --steps 50 --json r.json

  batchscope sweep linear --batch-sizes 32,128,512 --epochs 10

  batchscope sweep my_project/train.py:make_workload --batch-sizes 8..128

Where you already train (fastai, Keras 3 on the PyTorch backend):

  batchscope sweep --fastai examples/fastai_pets.py:make_learner -b 16..256 --fit "fine_tune(3)"

  batchscope sweep --keras examples/keras_linear.py:make_model -b 32..1024 --epochs 3
"""


def stderr() -> Console:
    return Console(stderr=True)


def stdout() -> Console:
    """Results console: the terminal's width, or 140 columns when piped to a file."""
    if sys.stdout.isatty():
        return Console(soft_wrap=False)
    return Console(soft_wrap=False, width=140)


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


def default_threads() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# ---------------------------------------------------------------- options shared by commands

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
        help="Image folder, one sub-folder per class (resnet18); split 80/20 with a fixed seed.",
        show_default=False,
    ),
]
WeightsOpt = Annotated[
    str | None,
    typer.Option(
        "--weights",
        help="State-dict file for the model body (resnet18), "
        "loaded with weights_only=True. Nothing is downloaded.",
        show_default=False,
    ),
]
ImagesOpt = Annotated[
    int | None,
    typer.Option(
        "--images",
        help="How many built-in samples to generate (resnet18 default 600, like the seeds).",
        show_default=False,
        min=2,
    ),
]


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and the trial processes' own output.")
    ] = False,
) -> None:
    _state["debug"] = debug


# ---------------------------------------------------------------- sweep


@app.command(epilog=SWEEP_EPILOG)
def sweep(
    ctx: typer.Context,
    workload: Annotated[
        str | None,
        typer.Argument(
            help="A built-in name (see 'batchscope workloads'), 'module:function' or "
            "'path/to/file.py:function' returning a batchscope.Workload. Omit it with "
            "--fastai or --keras.",
            show_default=False,
        ),
    ] = None,
    batch_sizes: Annotated[
        str,
        typer.Option(
            "--batch-sizes",
            "-b",
            help="Comma list (16,32,64) or a power-of-two range (16..256), or both.",
        ),
    ] = "16,32,64,128,256",
    devices: Annotated[
        str,
        typer.Option(
            "--devices",
            "-d",
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
            help="Measure exactly this many training steps per trial. Without --steps or "
            "--epochs each trial measures until its median step is known to --max-error.",
            show_default=False,
        ),
    ] = None,
    max_error: Annotated[
        str | None,
        typer.Option(
            "--max-error",
            help="Adaptive steps: stop once the 95 % interval of the median step time is "
            "within ± this (2% or 0.02). Default: 2%.",
            show_default=False,
        ),
    ] = None,
    max_time: Annotated[
        str | None,
        typer.Option(
            "--max-time",
            help="Adaptive steps: stop a trial after this long even if --max-error is not "
            "reached (15s, 2m; the trial then says so). Default: 15s.",
            show_default=False,
        ),
    ] = None,
    min_steps: Annotated[
        int | None,
        typer.Option(
            "--min-steps",
            help="Adaptive steps: never fewer measured steps than this (default 10; an "
            "interval of the median needs at least 6).",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs",
            help="Run a protocol of N epochs instead, "
            "validating after each (like fastai's fine_tune).",
            show_default=False,
        ),
    ] = None,
    freeze_epochs: Annotated[
        int,
        typer.Option(
            "--freeze-epochs",
            help="With --epochs: first train only the head "
            "and normalisation layers for K epochs (fine_tune(N) = 1 + N).",
        ),
    ] = 0,
    warmup: Annotated[
        int | None,
        typer.Option(
            "--warmup",
            help="Untimed warm-up steps per trial; the model is restored afterwards "
            "(default: 3; with --fastai/--keras 1: their first steps are trained as part "
            "of the protocol and only left out of the step statistics).",
            show_default=False,
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            help="torch.set_num_threads for every trial "
            "(default: all cores available to this process).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for weights, data order and data.")] = 0,
    workers: Annotated[int, typer.Option("--workers", help="DataLoader worker processes.")] = 0,
    drop_last: Annotated[
        bool,
        typer.Option("--drop-last", help="Drop the last partial training batch (fastai does)."),
    ] = False,
    repeats: Annotated[
        str,
        typer.Option(
            "--repeats",
            help="Rounds: run the whole grid N times, a fresh process per trial, the order of "
            "batch sizes rotated each round (seeds seed, seed+1, ...); the spread between "
            "rounds enters every interval. 'auto': add rounds (from 2) until the verdicts "
            "stop changing, at most --max-rounds or --time-budget.",
        ),
    ] = "1",
    max_rounds: Annotated[
        int, typer.Option("--max-rounds", help="With --repeats auto: at most this many rounds.")
    ] = 5,
    time_budget: Annotated[
        str | None,
        typer.Option(
            "--time-budget",
            help="With --repeats auto: start no new round after this long (e.g. 10m).",
            show_default=False,
        ),
    ] = None,
    data: DataOpt = None,
    weights: WeightsOpt = None,
    images: ImagesOpt = None,
    json_path: Annotated[
        str | None,
        typer.Option(
            "--json",
            help="Write the results JSON (schema batchscope.results/1).",
            show_default=False,
        ),
    ] = None,
    csv_path: Annotated[
        str | None, typer.Option("--csv", help="Write one CSV row per trial.", show_default=False)
    ] = None,
    markdown_path: Annotated[
        str | None, typer.Option("--markdown", help="Write a Markdown report.", show_default=False)
    ] = None,
    store_path: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="SQLite results store (default: batchscope-results/batchscope.db)",
            show_default=False,
        ),
    ] = None,
    no_store: Annotated[
        bool, typer.Option("--no-store", help="Keep nothing on disk but the exports you ask for.")
    ] = False,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            help="Run only the trials of this run id that have no result yet.",
            show_default=False,
        ),
    ] = None,
    isolation: Annotated[
        str,
        typer.Option(
            "--isolation",
            help="process: each trial in a fresh "
            "child process (survives OOM and crashes); none: "
            "in this process, for debugging.",
        ),
    ] = "process",
    trial_timeout: Annotated[
        float | None,
        typer.Option(
            "--trial-timeout",
            help="Seconds before a trial is stopped and recorded as 'timeout'.",
            show_default=False,
        ),
    ] = None,
    memory_limit: Annotated[
        str | None,
        typer.Option(
            "--memory-limit",
            help="CPU: treat a trial whose peak memory exceeds this (e.g. 4GiB) as out of memory.",
            show_default=False,
        ),
    ] = None,
    breakdown: Annotated[
        bool,
        typer.Option(
            "--breakdown",
            help="Split each step into data wait, host-to-device copy, forward, backward and "
            "optimizer by synchronising the device between them (the syncs cost time "
            "themselves, so step times grow a little).",
        ),
    ] = False,
    sample_interval: Annotated[
        float,
        typer.Option(
            "--sample-interval",
            help="Seconds between hardware readings (utilisation, memory, power, energy) "
            "during each trial; 0 turns the sampler off.",
        ),
    ] = 0.1,
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            help="Comma list of fp32, bf16, fp16: each a further axis of the grid (autocast; "
            "fp16 with a gradient scaler). A precision the device cannot do is recorded "
            "as 'unsupported'.",
        ),
    ] = "fp32",
    channels_last: Annotated[
        bool,
        typer.Option(
            "--channels-last", help="Model and 4-D inputs in torch.channels_last memory format."
        ),
    ] = False,
    compile_model: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="torch.compile the model; the compile time (first warm-up step minus the "
            "median of the others) is reported apart as compile_time_s. Needs --warmup ≥ 1.",
        ),
    ] = False,
    accumulate: Annotated[
        int,
        typer.Option(
            "--accumulate",
            help="Gradient accumulation: K micro-batches of the batch size per optimizer "
            "step (effective batch K × b; a timed step is the whole optimizer step).",
        ),
    ] = 1,
    lr_scaling: Annotated[
        str,
        typer.Option(
            "--lr-scaling",
            help="none, linear (lr × b/b0, the usual rule for SGD) or sqrt (lr × √(b/b0), "
            "the usual rule for Adam), with b the effective batch size.",
        ),
    ] = "none",
    base_batch_size: Annotated[
        int | None,
        typer.Option(
            "--base-batch-size",
            help="b0 for --lr-scaling: the batch size the workload's lr was tuned for "
            "(default: the smallest effective batch size of the sweep).",
            show_default=False,
        ),
    ] = None,
    lr_warmup_steps: Annotated[
        int,
        typer.Option(
            "--lr-warmup-steps",
            help="Ramp the lr linearly over the first N optimizer steps of the measured "
            "protocol (lr × 1/N, 2/N, ... 1).",
        ),
    ] = 0,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="With --epochs: METRIC=VALUE (accuracy=0.95, error_rate=0.05, val_loss=0.2); "
            "record the epoch, wall time and samples at which validation first reaches it "
            "(≤ for val_loss and names ending in loss/error/error_rate, else ≥).",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    out_dir: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="Write the report (report.html, report.md, PNG plots) into this folder "
            "(default: batchscope-results/RUN_ID/; none with --no-store).",
            show_default=False,
        ),
    ] = None,
    no_report: Annotated[
        bool, typer.Option("--no-report", help="Write no report folder at the end.")
    ] = False,
    fastai_entry: Annotated[
        str | None,
        typer.Option(
            "--fastai",
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
            help="With --fastai: the protocol each trial runs, e.g. 'fine_tune(3)', "
            "'fit_one_cycle(3)', 'fit(2, lr=1e-3)' (default: fine_tune(1)).",
            show_default=False,
        ),
    ] = None,
    keras_entry: Annotated[
        str | None,
        typer.Option(
            "--keras",
            help="Sweep your Keras 3 model on the PyTorch backend: 'module:make_model', where "
            "make_model() returns a compiled model and the module holds x_train, y_train "
            "(or load_data()); each trial runs model.fit(batch_size=b) for --epochs "
            "(default 1; needs 'pip install batchscope\\[keras]').",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run a batch-size sweep and print the table (per device) with speedups.

    The workload is a built-in, your own batchscope.Workload, your fastai Learner
    (--fastai) or your Keras model (--keras).
    """
    from batchscope.engine.variants import parse_precisions
    from batchscope.report.build import check_report_dir
    from batchscope.report.export import check_writable
    from batchscope.units import parse_bytes

    for path, flag in ((json_path, "--json"), (csv_path, "--csv"), (markdown_path, "--markdown")):
        if path:
            check_writable(path, flag)
    if out_dir is not None and no_report:
        raise UsageError("--out and --no-report contradict each other: give one")
    if out_dir is not None:
        check_report_dir(out_dir)
    if store_path and no_store:
        raise UsageError("--store and --no-store contradict each other: give one")
    if resume and no_store:
        raise UsageError("--resume needs the results store: drop --no-store")
    given = _given(ctx)
    if resume is not None and not {"workload", "fastai_entry", "keras_entry"} & given:
        workload = "(stored)"  # the stored plan names it; nothing to choose
    workload, framework = _choose_framework(workload, fastai_entry, keras_entry)
    if framework != "torch" and (data or weights or images is not None):
        raise UsageError(
            "--data, --weights and --images are for built-in workloads: your "
            f"{'make_learner' if framework == 'fastai' else 'module'} provides the data"
        )
    options = _workload_options(data, weights, images, seed)
    if framework == "fastai":
        from batchscope.integrations.fastai import parse_fit

        fit = parse_fit(fit).text  # a bad --fit fails now, not in every trial
        options["extra"] = {**options["extra"], "fit": fit}
    if warmup is None:
        warmup = 3 if framework == "torch" else 1
    protocol = dict(
        framework=framework,
        fit=fit,
        steps=steps,
        epochs=epochs,
        **_adaptive_options(steps, epochs, max_error, max_time, min_steps),
        **_rounds_options(repeats, max_rounds, time_budget),
        freeze_epochs=freeze_epochs,
        warmup=warmup,
        threads=default_threads() if threads is None else threads,  # 0 is refused, not default
        seed=seed,
        workers=workers,
        drop_last=drop_last,
        memory_limit_bytes=parse_bytes(memory_limit, what="--memory-limit")
        if memory_limit
        else None,
        breakdown=breakdown,
        sample_interval_s=sample_interval,
        target=target,
        precisions=parse_precisions(precision),
        channels_last=channels_last,
        compile=compile_model,
        accumulate=accumulate,
        lr_scaling=lr_scaling,
        base_batch_size=base_batch_size,
        lr_warmup_steps=lr_warmup_steps,
    )
    resumed = None
    if resume is not None:
        resumed = _resume_plan(
            resume, store_path, given, workload, options, batch_sizes, devices, protocol
        )
        workload, options = resumed.workload, resumed.workload_options
    _run_and_report(
        workload,
        options,
        batch_sizes,
        devices,
        protocol,
        plan=resumed,
        isolation=isolation,
        trial_timeout=trial_timeout,
        store_path=store_path,
        no_store=no_store,
        resume=resume,
        json_path=json_path,
        csv_path=csv_path,
        markdown_path=markdown_path,
        quiet=quiet,
        out_dir=out_dir,
        no_report=no_report,
    )


#: sweep's parameters that set a Plan field (parameter name -> Plan field)
_PLAN_PARAMS = {
    "steps": "steps",
    "epochs": "epochs",
    "freeze_epochs": "freeze_epochs",
    "warmup": "warmup",
    "threads": "threads",
    "seed": "seed",
    "workers": "workers",
    "drop_last": "drop_last",
    "memory_limit": "memory_limit_bytes",
    "breakdown": "breakdown",
    "sample_interval": "sample_interval_s",
    "target": "target",
    "precision": "precisions",
    "channels_last": "channels_last",
    "compile_model": "compile",
    "accumulate": "accumulate",
    "lr_scaling": "lr_scaling",
    "base_batch_size": "base_batch_size",
    "lr_warmup_steps": "lr_warmup_steps",
    "fit": "fit",
    "max_error": "max_error",
    "max_time": "max_time_s",
    "min_steps": "min_steps",
    "repeats": "repeats_auto",
    "max_rounds": "max_rounds",
    "time_budget": "time_budget_s",
}


def _given(ctx: typer.Context) -> set[str]:
    """The parameters the user typed (not defaults): what a resume must check.

    Compared by the enum member's name: typer vendors its own click, whose
    ``ParameterSource`` is not click's.
    """
    typed = {"COMMANDLINE", "ENVIRONMENT"}
    return {
        name
        for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", None) in typed
    }


def _resume_plan(
    resume: str,
    store_path: str | None,
    given: set[str],
    workload: str,
    options: dict[str, Any],
    batch_sizes: str,
    devices: str,
    protocol: dict[str, Any],
) -> Any:
    """The stored plan of run ``resume``; refuses a typed flag that contradicts it."""
    from batchscope.core.plan import parse_batch_sizes
    from batchscope.run.resume import resumed_plan

    store = _store_for_reading(store_path)
    run = store.get_run(store.resolve_run_id(resume))
    values: dict[str, Any] = {}
    if {"workload", "fastai_entry", "keras_entry"} & given:
        values["workload"] = workload
        values["framework"] = protocol["framework"]
    if "batch_sizes" in given:
        values["batch_sizes"] = parse_batch_sizes(batch_sizes)
    if "devices" in given and devices not in ("best", "auto"):
        values["devices"] = [
            f"{d}:0" if d in ("cuda", "xpu") else d
            for d in (x.strip().lower() for x in devices.split(","))
        ]
    for param, field in _PLAN_PARAMS.items():
        if param in given:
            values[field] = protocol.get(field)
            if param == "repeats" and not protocol.get("repeats_auto"):
                values.pop(field)
                values["repeats"] = protocol["repeats"]
    picked = {
        k: v
        for k, v in options.items()
        if k in given or (k in ("data", "weights", "images") and k in given)
    }
    if picked:
        values["workload_options"] = {**dict(run.workload.get("options") or {}), **picked}
    return resumed_plan(run, values)


def _adaptive_options(
    steps: int | None,
    epochs: int | None,
    max_error: str | None,
    max_time: str | None,
    min_steps: int | None,
) -> dict[str, Any]:
    """--max-error/--max-time/--min-steps, refused beside --steps or --epochs."""
    from batchscope.units import parse_duration, parse_fraction

    given = [
        flag
        for flag, value in (
            ("--max-error", max_error),
            ("--max-time", max_time),
            ("--min-steps", min_steps),
        )
        if value is not None
    ]
    fixed = "--steps" if steps is not None else "--epochs" if epochs is not None else None
    if given and fixed:
        raise UsageError(
            f"{', '.join(given)} set{'s' if len(given) == 1 else ''} when adaptive measuring "
            f"stops, but {fixed} fixes what each trial runs: drop one of them"
        )
    out: dict[str, Any] = {}
    if max_error is not None:
        out["max_error"] = parse_fraction(max_error, what="--max-error")
    if max_time is not None:
        out["max_time_s"] = parse_duration(max_time, what="--max-time")
    if min_steps is not None:
        out["min_steps"] = min_steps
    return out


def _rounds_options(repeats: str, max_rounds: int, time_budget: str | None) -> dict[str, Any]:
    """--repeats N or auto, with --max-rounds and --time-budget (auto only)."""
    from batchscope.units import parse_duration

    text = str(repeats).strip().lower()
    if text == "auto":
        return {
            "repeats": 1,
            "repeats_auto": True,
            "max_rounds": max_rounds,
            "time_budget_s": parse_duration(time_budget, what="--time-budget")
            if time_budget is not None
            else None,
        }
    if not text.isdigit():
        raise UsageError(f"--repeats {repeats!r} is not a whole number or 'auto' (e.g. 3)")
    if time_budget is not None:
        raise UsageError("--time-budget is for --repeats auto: drop it, or use --repeats auto")
    return {"repeats": int(text)}


def _choose_framework(
    workload: str | None, fastai_entry: str | None, keras_entry: str | None
) -> tuple[str, str]:
    """The entry to sweep and who trains it: (workload, "torch" | "fastai" | "keras")."""
    given = [
        (flag, value)
        for flag, value in (
            ("WORKLOAD", workload),
            ("--fastai", fastai_entry),
            ("--keras", keras_entry),
        )
        if value is not None
    ]
    if not given:
        raise UsageError(
            "what should be swept? give a WORKLOAD (e.g. simplecnn; see 'batchscope "
            "workloads'), --fastai module:make_learner or --keras module:make_model"
        )
    if len(given) > 1:
        raise UsageError(f"give one of {' and '.join(flag for flag, _ in given)}, not both")
    flag, value = given[0]
    if not value.strip():
        raise UsageError(f"{flag} is empty: name a workload or 'module:function'")
    return value, {"WORKLOAD": "torch", "--fastai": "fastai", "--keras": "keras"}[flag]


def _workload_options(
    data: str | None, weights: str | None, images: int | None, seed: int
) -> dict[str, Any]:
    from batchscope.workloads import WorkloadOptions

    if data is not None:
        data = str(Path(data).expanduser())
    if weights is not None:
        weights = str(Path(weights).expanduser())
    return WorkloadOptions(data=data, weights=weights, images=images, seed=seed).to_dict()


def _resolve_devices(text: str, available: list[str]) -> list[str]:
    from batchscope.core.plan import parse_devices

    if text == "best":
        accelerators = [d for d in available if d != "cpu"]
        return [accelerators[0] if accelerators else "cpu"]
    return parse_devices(text, available)


def _open_store(store_path: str | None, no_store: bool) -> Any:
    from batchscope.run.store import DEFAULT_STORE, Store

    if no_store:
        return None
    if store_path:
        return Store(Path(store_path).expanduser())
    return Store(DEFAULT_STORE, create_parent=True)


def _run_and_report(
    workload: str,
    options: dict[str, Any],
    batch_sizes: str,
    devices: str,
    protocol: dict[str, Any],
    *,
    isolation: str,
    trial_timeout: float | None,
    store_path: str | None,
    no_store: bool,
    resume: str | None,
    json_path: str | None,
    csv_path: str | None,
    markdown_path: str | None,
    quiet: bool,
    announce: str | None = None,
    out_dir: str | None = None,
    no_report: bool = False,
    plan: Any = None,
) -> None:
    """Probe, plan, sweep, print, export, report — and say what was saved if interrupted.

    ``plan``: a resumed run's stored plan (``--resume``); otherwise the plan is built
    from the command line once the probe knows which devices are present. The store
    is opened only after the probe, so a workload that fails to load leaves nothing.
    """
    from batchscope.cli.display import SweepDisplay
    from batchscope.core.plan import Plan, check_device_names, parse_batch_sizes, parse_devices
    from batchscope.hardware.preflight import preflight_warnings
    from batchscope.report.export import write_exports
    from batchscope.report.terminal import print_run
    from batchscope.run.isolation import check_isolation
    from batchscope.run.sweep import SweepInterrupted, probe, run_sweep

    check_isolation(isolation)
    if trial_timeout is not None and trial_timeout <= 0:
        raise UsageError(f"--trial-timeout {trial_timeout:g} must be more than 0 seconds")
    if plan is None:
        sizes = parse_batch_sizes(batch_sizes)
        Plan(workload=workload, batch_sizes=sizes, **protocol)  # validate before any work
        if devices != "best":
            check_device_names(devices)  # a typo fails now, not after loading the workload
    err = stderr()
    if announce and not quiet:
        err.print(announce, highlight=False)
    framework = plan.framework if plan is not None else protocol.get("framework", "torch")
    try:
        with (
            err.status("loading the workload and probing devices…", spinner="dots")
            if not quiet
            else _nullcontext()
        ):
            found = probe(
                workload, options, isolation=isolation, framework=framework, debug=_state["debug"]
            )
    except KeyboardInterrupt:
        err.print("interrupted while loading the workload: nothing was measured or saved")
        raise typer.Exit(130) from None
    if plan is None:
        plan = Plan(
            workload=workload,
            workload_options=options,
            batch_sizes=sizes,
            devices=_resolve_devices(devices, found.devices),
            **protocol,
        )
    else:
        parse_devices(",".join(plan.devices), found.devices)  # the stored devices are here
    from batchscope.run.sweep import check_memory_limit

    check_memory_limit(plan.memory_limit_bytes, found.workload)  # a bad limit: one line, first
    store = _open_store(store_path, no_store)
    warnings = preflight_warnings(plan.devices, plan.threads)
    if not quiet:
        for line in warnings:
            err.print(f"[yellow]warning:[/] {line}", highlight=False)
    display = SweepDisplay(err, enabled=not quiet)
    try:
        with display:
            run = run_sweep(
                plan,
                isolation=isolation,
                trial_timeout_s=trial_timeout,
                store=store,
                resume=resume,
                on_event=display.on_event,
                found=found,
                debug=_state["debug"],
                notes=warnings,
            )
    except SweepInterrupted as stop:
        done = len(stop.run.trials)
        if stop.resumable:
            err.print(
                f"\ninterrupted: {done} finished trial(s) are saved in run "
                f"{stop.run.run_id}. Resume with:\n  batchscope sweep --resume {stop.run.run_id}",
                highlight=False,
            )
        else:
            err.print(f"\ninterrupted after {done} trial(s): nothing saved (--no-store)")
        if stop.run.trials:
            print_run(stop.run, stdout())
        raise typer.Exit(130) from None
    try:
        print_run(run, stdout())
        written = write_exports(
            run, json_path=json_path, csv_path=csv_path, markdown_path=markdown_path
        )
        if not quiet:
            for path in written:
                err.print(f"wrote {path}", highlight=False)
            if store is not None:
                err.print(f"run {run.run_id} saved in {store.path}", highlight=False)
        # The report folder (default ./batchscope-results/RUN_ID/); --no-store writes none unasked.
        if not no_report and (out_dir is not None or store is not None):
            from batchscope.report.build import default_report_dir, write_report

            target = out_dir if out_dir is not None else default_report_dir(run.run_id)
            with err.status("writing the report…", spinner="dots") if not quiet else _nullcontext():
                files = write_report(run, target)
            if not quiet:
                err.print(
                    f"report: {files.html} (with report.md and {len(files.images)} plots)",
                    highlight=False,
                    soft_wrap=True,
                )
    except KeyboardInterrupt:
        saved = (
            f"every trial is saved in run {run.run_id}; 'batchscope report {run.run_id}' "
            "writes the report again"
            if store is not None
            else "nothing saved (--no-store)"
        )
        err.print(f"\ninterrupted while writing the results: {saved}", highlight=False)
        raise typer.Exit(130) from None


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# ---------------------------------------------------------------- demo


@app.command()
def demo(
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
    _run_and_report(
        "resnet18",
        _workload_options(None, None, images, 0),
        batch_sizes,
        devices,
        protocol,
        isolation="process",
        trial_timeout=None,
        store_path=None,
        no_store=no_store,
        resume=None,
        json_path=json_path,
        csv_path=None,
        markdown_path=None,
        quiet=quiet,
        announce=what,
    )


# ---------------------------------------------------------------- small commands


@app.command()
def workloads() -> None:
    """List the built-in workloads, one line each."""
    from rich.table import Table

    from batchscope.workloads import describe_builtins

    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for name, description in describe_builtins():
        table.add_row(name, description)
    table.add_row("module:function", "your own: a function returning a batchscope.Workload")
    table.add_row("file.py:function", "the same, from a file (see examples/custom_workload.py)")
    stdout().print(table)


@app.command()
def env(
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
) -> None:
    """Print the machine and software fingerprint recorded with every run."""
    import json

    from rich.table import Table

    from batchscope.hardware.envinfo import collect
    from batchscope.units import format_bytes

    info = collect()
    if json_out:
        typer.echo(json.dumps(info, indent=2))
        return
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in info.items():
        if key == "memory_bytes":
            value = format_bytes(value)
        elif key == "gpus":
            value = (
                "; ".join(f"{g['name']} ({format_bytes(g['memory_bytes'])})" for g in value)
                or "none"
            )
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        table.add_row(key, str(value))
    stdout().print(table)


def _store_for_reading(store_path: str | None) -> Any:
    """The store opened read-only: a store the user may read but not write still reads."""
    from batchscope.run.store import DEFAULT_STORE, Store

    path: Path = Path(store_path).expanduser() if store_path else Path(DEFAULT_STORE)
    if not path.exists():
        raise UsageError(f"no results store at {str(path)!r}: run a sweep first, or give --store")
    return Store(path, readonly=True)


StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="SQLite results store (default: batchscope-results/batchscope.db)",
        show_default=False,
    ),
]


@app.command()
def runs(store_path: StoreOpt = None) -> None:
    """List the runs in the results store."""
    from rich.table import Table

    store = _store_for_reading(store_path)
    table = Table()
    for col in ("Run id", "Created", "Workload", "Devices", "OK", "Failed", "Planned"):
        table.add_column(col)
    for r in store.list_runs():
        table.add_row(
            r.run_id,
            r.created,
            r.workload,
            ",".join(r.devices),
            str(r.n_ok),
            str(r.n_failed),
            str(r.n_planned),
        )
    stdout().print(table)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="A run id or a unique prefix of one.")],
    store_path: StoreOpt = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the results JSON (with its 'analysis' verdicts) instead of the table.",
        ),
    ] = False,
) -> None:
    """Print a stored run's table and verdicts (or its results JSON with --json)."""
    from batchscope.report.terminal import print_run

    store = _store_for_reading(store_path)
    run = store.get_run(store.resolve_run_id(run_id))
    if as_json:
        from batchscope.report.export import to_json

        typer.echo(to_json(run), nl=False)
        return
    print_run(run, stdout())


@app.command()
def export(
    run_id: Annotated[str, typer.Argument(help="A run id or a unique prefix of one.")],
    json_path: Annotated[str | None, typer.Option("--json", show_default=False)] = None,
    csv_path: Annotated[str | None, typer.Option("--csv", show_default=False)] = None,
    markdown_path: Annotated[str | None, typer.Option("--markdown", show_default=False)] = None,
    store_path: StoreOpt = None,
) -> None:
    """Write a stored run as JSON, CSV or Markdown (any time, even mid-sweep)."""
    from batchscope.report.export import check_writable, to_json, write_exports

    for path, flag in ((json_path, "--json"), (csv_path, "--csv"), (markdown_path, "--markdown")):
        if path:
            check_writable(path, flag)
    store = _store_for_reading(store_path)
    run = store.get_run(store.resolve_run_id(run_id))
    if not (json_path or csv_path or markdown_path):
        typer.echo(to_json(run), nl=False)
        return
    for written in write_exports(
        run, json_path=json_path, csv_path=csv_path, markdown_path=markdown_path
    ):
        stderr().print(f"wrote {written}", highlight=False)


# ---------------------------------------------------------------- more commands

# Each area registers its commands on ``app`` in its own module.
from batchscope.cli.commands import (  # noqa: E402, F401
    analysis_cmds,
    memory_cmds,
    monitor_cmds,
    noise_cmds,
    report_cmds,
)

# ---------------------------------------------------------------- entry point


def _bad_value(exc: Exception, argv: list[str] | None) -> str:
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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: one line and exit 2 for every user error.

    Typer's parser raises click-style exceptions (``exit_code``, ``format_message``);
    they are matched by shape, since newer typer releases vendor their own click.
    """
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="batchscope", standalone_mode=False)
    except BatchscopeError as exc:
        if _state["debug"]:
            raise
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        stderr().print("interrupted")
        sys.exit(130)
    except Exception as exc:
        name = type(exc).__name__
        if name == "Abort":
            stderr().print("aborted")
            sys.exit(130)
        if name == "NoArgsIsHelpError":  # no arguments: the help is the answer
            text = exc.format_message()  # type: ignore[attr-defined]
            if text.strip():  # typer's rich help has printed itself already
                typer.echo(text)
            sys.exit(2)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            fail(f"{exc.format_message()}{_bad_value(exc, argv)}{hint}", 2)
        raise
    sys.exit(code if isinstance(code, int) else 0)
