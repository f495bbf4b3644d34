"""The sweep: probe the workload once, run every trial of the plan, store each as it ends.

This is the Python API the CLI is glue over. Progress is reported through a
callback; nothing here prints.

Before the first trial the sweep measures the matmul peak of every (device, precision)
of the plan (:func:`batchscope.run.peak_cache.peak_for`: a few seconds in a fresh child
process, once per machine when a store caches it) and records it in the run's
environment as ``device_peaks``; every ok trial then gets its achieved FLOP/s and MFU
(:mod:`batchscope.analyse.efficiency`) before it is stored. ``peak=False`` (``--no-peak``)
or the environment variable ``BATCHSCOPE_NO_PEAK=1`` skips the peak: the trials keep their
FLOP counts and achieved FLOP/s, without an MFU.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchscope.analyse.efficiency import stamp_mfu
from batchscope.analyse.scaling import stamp_scaling
from batchscope.core.plan import Plan, TrialSpec, parse_batch_sizes, parse_devices
from batchscope.core.results import RunResult, TrialResult, now_iso
from batchscope.errors import BatchscopeError, StoreError, UsageError
from batchscope.run.executors import Executor, LocalExecutor, Work
from batchscope.run.isolation import (
    check_isolation,
    cpu_child_env,
    probe_in_process,
    probe_isolated,
    run_in_process,
    run_isolated,
)
from batchscope.units import format_bytes

if TYPE_CHECKING:
    from batchscope.run.store import Store
    from batchscope.workloads import Workload

#: ``on_event(kind, payload)``; kinds: "probe", "trial_start", "trial_progress", "trial_done".
OnEvent = Callable[[str, dict[str, Any]], None]


class SweepInterrupted(Exception):
    """Ctrl-C during a sweep: carries what finished, so nothing measured is lost."""

    def __init__(self, run: RunResult, resumable: bool) -> None:
        super().__init__("sweep interrupted")
        self.run = run
        self.resumable = resumable


@dataclass
class Probe:
    """The workload and machine as a child process saw them before any trial."""

    workload: dict[str, Any]
    environment: dict[str, Any]

    @property
    def devices(self) -> list[str]:
        return list(self.environment.get("devices", ["cpu"]))


def probe(
    workload: str,
    options: dict[str, Any] | None = None,
    *,
    isolation: str = "process",
    framework: str = "torch",
    debug: bool = False,
) -> Probe:
    """Load ``workload`` once (in a child by default) and describe it and this machine.

    Raises the workload's one-line error (bad spec, missing data, corrupt image)
    before any time is spent training.
    """
    options = options or {}
    if check_isolation(isolation) == "process":
        data = probe_isolated(workload, options, framework=framework, debug=debug)
    else:
        data = probe_in_process(workload, options, framework)
    return Probe(workload=data["workload"], environment=data["environment"])


def _check_memory_limit(plan: Plan, found: Probe) -> None:
    check_memory_limit(plan.memory_limit_bytes, found.workload)
    check_seq_lens(plan.seq_lens, found.workload)


def check_seq_lens(seq_lens: list[int] | None, workload: dict[str, Any]) -> None:
    """Refuse ``--seq-lens`` for a workload the probe found without a sequence."""
    if seq_lens and not workload.get("seq_len"):
        raise UsageError(
            f"--seq-lens is for sequence workloads (gpt, or a Workload with seq_len): "
            f"{workload.get('name', '?')!r} has no sequence"
        )


def check_memory_limit(
    limit: int | None, workload: dict[str, Any], *, what: str = "--memory-limit"
) -> None:
    """Refuse a memory limit below what the model's weights and gradients alone need."""
    if not limit:
        return
    # weights + gradients are the least any training step holds
    needed = 2 * int(workload.get("parameter_bytes") or 0)
    if limit < needed:
        raise UsageError(
            f"{what} {format_bytes(limit)} is below the {format_bytes(needed)} that "
            f"{workload['name']}'s weights and gradients alone need"
        )


#: set to anything but "" or "0", it skips the device peak in every sweep (as --no-peak)
NO_PEAK_ENV = "BATCHSCOPE_NO_PEAK"


def peak_wanted(peak: bool | None) -> bool:
    """``peak`` when given; otherwise on, unless ``BATCHSCOPE_NO_PEAK`` is set."""
    if peak is not None:
        return peak
    return os.environ.get(NO_PEAK_ENV, "").strip().lower() in ("", "0", "false", "no")


def _peak_entry(device: str, dtype: str, threads: int | None, found: Any) -> dict[str, Any]:
    """What the run records of one measured peak (``environment["device_peaks"]``)."""
    return {
        "device": device,
        "dtype": dtype,
        "threads": found.threads,
        "flops_per_s": found.flops_per_s,
        "flops_per_s_low": found.flops_per_s_low,
        "flops_per_s_high": found.flops_per_s_high,
        "best_n": found.best_n,
        "copy_bytes_per_s": found.copy_bytes_per_s,
        "vendor_name": found.vendor_name,
        "vendor_flops_per_s": found.vendor_flops_per_s,
        "tf32": found.tf32,
        "measured_at": found.measured_at,
        "asked_threads": threads,
    }


def measure_peaks(
    plan: Plan,
    store: Store | None,
    notify: OnEvent,
    known: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The matmul peak of every (device, precision) of ``plan``, each once.

    A precision's peak is measured in its own dtype (fp32 for fp32, bf16 and fp16 for
    their autocast); a CPU's with the plan's threads. ``known`` entries (a resumed run's)
    are kept. One that cannot be measured (a dtype the device cannot multiply in) is an
    entry with an ``error``, never a failed sweep. Events: ``peak`` before each
    measurement, ``peak_done`` (with the entry) after.
    """
    from batchscope.run.peak_cache import cached_peak, peak_for

    out = [dict(e) for e in known or [] if not e.get("error")]
    have = {(e.get("device"), e.get("dtype")) for e in out}
    for device in plan.devices:
        for dtype in dict.fromkeys(plan.precisions):
            if (device, dtype) in have:
                continue
            threads = plan.threads if device.split(":")[0] == "cpu" else None
            try:
                cached = cached_peak(store, device, dtype, threads) is not None
                notify("peak", {"device": device, "dtype": dtype, "cached": cached})
                found = peak_for(store, device, dtype, threads)
            except BatchscopeError as exc:
                entry: dict[str, Any] = {
                    "device": device,
                    "dtype": dtype,
                    "asked_threads": threads,
                    "error": " ".join(str(exc).split()),
                }
            else:
                entry = _peak_entry(device, dtype, threads, found)
                entry["cached"] = cached
            out.append(entry)
            have.add((device, dtype))
            notify("peak_done", dict(entry))
    return out


def peak_of(peaks: list[dict[str, Any]], spec: TrialSpec) -> dict[str, Any] | None:
    """The measured peak a trial's MFU divides by: its device's, in its precision."""
    return next(
        (
            p
            for p in peaks
            if p.get("device") == spec.device
            and p.get("dtype") == spec.precision
            and not p.get("error")
        ),
        None,
    )


#: ``--repeats auto`` starts with this many rounds: the fewest that measure run-to-run drift
AUTO_MIN_ROUNDS = 2

#: ``more_rounds(run, rounds_done)`` → True to add a round (``--repeats auto``)
MoreRounds = Callable[[RunResult, int], bool]


def run_sweep(
    plan: Plan,
    *,
    isolation: str = "process",
    trial_timeout_s: float | None = None,
    store: Store | None = None,
    resume: str | None = None,
    on_event: OnEvent | None = None,
    found: Probe | None = None,
    workload: Workload | None = None,
    debug: bool = False,
    more_rounds: MoreRounds | None = None,
    notes: list[str] | None = None,
    peak: bool | None = None,
    executor: Executor | None = None,
) -> RunResult:
    """Run every trial of ``plan`` and return the run with all its trials.

    With a ``store``, each trial is committed the moment it ends; ``resume``
    (a run id in that store) runs only the trials that have no result yet.
    ``workload`` (an already built object) implies ``isolation="none"``, since
    a child process can only rebuild a workload from its spec string.
    ``notes`` (e.g. the preflight warnings) are recorded in the run's settings.
    With ``plan.repeats_auto`` the sweep runs two rounds, then asks ``more_rounds``
    (default: :func:`batchscope.analyse.stability.verdicts_settled`) after each
    round whether to add one, up to ``plan.max_rounds`` or ``plan.time_budget_s``.
    ``peak`` (default: on unless ``BATCHSCOPE_NO_PEAK`` is set) measures each device's
    matmul peak before the first trial, cached in ``store``, for the trials' MFU.
    ``executor`` (:mod:`batchscope.run.executors`; default: one trial after another here)
    runs each round's trials; results are stored here, in the driver, as they arrive.
    """
    import time

    from batchscope.run.store import new_run_id

    notify: OnEvent = on_event or (lambda kind, payload: None)
    if workload is not None:
        if plan.world_sizes is not None:
            raise UsageError(
                "--world-sizes needs a workload spec string: each rank rebuilds the workload"
            )
        isolation = "none"
    check_isolation(isolation)
    if executor is not None and executor.parallel and isolation != "process":
        raise UsageError(
            f"--executor {executor.name} runs every trial in a child process: "
            "drop --isolation none (or use --executor local)"
        )
    if trial_timeout_s is not None and trial_timeout_s <= 0:
        raise UsageError(f"--trial-timeout {trial_timeout_s:g} must be more than 0 seconds")
    if found is None:
        if workload is not None:
            from batchscope.hardware import envinfo
            from batchscope.run.isolation import describe_workload

            found = Probe(describe_workload(plan.workload, workload), envinfo.collect())
        else:
            found = probe(
                plan.workload,
                plan.workload_options,
                isolation=isolation,
                framework=plan.framework,
                debug=debug,
            )
    _check_memory_limit(plan, found)  # before anything is shown: an error stays one line
    if plan.accumulate > 1 and found.workload.get("has_batchnorm"):
        note = (
            f"{found.workload.get('name')} has batch normalisation: with --accumulate "
            f"{plan.accumulate} its statistics come from micro-batches, so accumulated training "
            "is not the same as the large batch (the timing comparison still holds)"
        )
        found.workload["notes"] = [*found.workload.get("notes", []), note]
    notify("probe", {"workload": found.workload, "environment": found.environment})

    rounds = AUTO_MIN_ROUNDS if plan.repeats_auto else plan.repeats
    specs = plan.trials(range(rounds))
    settings = plan.settings()
    settings["isolation"] = isolation
    settings["trial_timeout_s"] = trial_timeout_s
    if isolation == "process":
        settings["child_env_cpu"] = cpu_child_env(plan.memory_limit_bytes)
    if executor is None:
        executor = LocalExecutor(_local_work(isolation, trial_timeout_s, debug, workload))
    settings["executor"] = executor.name
    from batchscope.run.ddp_launch import sharing_notes

    notes = [
        *(notes or []),
        *executor.notes(),
        *sharing_notes(plan.world_sizes, plan.devices, plan.threads, plan.nnodes),
    ]
    if notes:
        settings["notes"] = list(notes)
    done_keys: set[str] = set()
    if resume is not None:
        if store is None:
            raise UsageError("--resume needs a results store")
        run_id = store.resolve_run_id(resume)
        previous = store.get_run(run_id)
        if previous.workload.get("spec") != plan.workload:
            raise UsageError(
                f"run {run_id} measured workload {previous.workload.get('spec')!r}, "
                f"not {plan.workload!r}: resume it with the same workload"
            )
        done_keys = store.completed_keys(run_id)
        said = list(previous.settings.get("notes") or [])
        if any(n not in said for n in executor.notes()):  # this session's caveats count too
            previous.settings = {
                **previous.settings,
                "notes": [*said, *(n for n in executor.notes() if n not in said)],
            }
            store.update_settings(run_id, previous.settings)
        planned = store.planned_keys(run_id)
        if plan.repeats_auto and planned:  # keep every round the run had planned
            rounds = max(rounds, 1 + max(int(k.split("|r=")[1].split("|")[0]) for k in planned))
            specs = plan.trials(range(rounds))
        run = previous
    else:
        run_id = new_run_id()
        run = RunResult(
            run_id=run_id,
            created=now_iso(),
            workload={**found.workload, "options": dict(plan.workload_options)},
            settings=settings,
            environment=found.environment,
        )
        if store is not None:
            store.create_run(run, [s.key for s in specs])

    peaks: list[dict[str, Any]] = list(run.environment.get("device_peaks") or [])
    if peak_wanted(peak) and plan.framework == "torch":  # the others count no FLOPs
        try:
            measured = measure_peaks(plan, store, notify, known=peaks)
        except KeyboardInterrupt:
            raise SweepInterrupted(run, resumable=store is not None) from None
        if measured != peaks:
            peaks = measured
            run.environment = {**run.environment, "device_peaks": peaks}
            if store is not None:
                store.update_environment(run_id, run.environment)

    by_key: dict[str, TrialResult] = {}
    started = time.monotonic()

    def run_specs(todo: list[TrialSpec]) -> None:
        """Hand one round to the executor; store and forward each trial as it ends."""
        assert executor is not None
        total = len(todo)
        executor.on_start = lambda i, spec: notify(
            "trial_start", {"index": i, "total": total, "spec": spec}
        )
        executor.on_progress = lambda i, kind, payload: notify(
            "trial_progress", {"index": i, "event": kind, **payload}
        )
        try:
            executor.submit(todo)
            for done in executor.as_completed():
                i, spec, trial = done.index, done.spec, done.trial
                if trial.ok:
                    stamp_mfu(trial, peak_of(peaks, spec))
                    # data parallel: against the one-rank trial of its round (run earlier;
                    # a parallel executor may finish it later: then no efficiency)
                    stamp_scaling(trial, [*run.trials, *by_key.values()])
                by_key[spec.key] = trial
                if store is not None:
                    store.add_trial(run_id, spec.key, trial)
                notify("trial_done", {"index": i, "total": total, "spec": spec, "trial": trial})
        except KeyboardInterrupt:
            executor.cancel()
            raise SweepInterrupted(
                _finish(run, store, specs, by_key), resumable=store is not None
            ) from None
        except BaseException:
            executor.cancel()
            raise

    try:
        run_specs([s for s in specs if s.key not in done_keys])
        if plan.repeats_auto:
            if more_rounds is None:
                from batchscope.analyse.stability import verdicts_settled

                def more_rounds(current: RunResult, done: int) -> bool:
                    return not verdicts_settled(current)

            stop = "max_rounds"
            while rounds < plan.max_rounds:
                if (
                    plan.time_budget_s is not None
                    and time.monotonic() - started >= plan.time_budget_s
                ):
                    stop = "time_budget"
                    break
                if not more_rounds(_finish(run, store, specs, by_key), rounds):
                    stop = "verdicts_settled"
                    break
                new = plan.trials(range(rounds, rounds + 1))
                specs += new
                rounds += 1
                if store is not None:
                    store.update_plan(run_id, [s.key for s in specs])
                notify("round", {"round": rounds, "max_rounds": plan.max_rounds})
                run_specs([s for s in new if s.key not in done_keys])
            settings = {**run.settings, "repeats": rounds, "auto_stopped_by": stop}
            run.settings = settings
            if store is not None:
                store.update_settings(run_id, settings)
        return _finish(run, store, specs, by_key)
    finally:
        executor.close()


def _local_work(
    isolation: str, timeout_s: float | None, debug: bool, workload: Workload | None
) -> Work:
    """One trial here: in a fresh child (``process``) or in this process (``none``)."""

    def work(spec: TrialSpec, progress: Any) -> TrialResult:
        if isolation == "process":
            return run_isolated(spec, timeout_s=timeout_s, progress=progress, debug=debug)
        return run_in_process(spec, workload, progress=progress)

    return work


def _finish(
    run: RunResult, store: Store | None, specs: list[TrialSpec], by_key: dict[str, TrialResult]
) -> RunResult:
    """The run with its trials in plan order, from the store when there is one."""
    if store is not None:
        try:
            return store.get_run(run.run_id)
        except StoreError:
            pass
    run.trials = [by_key[s.key] for s in specs if s.key in by_key]
    return run


def sweep(
    workload: str | Workload,
    batch_sizes: list[int] | str,
    *,
    devices: list[str] | str = "best",
    steps: int | None = None,
    epochs: int | None = None,
    isolation: str = "process",
    store: Store | None = None,
    on_event: OnEvent | None = None,
    peak: bool | None = None,
    **protocol: Any,
) -> RunResult:
    """One-call Python API: ``batchscope.sweep("simplecnn", [16, 64])``.

    The defaults are the CLI's — the fastest device present (``devices="best"``), adaptive
    steps to ±2 % — but one: nothing is stored unless ``store=`` is given (a library call
    that writes files unasked would surprise; pass ``batchscope.Store.open_default()`` for
    the CLI's store).

    ``workload`` is a spec string (built-in name, ``module:function``,
    ``file.py:function``) or a :class:`~batchscope.Workload` object (run in this
    process). ``protocol`` takes the other :class:`~batchscope.core.plan.Plan` fields
    (``warmup``, ``threads``, ``seed``, ``freeze_epochs``, ``repeats`` ...).
    ``peak=False`` skips measuring the device's matmul peak (a few seconds, cached in
    ``store``): the trials then have no MFU (default: measured, unless the environment
    variable ``BATCHSCOPE_NO_PEAK`` is set).
    """
    sizes = parse_batch_sizes(batch_sizes) if isinstance(batch_sizes, str) else list(batch_sizes)
    spec = workload if isinstance(workload, str) else workload.name
    obj = None if isinstance(workload, str) else workload
    options = protocol.pop("workload_options", {})
    found = None
    if obj is None:
        framework = protocol.get("framework", "torch")
        found = probe(spec, options, isolation=isolation, framework=framework)
        available = found.devices
    else:
        from batchscope.hardware.envinfo import available_devices

        available = available_devices()
    device_text = devices if isinstance(devices, str) else ",".join(devices)
    plan = Plan(
        workload=spec,
        workload_options=options,
        batch_sizes=sizes,
        devices=parse_devices(device_text, available),
        steps=steps,
        epochs=epochs,
        **protocol,
    )
    return run_sweep(
        plan,
        isolation=isolation,
        store=store,
        on_event=on_event,
        found=found,
        workload=obj,
        peak=peak,
    )
