"""The live displays on stderr: a sweep's trials and steps with a one-line verdict per
finished trial, and a maxbs search's attempts."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from batchscope.analyse.efficiency import format_mfu
from batchscope.core.results import TrialResult
from batchscope.core.series import variant_label
from batchscope.units import format_bytes, format_seconds


def live_text(reading: dict[str, Any]) -> str:
    """'cpu 190% · 1.2 GiB · gpu 87% 3.1 GiB 150 W': the current sampler reading."""
    parts = []
    if reading.get("cpu_percent") is not None:
        parts.append(f"cpu {reading['cpu_percent']:.0f}%")
    if reading.get("rss_bytes") is not None:
        parts.append(format_bytes(reading["rss_bytes"]))
    if reading.get("gpu_percent") is not None:
        gpu = f"gpu {reading['gpu_percent']:.0f}%"
        if reading.get("gpu_memory_bytes") is not None:
            gpu += f" {format_bytes(reading['gpu_memory_bytes'])}"
        if reading.get("power_w") is not None:
            gpu += f" {reading['power_w']:.0f} W"
        parts.append(gpu)
    return "[dim]" + " · ".join(parts) + "[/]" if parts else ""


def trial_verdict(trial: TrialResult) -> str:
    head = f"{trial.device} bs={trial.batch_size}"
    if trial.seq_len:
        head += f" seq={trial.seq_len}"
    if trial.world_size is not None:
        head += f" × {trial.world_size} rank{'s' if trial.world_size != 1 else ''}"
    if trial.repeat:
        head += f" repeat {trial.repeat + 1}"
    if trial.ok and trial.step_time_s is not None:
        mem = f", peak {format_bytes(trial.peak_memory_bytes)}" if trial.peak_memory_bytes else ""
        precise = f" ±{trial.precision_reached:.1%}" if trial.precision_reached else ""
        limit = " (stopped at --max-time)" if trial.stopped_by == "time_limit" else ""
        return (
            f"[green]✓[/] {head}: {format_seconds(trial.step_time_s.median)}/step{precise} "
            f"(n={trial.step_time_s.n}{limit}), {trial.samples_per_s:,.1f} samples/s{mem}"
            + (f", {trial.tokens_per_s:,.0f} tokens/s" if trial.tokens_per_s is not None else "")
            + (f", MFU {format_mfu(trial.mfu)}" if trial.mfu is not None else "")
        )
    if trial.ok:
        return f"[green]✓[/] {head}: done (no full-size step to time)"
    return f"[red]✗[/] {head}: {trial.status}: {trial.error or ''}"


def peak_line(entry: dict[str, Any]) -> str:
    """'cpu fp32 matmul peak: 112 GFLOP/s [109–114] (measured)' — or why there is none."""
    from batchscope.units import format_flops

    head = f"{entry.get('device')} {entry.get('dtype')} matmul peak"
    if entry.get("error"):
        return f"[yellow]note:[/] {head} not measured, so no MFU: {entry['error']}"
    low, high = entry.get("flops_per_s_low"), entry.get("flops_per_s_high")
    interval = f" [{format_flops(low)} – {format_flops(high)}]" if low and high else ""
    how = "cached" if entry.get("cached") else "measured"
    return f"{head}: {format_flops(entry.get('flops_per_s'))}{interval} ({how})"


class LiveDisplay:
    """A live rich progress display on stderr, fed by events; a no-op when disabled.

    :class:`SweepDisplay` shows a sweep's trials and steps, :class:`SearchDisplay`
    a maxbs search's attempts; both print the workload's notes when it is probed.
    """

    def __init__(self, console: Console, progress: Progress, *, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self.progress = progress

    def __enter__(self) -> LiveDisplay:
        if self.enabled:
            self.progress.start()
            self.started()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()

    def started(self) -> None:
        """Called once the display is live (add a first task here)."""

    def notes(self, payload: dict[str, Any]) -> None:
        for note in payload["workload"].get("notes", []):
            self.console.print(f"[yellow]note:[/] {note}", highlight=False)


class SweepDisplay(LiveDisplay):
    """Receives sweep events (``on_event``) and renders them; a no-op when disabled."""

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        super().__init__(console, progress, enabled=enabled)
        self.overall: TaskID | None = None
        self.current: TaskID | None = None

    def on_event(self, kind: str, payload: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if kind == "probe":
            self.notes(payload)
        elif kind == "peak":
            if self.current is not None:
                self.progress.remove_task(self.current)
            what = f"{payload['device']} {payload['dtype']} matmul peak"
            self.current = self.progress.add_task(
                f"reading the cached {what}"
                if payload.get("cached")
                else f"measuring the {what} for MFU (once per machine; --no-peak skips it)",
                total=None,
            )
        elif kind == "peak_done":
            if self.current is not None:
                self.progress.remove_task(self.current)
                self.current = None
            self.console.print(peak_line(payload), highlight=False)
        elif kind == "trial_start":
            spec = payload["spec"]
            if self.overall is None:
                self.overall = self.progress.add_task("trials", total=payload["total"])
            if self.current is not None:
                self.progress.remove_task(self.current)
            label = (
                f"[{payload['index'] + 1}/{payload['total']}] {spec.device} bs={spec.batch_size}"
            )
            variant = variant_label(
                spec.precision,
                spec.channels_last,
                spec.compile,
                spec.accumulate,
                spec.seq_len,
                spec.world_size,
            )
            if variant:
                label += f" {variant}"
            self.current = self.progress.add_task(f"{label} starting", total=None)
            self._label = label
            self._live = ""
        elif kind == "trial_progress" and self.current is not None:
            event = payload["event"]
            if event == "warmup":
                self.progress.update(
                    self.current,
                    description=f"{self._label} warm-up",
                    total=payload["total"],
                    completed=payload["done"],
                )
            elif event == "sample":
                self._live = live_text(payload)
                self.progress.update(self.current, description=f"{self._label} {self._live}")
            elif event in ("step", "epoch"):
                total = payload.get("total_steps", payload.get("total"))
                aim = ""
                if total is None and payload.get("max_error") is not None:
                    now = payload.get("precision")
                    reached = f"±{now:.1%}" if now is not None else "…"
                    aim = f" median {reached} → ±{payload['max_error']:.0%}"
                self.progress.update(
                    self.current,
                    description=f"{self._label}{aim} {getattr(self, '_live', '')}".rstrip(),
                    total=total,
                    completed=payload["done"],
                )
        elif kind == "trial_done":
            if self.overall is not None:
                self.progress.advance(self.overall)
            trial = payload["trial"]
            self.console.print(trial_verdict(trial), highlight=False)
            for finding in trial.diagnosis:
                self.console.print(f"  [yellow]{finding}[/]", highlight=False)


class SearchDisplay(LiveDisplay):
    """Live progress of a maxbs search on stderr; a no-op when disabled."""

    def __init__(self, console: Console, *, enabled: bool) -> None:
        progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        super().__init__(console, progress, enabled=enabled)
        self.task: Any = None
        self.label = ""

    def started(self) -> None:
        self.task = self.progress.add_task("loading the workload…", total=None)

    def on_event(self, kind: str, payload: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if kind == "probe":
            self.notes(payload)
        elif kind == "budget":
            self.console.print(
                f"budget {format_bytes(payload['budget_bytes'])} ({payload['source']})"
                + (
                    f", trials must stay under {format_bytes(payload['limit_bytes'])}"
                    if payload["limit_bytes"] != payload["budget_bytes"]
                    else ""
                ),
                highlight=False,
            )
        elif kind == "trial_start":
            self.label = (
                f"trial {payload['index'] + 1}: batch size {payload['batch_size']} "
                f"({payload['reason']})"
            )
            self.progress.update(self.task, description=f"{self.label} starting")
        elif kind == "trial_progress":
            if payload.get("event") == "step":
                self.progress.update(
                    self.task,
                    description=f"{self.label} step {payload['done']}/{payload['total']}",
                )
        elif kind == "trial_done":
            t = payload["trial"]
            mark = "[green]✓[/]" if t.fits else "[red]✗[/]"
            detail = "fits" if t.fits else f"{t.status}: {t.error or ''}"
            peak = ""
            if t.peak_memory_bytes and "peak" not in detail:
                peak = f", peak {format_bytes(t.peak_memory_bytes)}"
            self.console.print(f"{mark} batch size {t.batch_size}: {detail}{peak}", highlight=False)
            self.progress.update(self.task, description="choosing the next size…")
