"""Run a sweep and report it: probe, plan, sweep, print, export, write the report.

Shared by ``sweep`` and ``demo``. Says what was saved whenever it is interrupted.
"""

from __future__ import annotations

from contextlib import nullcontext

import typer

from batchscope.cli.app import CliState
from batchscope.cli.common import open_store, resolve_devices
from batchscope.cli.console import stderr, stdout
from batchscope.cli.request import SweepRequest
from batchscope.errors import UsageError


def run_and_report(request: SweepRequest, state: CliState | None = None) -> None:
    """Probe, plan, sweep, print, export, report — and say what was saved if interrupted.

    ``request.plan``: a resumed run's stored plan (``--resume``); otherwise the plan is
    built from the command line once the probe knows which devices are present. The store
    is opened only after the probe, so a workload that fails to load leaves nothing.
    """
    from batchscope.cli.display import SweepDisplay

    state = state or CliState()
    r = request
    workload, options, batch_sizes, devices = r.workload, r.options, r.batch_sizes, r.devices
    protocol, plan, isolation, trial_timeout = r.protocol, r.plan, r.isolation, r.trial_timeout
    store_path, no_store, resume, quiet = r.store_path, r.no_store, r.resume, r.quiet
    json_path, csv_path, markdown_path = r.json_path, r.csv_path, r.markdown_path
    out_dir, no_report, announce = r.out_dir, r.no_report, r.announce
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
    if plan is None and not quiet:
        from batchscope.core.plan import batch_size_notes

        for note in batch_size_notes(batch_sizes):
            err.print(f"[yellow]note:[/] --batch-sizes {note}", highlight=False)
    framework = plan.framework if plan is not None else protocol.get("framework", "torch")
    try:
        with (
            err.status("loading the workload and probing devices…", spinner="dots")
            if not quiet
            else nullcontext()
        ):
            found = probe(
                workload, options, isolation=isolation, framework=framework, debug=state.debug
            )
    except KeyboardInterrupt:
        err.print("interrupted while loading the workload: nothing was measured or saved")
        state.interrupt_said = True
        raise typer.Exit(130) from None
    if plan is None:
        plan = Plan(
            workload=workload,
            workload_options=options,
            batch_sizes=sizes,
            devices=resolve_devices(devices, found.devices),
            **protocol,
        )
    else:
        parse_devices(",".join(plan.devices), found.devices)  # the stored devices are here
    from batchscope.run.sweep import check_memory_limit, check_seq_lens

    check_memory_limit(plan.memory_limit_bytes, found.workload)  # a bad limit: one line, first
    check_seq_lens(plan.seq_lens, found.workload)
    executor = None
    if r.executor != "local":
        from batchscope.run.executors import make_executor

        with (
            err.status(f"starting the {r.executor} executor…", spinner="dots")
            if not quiet
            else nullcontext()
        ):
            executor = make_executor(
                r.executor,
                environment=found.environment,
                timeout_s=trial_timeout,
                debug=state.debug,
                ray_address=r.ray_address,
                parallel_cpu_trials=r.parallel_cpu_trials,
                threads=plan.threads,
            )
    store = open_store(store_path, no_store)
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
                debug=state.debug,
                notes=warnings,
                peak=False if r.no_peak else None,
                executor=executor,
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
            print_run(stop.run, stdout(), wide=r.wide or None)
        state.interrupt_said = True
        raise typer.Exit(130) from None
    finally:
        if executor is not None:
            executor.close()  # run_sweep closes it too; this covers an error before it ran
    to_stdout = "-" in (json_path, csv_path, markdown_path)
    try:
        # an export to stdout ("-") takes stdout: the table goes to stderr then
        print_run(run, err if to_stdout else stdout(), wide=r.wide or None)
        written = write_exports(
            run, json_path=json_path, csv_path=csv_path, markdown_path=markdown_path
        )
        if not quiet:
            for path in written:
                if str(path) != "-":
                    err.print(f"wrote {path}", highlight=False)
            if store is not None:
                err.print(f"run {run.run_id} saved in {store.path}", highlight=False)
        # The report folder (default ./batchscope-results/RUN_ID/); --no-store writes none unasked.
        if not no_report and (out_dir is not None or store is not None):
            from batchscope.report.build import default_report_dir, write_report

            target = out_dir if out_dir is not None else default_report_dir(run.run_id)
            with err.status("writing the report…", spinner="dots") if not quiet else nullcontext():
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
        state.interrupt_said = True
        raise typer.Exit(130) from None
    failed = [t for t in run.trials if not t.ok]
    if failed:  # exit 1: scripts can tell; the table and the store hold everything
        if not quiet:
            statuses = ", ".join(sorted({t.status for t in failed}))
            err.print(
                f"{len(failed)} of {len(run.trials)} trial(s) did not finish ok ({statuses}): "
                "exit status 1",
                highlight=False,
            )
        raise typer.Exit(1)
