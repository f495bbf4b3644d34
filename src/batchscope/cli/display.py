"""The live sweep display on stderr: overall trials, the current trial's steps, and
a one-line verdict per finished trial."""

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

from batchscope.core.results import TrialResult
from batchscope.engine.variants import variant_label
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
    if trial.repeat:
        head += f" repeat {trial.repeat + 1}"
    if trial.ok and trial.step_time_s is not None:
        mem = f", peak {format_bytes(trial.peak_memory_bytes)}" if trial.peak_memory_bytes else ""
        precise = f" ±{trial.precision_reached:.1%}" if trial.precision_reached else ""
        limit = " (stopped at --max-time)" if trial.stopped_by == "time_limit" else ""
        return (
            f"[green]✓[/] {head}: {format_seconds(trial.step_time_s.median)}/step{precise} "
            f"(n={trial.step_time_s.n}{limit}), {trial.samples_per_s:,.1f} samples/s{mem}"
        )
    if trial.ok:
        return f"[green]✓[/] {head}: done (no full-size step to time)"
    return f"[red]✗[/] {head}: {trial.status}: {trial.error or ''}"


class SweepDisplay:
    """Receives sweep events (``on_event``) and renders them; a no-op when disabled."""

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self.progress = Progress(
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
        self.overall: TaskID | None = None
        self.current: TaskID | None = None

    def __enter__(self) -> SweepDisplay:
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()

    def on_event(self, kind: str, payload: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if kind == "probe":
            for note in payload["workload"].get("notes", []):
                self.console.print(f"[yellow]note:[/] {note}", highlight=False)
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
                spec.precision, spec.channels_last, spec.compile, spec.accumulate
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
