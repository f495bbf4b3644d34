"""From what the user typed to what to run: pure functions, no typer, testable alone.

:func:`adaptive_options` and :func:`rounds_options` turn ``--max-error``/``--max-time``/
``--min-steps`` and ``--repeats N|auto`` into Plan fields; :func:`choose_framework`
picks who trains; :func:`resume_plan` rebuilds a stored plan and refuses a command
line that contradicts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from batchscope.cli.common import (
    check_sequence_workload,
    default_threads,
    open_store,
    store_for_reading,
    workload_options,
)
from batchscope.errors import UsageError


@dataclass
class SweepRequest:
    """What ``sweep`` (or ``demo``) asked for, validated: everything run_and_report needs."""

    workload: str
    options: dict[str, Any]
    #: the --batch-sizes and --devices text ("best": the fastest device present)
    batch_sizes: str
    devices: str
    #: the Plan fields the command line set (framework, steps, precisions, ...)
    protocol: dict[str, Any]
    #: a resumed run's stored plan (--resume), else None
    plan: Any = None
    isolation: str = "process"
    trial_timeout: float | None = None
    store_path: str | None = None
    no_store: bool = False
    resume: str | None = None
    json_path: str | None = None
    csv_path: str | None = None
    markdown_path: str | None = None
    quiet: bool = False
    out_dir: str | None = None
    no_report: bool = False
    #: a line to print before the probe (the demo says what it runs)
    announce: str | None = None
    #: the full table whatever the terminal's width
    wide: bool = False
    #: --no-peak: measure no device peak (no MFU); False leaves it to BATCHSCOPE_NO_PEAK
    no_peak: bool = False
    notes: list[str] = field(default_factory=list)
    #: --executor local|gpus|ray, --ray-address, --parallel-cpu-trials (run/executors.py)
    executor: str = "local"
    ray_address: str | None = None
    parallel_cpu_trials: bool = False


#: sweep's parameters that name what is swept
ENTRY_PARAMS = {"workload", "fastai_entry", "keras_entry", "lightning_entry"}

#: sweep's parameters that set a Plan field (parameter name -> Plan field)
PLAN_PARAMS = {
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
    "seq_lens": "seq_lens",
    "world_sizes": "world_sizes",
    "global_batch_sizes": "scaling_mode",
    "nnodes": "nnodes",
    "rdzv_endpoint": "rdzv_endpoint",
}


def resume_plan(
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

    store = store_for_reading(store_path)
    run_id = store.resolve_run_id(resume)
    open_store(store_path, False).close()  # a resume writes: a store it cannot write fails now
    run = store.get_run(run_id)
    values: dict[str, Any] = {}
    if ENTRY_PARAMS & given:
        values["workload"] = workload
        values["framework"] = protocol["framework"]
    if "batch_sizes" in given:
        values["batch_sizes"] = parse_batch_sizes(batch_sizes)
    if "devices" in given and devices not in ("best", "auto"):
        values["devices"] = [
            f"{d}:0" if d in ("cuda", "xpu") else d
            for d in (x.strip().lower() for x in devices.split(","))
        ]
    for param, name in PLAN_PARAMS.items():
        if param in given:
            values[name] = protocol.get(name)
            if param == "repeats" and not protocol.get("repeats_auto"):
                values.pop(name)
                values["repeats"] = protocol["repeats"]
    picked = {k: v for k, v in options.items() if k in given}
    extra_given = [k for k in ("image_size", "layers", "width", "heads") if k in given]
    if extra_given:
        stored_extra = dict((run.workload.get("options") or {}).get("extra") or {})
        picked["extra"] = {**stored_extra, **{k: options["extra"][k] for k in extra_given}}
    if picked:
        values["workload_options"] = {**dict(run.workload.get("options") or {}), **picked}
    return resumed_plan(run, values)


def adaptive_options(
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


def rounds_options(repeats: str, max_rounds: int, time_budget: str | None) -> dict[str, Any]:
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


#: the flags that name what a sweep runs, and who trains it
FRAMEWORK_FLAGS = {
    "WORKLOAD": "torch",
    "--fastai": "fastai",
    "--keras": "keras",
    "--lightning": "lightning",
}


def choose_framework(
    workload: str | None,
    fastai_entry: str | None,
    keras_entry: str | None,
    lightning_entry: str | None = None,
) -> tuple[str, str]:
    """The entry to sweep and who trains it: (workload, "torch" | "fastai" | "keras" |
    "lightning")."""
    given = [
        (flag, value)
        for flag, value in zip(
            FRAMEWORK_FLAGS, (workload, fastai_entry, keras_entry, lightning_entry), strict=True
        )
        if value is not None
    ]
    if not given:
        raise UsageError(
            "what should be swept? give a WORKLOAD (e.g. simplecnn; see 'batchscope "
            "workloads'), --fastai module:make_learner, --keras module:make_model or "
            "--lightning module:make"
        )
    if len(given) > 1:
        raise UsageError(f"give one of {' and '.join(flag for flag, _ in given)}, not both")
    flag, value = given[0]
    if not value.strip():
        raise UsageError(f"{flag} is empty: name a workload or 'module:function'")
    return value, FRAMEWORK_FLAGS[flag]


def check_outputs(v: Mapping[str, Any]) -> None:
    """Export paths, report folder and store flags: refused before anything runs."""
    from batchscope.report.build import check_report_dir
    from batchscope.report.export import check_writable

    for key, flag in (
        ("json_path", "--json"),
        ("csv_path", "--csv"),
        ("markdown_path", "--markdown"),
    ):
        if v.get(key):
            check_writable(v[key], flag)
    if v.get("out_dir") is not None and v.get("no_report"):
        raise UsageError("--out and --no-report contradict each other: give one")
    if v.get("out_dir") is not None:
        check_report_dir(v["out_dir"])
    if v.get("store_path") and v.get("no_store"):
        raise UsageError("--store and --no-store contradict each other: give one")
    if v.get("resume") and v.get("no_store"):
        raise UsageError("--resume needs the results store: drop --no-store")


def protocol_from(v: Mapping[str, Any], framework: str) -> dict[str, Any]:
    """The Plan fields ``sweep``'s options set (before devices are known)."""
    from batchscope.core.plan import parse_seq_lens
    from batchscope.core.series import parse_precisions
    from batchscope.units import parse_bytes

    memory_limit = v.get("memory_limit")
    protocol = dict(
        framework=framework,
        fit=v.get("fit"),
        steps=v.get("steps"),
        epochs=v.get("epochs"),
        **adaptive_options(
            v.get("steps"),
            v.get("epochs"),
            v.get("max_error"),
            v.get("max_time"),
            v.get("min_steps"),
        ),
        **rounds_options(str(v.get("repeats", "1")), v.get("max_rounds", 5), v.get("time_budget")),
        freeze_epochs=v.get("freeze_epochs", 0),
        warmup=(3 if framework == "torch" else 1) if v.get("warmup") is None else v["warmup"],
        threads=default_threads() if v.get("threads") is None else v["threads"],  # 0: refused
        seed=v.get("seed", 0),
        workers=v.get("workers", 0),
        drop_last=v.get("drop_last", False),
        memory_limit_bytes=parse_bytes(memory_limit, what="--memory-limit")
        if memory_limit
        else None,
        breakdown=v.get("breakdown", False),
        sample_interval_s=v.get("sample_interval", 0.1),
        target=v.get("target"),
        precisions=parse_precisions(v.get("precision", "fp32")),
        channels_last=v.get("channels_last", False),
        compile=v.get("compile_model", False),
        accumulate=v.get("accumulate", 1),
        lr_scaling=v.get("lr_scaling", "none"),
        base_batch_size=v.get("base_batch_size"),
        lr_warmup_steps=v.get("lr_warmup_steps", 0),
        seq_lens=parse_seq_lens(v["seq_lens"]) if v.get("seq_lens") is not None else None,
    )
    protocol.update(data_parallel_options(v))
    return protocol


def data_parallel_options(v: Mapping[str, Any]) -> dict[str, Any]:
    """``--world-sizes``, ``--global-batch-sizes``, ``--nnodes``, ``--rdzv-endpoint`` as Plan
    fields. Without ``--threads`` a data-parallel trial's ranks split the cores (threads
    None: resolved per trial, batchscope.run.ddp_launch.rank_threads)."""
    from batchscope.core.plan import parse_world_sizes

    text = v.get("world_sizes")
    out: dict[str, Any] = {"nnodes": v.get("nnodes", 1), "rdzv_endpoint": v.get("rdzv_endpoint")}
    if v.get("global_batch_sizes") is not None:
        out["scaling_mode"] = "strong"
    if text is None:
        return out
    out["world_sizes"] = parse_world_sizes(text)
    if v.get("threads") is None:
        out["threads"] = None
    return out


def executor_options(
    executor: str, ray_address: str | None, parallel_cpu_trials: bool, isolation: str
) -> None:
    """--executor, --ray-address and --parallel-cpu-trials, refused when they contradict."""
    import importlib.util

    from batchscope.run.executors import check_executor

    check_executor(executor)
    if ray_address is not None and executor != "ray":
        raise UsageError("--ray-address is for --executor ray: add it, or drop --ray-address")
    if parallel_cpu_trials and executor == "local":
        raise UsageError(
            "--parallel-cpu-trials is for --executor gpus or ray: local runs one trial at a time"
        )
    if executor != "local" and isolation != "process":
        raise UsageError(
            f"--executor {executor} runs every trial in a child process: "
            "drop --isolation none (or use --executor local)"
        )
    if executor == "ray" and importlib.util.find_spec("ray") is None:
        raise UsageError("--executor ray needs Ray: pip install 'batchscope[ray]'")


def build_sweep_request(values: Mapping[str, Any], given: set[str]) -> SweepRequest:
    """Validate ``sweep``'s option values (by parameter name) into a :class:`SweepRequest`.

    ``given`` names the parameters the user typed; a resume checks those against the
    stored plan. Raises :class:`UsageError` (one line) for anything refused. Pure: no
    typer, and no file read but a resumed run's store.
    """
    v = dict(values)
    check_outputs(v)
    executor_options(
        v.get("executor", "local"),
        v.get("ray_address"),
        v.get("parallel_cpu_trials", False),
        v.get("isolation", "process"),
    )
    workload = v.get("workload")
    if v.get("resume") is not None and not ENTRY_PARAMS & given:
        workload = "(stored)"  # the stored plan names it; nothing to choose
    workload, framework = choose_framework(
        workload, v.get("fastai_entry"), v.get("keras_entry"), v.get("lightning_entry")
    )
    if v.get("seq_lens") is not None:
        check_sequence_workload(None if workload == "(stored)" else workload, ["--seq-lens"])
    data, weights, images = v.get("data"), v.get("weights"), v.get("images")
    image_size = v.get("image_size")
    sized = any(v.get(k) is not None for k in ("layers", "width", "heads"))
    if framework != "torch" and (data or weights or images is not None or image_size or sized):
        raise UsageError(
            "--data, --weights, --images, --image-size, --layers, --width and --heads are for "
            "built-in workloads: your "
            f"{'make_learner' if framework == 'fastai' else 'module'} provides the data"
        )
    options = workload_options(
        data,
        weights,
        images,
        v.get("seed", 0),
        image_size=image_size,
        workload=None if workload == "(stored)" else workload,
        model_size={k: v.get(k) for k in ("layers", "width", "heads")},
    )
    if framework == "fastai":
        from batchscope.integrations.fastai import parse_fit

        v["fit"] = parse_fit(v.get("fit")).text  # a bad --fit fails now, not in every trial
        options["extra"] = {**options["extra"], "fit": v["fit"]}
    protocol = protocol_from(v, framework)
    batch_sizes, devices = v.get("batch_sizes", "16,32,64,128,256"), v.get("devices", "best")
    if v.get("global_batch_sizes") is not None:
        if "batch_sizes" in given:
            raise UsageError(
                "--batch-sizes (per device) and --global-batch-sizes (divided across the "
                "ranks) contradict each other: give one"
            )
        batch_sizes = v["global_batch_sizes"]
    resumed = None
    if v.get("resume") is not None:
        resumed = resume_plan(
            v["resume"],
            v.get("store_path"),
            given,
            workload,
            options,
            batch_sizes,
            devices,
            protocol,
        )
        workload, options = resumed.workload, resumed.workload_options
    return SweepRequest(
        workload=workload,
        options=options,
        batch_sizes=batch_sizes,
        devices=devices,
        protocol=protocol,
        plan=resumed,
        isolation=v.get("isolation", "process"),
        trial_timeout=v.get("trial_timeout"),
        store_path=v.get("store_path"),
        no_store=v.get("no_store", False),
        resume=v.get("resume"),
        json_path=v.get("json_path"),
        csv_path=v.get("csv_path"),
        markdown_path=v.get("markdown_path"),
        quiet=v.get("quiet", False),
        out_dir=v.get("out_dir"),
        no_report=v.get("no_report", False),
        wide=v.get("wide", False),
        no_peak=v.get("no_peak", False),
        executor=v.get("executor", "local"),
        ray_address=v.get("ray_address"),
        parallel_cpu_trials=v.get("parallel_cpu_trials", False),
    )
