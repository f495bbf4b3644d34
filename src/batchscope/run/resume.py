"""A resume is the stored plan: rebuild it from the store, refuse a command line that differs.

``batchscope sweep --resume RUN_ID`` needs nothing else: the workload, its options and
every setting of the plan come from the run's stored record, and the sweep runs
exactly the trials of that plan that have no result yet. A flag given beside
``--resume`` must agree with the stored plan; one that contradicts it is refused
with one line naming the difference, so a resume never mixes two protocols in one run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from batchscope.core.plan import Plan
from batchscope.core.results import RunResult
from batchscope.errors import UsageError

#: Plan fields and the flag that sets each (for the error message)
FLAGS = {
    "workload": "WORKLOAD",
    "workload_options": "--data/--weights/--images/--layers/--width/--heads",
    "batch_sizes": "--batch-sizes",
    "devices": "--devices",
    "steps": "--steps",
    "epochs": "--epochs",
    "max_error": "--max-error",
    "max_time_s": "--max-time",
    "min_steps": "--min-steps",
    "freeze_epochs": "--freeze-epochs",
    "warmup": "--warmup",
    "threads": "--threads",
    "seed": "--seed",
    "drop_last": "--drop-last",
    "workers": "--workers",
    "repeats": "--repeats",
    "repeats_auto": "--repeats",
    "max_rounds": "--max-rounds",
    "time_budget_s": "--time-budget",
    "memory_limit_bytes": "--memory-limit",
    "breakdown": "--breakdown",
    "sample_interval_s": "--sample-interval",
    "target": "--target",
    "precisions": "--precision",
    "channels_last": "--channels-last",
    "compile": "--compile",
    "accumulate": "--accumulate",
    "lr_scaling": "--lr-scaling",
    "base_batch_size": "--base-batch-size",
    "lr_warmup_steps": "--lr-warmup-steps",
    "framework": "--fastai/--keras",
    "fit": "--fit",
    "seq_lens": "--seq-lens",
    "world_sizes": "--world-sizes",
    "scaling_mode": "--global-batch-sizes",
    "nnodes": "--nnodes",
    "rdzv_endpoint": "--rdzv-endpoint",
}


def stored_plan(run: RunResult) -> Plan:
    """The plan a stored run was started with (its settings and workload record)."""
    known = {f.name for f in dataclasses.fields(Plan)}
    fields = {k: v for k, v in run.settings.items() if k in known}
    spec = run.workload.get("spec") or run.workload.get("name")
    if not spec or "batch_sizes" not in fields:
        raise UsageError(
            f"run {run.run_id} has no stored plan to resume (it was not made by a sweep)"
        )
    fields["workload"] = str(spec)
    fields["workload_options"] = dict(run.workload.get("options") or {})
    if fields.get("repeats_auto"):
        fields["repeats"] = 1  # the rounds stored so far are in the plan's keys
    return Plan(**fields)


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return repr(value) if isinstance(value, str) else str(value)


def resumed_plan(run: RunResult, given: Mapping[str, Any]) -> Plan:
    """The stored plan, after checking that every value the user gave agrees with it.

    ``given`` maps Plan fields to the values the command line set explicitly. Raises
    :class:`UsageError` naming the first difference.
    """
    spec = run.workload.get("spec") or run.workload.get("name")
    if "workload" in given and given["workload"] != spec:
        raise UsageError(
            f"run {run.run_id} measured workload {spec!r}, not {given['workload']!r}: resume it "
            f"with the same workload, or just 'batchscope sweep --resume {run.run_id}'"
        )
    plan = stored_plan(run)
    differences = []
    for name, value in given.items():
        stored = getattr(plan, name, None)
        if name == "workload_options":
            stored = {k: v for k, v in (stored or {}).items() if v not in (None, {}, [])}
            value = {k: v for k, v in (value or {}).items() if v not in (None, {}, [])}
        if name == "repeats" and plan.repeats_auto:
            continue  # auto runs grow their rounds; --repeats auto was checked as repeats_auto
        if value != stored:
            flag = FLAGS.get(name, name)
            differences.append(f"{flag} {_shown(value)} (the stored plan has {_shown(stored)})")
    if differences:
        raise UsageError(
            f"--resume {run.run_id} runs the stored plan, but the command line says "
            f"{differences[0]}"
            + (f" and {len(differences) - 1} more" if len(differences) > 1 else "")
            + f": drop {'it' if len(differences) == 1 else 'them'}, or start a new sweep"
        )
    return plan
