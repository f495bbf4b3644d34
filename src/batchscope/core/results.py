"""The results contract: plain dataclasses that become the JSON users' scripts read.

``schema`` names the version. Later features add fields; they never rename or
remove one, so a script written against ``batchscope.results/1`` keeps working.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SCHEMA = "batchscope.results/1"

#: Trial outcomes. ``ok`` is the only one with measurements.
STATUSES = ("ok", "oom", "crashed", "timeout", "error", "unsupported", "interrupted", "diverged")


def now_iso() -> str:
    """The current UTC time, to the second, in ISO 8601 (what runs and stores record)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def json_safe(value: Any, path: str = "", found: list[str] | None = None) -> Any:
    """``value`` with every NaN and ±infinity replaced by None; their paths go to ``found``.

    JSON has no non-finite numbers: a diverged loss (NaN) or an unbounded interval end
    (inf) is written as ``null``, and the export lists where (``trials[2].final_train_loss``).
    """
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        if found is not None:
            found.append(f"{path} ({value})")
        return None
    if isinstance(value, dict):
        return {k: json_safe(v, f"{path}.{k}" if path else str(k), found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default), without importing numpy."""
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return float(sorted_values[lo] * (1 - frac) + sorted_values[hi] * frac)


@dataclass(kw_only=True)
class StepStats:
    """Summary of a sample of step times (seconds): robust centre and spread first."""

    median: float
    iqr: float
    mean: float
    stdev: float
    min: float
    max: float
    n: int
    #: the 95 % interval of the median (Maritz–Jarrett, batchscope.core.precision);
    #: None with fewer than 6 samples, where no such interval exists
    median_low: float | None = None
    median_high: float | None = None

    @classmethod
    def from_samples(cls, samples: Sequence[float]) -> StepStats:
        from batchscope.core.precision import median_precision

        if not samples:
            raise ValueError("no samples to summarise")
        ordered = sorted(float(s) for s in samples)
        interval = median_precision(ordered).interval()
        return cls(
            median=quantile(ordered, 0.5),
            iqr=quantile(ordered, 0.75) - quantile(ordered, 0.25),
            mean=statistics.fmean(ordered),
            stdev=statistics.stdev(ordered) if len(ordered) > 1 else 0.0,
            min=ordered[0],
            max=ordered[-1],
            n=len(ordered),
            median_low=interval[0] if interval else None,
            median_high=interval[1] if interval else None,
        )

    @property
    def relative_iqr(self) -> float:
        return self.iqr / self.median if self.median > 0 else math.inf


@dataclass(kw_only=True)
class EpochRecord:
    """What one epoch of an ``--epochs`` protocol did."""

    epoch: int
    frozen: bool
    time_s: float
    samples: int
    train_loss: float | None
    val_loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(kw_only=True)
class TrialResult:
    """One (workload, device, batch size) training run and what was measured."""

    device: str
    batch_size: int
    status: str = "ok"
    repeat: int = 0
    step_time_s: StepStats | None = None
    data_wait_s: StepStats | None = None
    #: every measured step time in run order (seconds), for outlier and warm-up checks
    step_times_s: list[float] = field(default_factory=list)
    #: half the 95 % interval of the median step time, as a fraction of it (0.02: ±2 %)
    precision_reached: float | None = None
    #: with status "diverged": the step (1-based, warm-up counted apart) whose loss was not finite
    diverged_at_step: int | None = None
    #: why measuring stopped: "max_error" (the precision was reached), "time_limit"
    #: (--max-time ran out first), "steps" (a fixed --steps), "epochs" (a protocol)
    stopped_by: str | None = None
    samples_per_s: float | None = None
    data_wait_fraction: float | None = None
    samples_per_epoch: int | None = None
    steps_per_epoch: int | None = None
    total_time_s: float | None = None
    epoch_time_s: list[float] = field(default_factory=list)
    final_train_loss: float | None = None
    epochs: list[EpochRecord] = field(default_factory=list)
    warmup_steps: int = 0
    measured_steps: int = 0
    setup_time_s: float | None = None
    #: the peak that tables show and budgets judge (engine.instrument.MemoryProbe):
    #: CPU resident-memory growth over set-up, CUDA peak reserved, MPS sampled allocated
    peak_memory_bytes: int | None = None
    peak_reserved_bytes: int | None = None
    peak_rss_bytes: int | None = None
    #: CUDA/MPS: the absolute peak of allocated tensors
    peak_allocated_bytes: int | None = None
    #: every device: the peak's growth over the post-set-up baseline
    peak_over_baseline_bytes: int | None = None
    #: what peak_memory_bytes holds: "cpu_rss_growth", "cuda_reserved", "mps_sampled_allocated"
    peak_memory_kind: str | None = None
    #: samples trained in the measured protocol (partial batches included)
    samples_trained: int | None = None
    #: mean seconds per step in each phase: data_wait + compute, or with --breakdown
    #: data_wait, h2d, forward, backward, optimizer
    time_split_s: dict[str, float] = field(default_factory=dict)
    #: the same as fractions of the step time
    time_split: dict[str, float] = field(default_factory=dict)
    #: plain-language findings about this trial (e.g. input-bound)
    diagnosis: list[str] = field(default_factory=list)
    #: the hardware sampler's summary over the measured protocol (monitor.HardwareSummary)
    hardware: dict[str, Any] = field(default_factory=dict)
    #: mean/max utilisation in percent: cpu_process (of one core), gpu
    utilization: dict[str, float | None] = field(default_factory=dict)
    power_w_mean: float | None = None
    energy_j: float | None = None
    energy_per_sample_j: float | None = None
    energy_per_1000_samples_j: float | None = None
    energy_per_epoch_j: float | None = None
    #: CPU time of the hardware sampler's thread ÷ the protocol's wall time (of one core)
    sampler_cpu_fraction: float | None = None
    #: downsampled sampler readings (t_s from the protocol's start) and that start (Unix s)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    timeline_start_unix: float | None = None
    threads: int | None = None
    seed: int | None = None
    drop_last: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    #: with --target: {metric, value, lower_is_better, reached, epoch, time_s, samples,
    #: reported, best} — when the validation metric first met the target (target.py)
    target: dict[str, Any] | None = None
    #: variants (batchscope.engine.variants): autocast precision, channels-last, torch.compile
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    #: with --compile: first warm-up step minus the median of the other warm-up steps
    compile_time_s: float | None = None
    #: micro-batches per optimizer step; a "step" is one optimizer step of all of them
    accumulate: int = 1
    #: batch_size × accumulate: the samples behind each optimizer step
    effective_batch_size: int | None = None
    #: the learning rate the optimizer ran with after scaling (first param group)
    lr: float | None = None
    lr_scaling: str = "none"
    base_batch_size: int | None = None
    lr_warmup_steps: int = 0
    #: model FLOPs of one optimizer step — forward, loss and backward of every micro-batch,
    #: as torch.utils.flop_counter counts them (matmuls, convolutions, attention: 2 per
    #: multiply-add; elementwise ops and the optimizer are not counted), from the shapes
    #: alone, so compiled and mixed-precision variants count the same. None when not
    #: counted (batchscope.engine.flops; the notes say why)
    flops_per_step: int | None = None
    #: flops_per_step ÷ effective_batch_size
    flops_per_sample: float | None = None
    #: flops_per_step ÷ the median step time (FLOP/s), and the same over the median's
    #: 95 % interval (low from median_high, high from median_low; None without one)
    achieved_flops_per_s: float | None = None
    achieved_flops_per_s_low: float | None = None
    achieved_flops_per_s_high: float | None = None
    #: the device's matmul peak measured on this machine in device_peak_dtype
    #: (batchscope.hardware.peak), FLOP/s, with its 95 % interval; None with --no-peak
    device_peak_flops: float | None = None
    device_peak_flops_low: float | None = None
    device_peak_flops_high: float | None = None
    device_peak_dtype: str | None = None
    #: model FLOPs utilisation: achieved_flops_per_s ÷ device_peak_flops (0.41: 41 %); its
    #: interval combines both conservatively: low = achieved low ÷ peak high, high =
    #: achieved high ÷ peak low (batchscope.analyse.efficiency)
    mfu: float | None = None
    mfu_low: float | None = None
    mfu_high: float | None = None
    #: bytes one step reads and writes, estimated from its ops' operand sizes
    #: (batchscope.engine.flops: forward and backward ops + 3 × parameter bytes)
    bytes_per_step: int | None = None
    #: the device's measured copy bandwidth (bytes read + written per second)
    device_copy_bytes_per_s: float | None = None
    #: the share of the median step that bytes_per_step takes at that bandwidth (0.6:
    #: memory traffic alone explains 60 % of the step), with the step time's interval
    bandwidth_fraction: float | None = None
    bandwidth_fraction_low: float | None = None
    bandwidth_fraction_high: float | None = None
    #: where the trial ran (batchscope.hardware.machine): the host's name and a hash of its
    #: CPU, cores, memory and GPU names; the trials of one run differ with --executor ray
    #: on a cluster. None in results older than the executors
    hostname: str | None = None
    machine_fingerprint: str | None = None
    #: what ran it: "local" (one trial after another), "gpus" or "ray" (batchscope.run.executors)
    executor: str | None = None
    #: the physical GPU(s) the trial's child was pinned to with CUDA_VISIBLE_DEVICES (its
    #: entries: indexes or UUIDs) by --executor gpus or ray; the child itself saw cuda:0.
    #: Empty when not pinned
    physical_gpus: list[str] = field(default_factory=list)
    #: a sequence workload's tokens per sample (``--seq-lens``), else None; with it the
    #: token figures below (batchscope.core.tokens, their one definition)
    seq_len: int | None = None
    #: effective_batch_size × seq_len: the tokens behind each optimizer step
    tokens_per_step: int | None = None
    #: tokens_per_step ÷ the median step time, and the same over the median's 95 % interval
    tokens_per_s: float | None = None
    tokens_per_s_low: float | None = None
    tokens_per_s_high: float | None = None
    #: flops_per_step ÷ tokens_per_step
    flops_per_token: float | None = None
    #: mean validation loss per sample (per token for a sequence workload: nats) after
    #: the protocol (the last epoch's; a sequence workload's step run validates once after
    #: its measured steps, on the first 256 validation sequences), and exp of it for a
    #: sequence workload
    val_loss: float | None = None
    val_perplexity: float | None = None
    #: data parallel (``--world-sizes``, batchscope.engine.ddp): ranks of the trial; None:
    #: the ordinary one-process engine. ``batch_size`` is then per device, like
    #: ``per_device_batch_size``; ``global_batch_size`` = per-device × world × accumulation,
    #: and ``samples_per_s`` is global (global batch ÷ the median of the slowest rank's steps)
    world_size: int | None = None
    per_device_batch_size: int | None = None
    global_batch_size: int | None = None
    samples_per_s_per_device: float | None = None
    #: "weak" (batch per device fixed) or "strong" (global batch fixed): what
    #: scaling_efficiency compares against (batchscope.analyse.scaling)
    scaling_mode: str | None = None
    #: samples_per_s ÷ (world_size × samples_per_s of the same round's one-rank trial at the
    #: same per-device batch (weak) or global batch (strong)), with its 95 % interval
    scaling_efficiency: float | None = None
    scaling_efficiency_low: float | None = None
    scaling_efficiency_high: float | None = None
    #: exposed (not overlapped) gradient communication as a share of a step: 1 − median of
    #: extra steps under ``no_sync()`` ÷ median of as many synchronised steps, interleaved
    #: after the protocol; None when not determined (its interval reaches 0: within noise)
    comm_fraction: float | None = None
    comm_fraction_low: float | None = None
    comm_fraction_high: float | None = None

    @classmethod
    def from_spec(cls, spec: Any, **fields: Any) -> TrialResult:
        """A result for the trial ``spec`` (a :class:`~batchscope.core.plan.TrialSpec`):
        its identity and variant fields copied, ``fields`` set on top.

        Every trainer (the engine, the framework callbacks, ``measure``) and the runner's
        failure records start here, so a result always names its trial the same way.
        """
        base: dict[str, Any] = {
            "device": spec.device,
            "batch_size": spec.batch_size,
            "repeat": spec.repeat,
            "seed": spec.seed,
            "drop_last": spec.drop_last,
            "warmup_steps": spec.warmup,
            "precision": spec.precision,
            "channels_last": spec.channels_last,
            "compile": spec.compile,
            "accumulate": spec.accumulate,
            "effective_batch_size": spec.batch_size * spec.accumulate,
            "lr_scaling": spec.lr_scaling,
            "base_batch_size": spec.base_batch_size,
            "lr_warmup_steps": spec.lr_warmup_steps,
        }
        seq_len = getattr(spec, "seq_len", None)
        if seq_len:  # a failed trial stays in its sequence length's series
            from batchscope.core.tokens import tokens_per_step

            base["seq_len"] = seq_len
        world = getattr(spec, "world_size", None)
        if world is not None:
            base.update(
                world_size=world,
                per_device_batch_size=spec.batch_size,
                global_batch_size=spec.batch_size * world * spec.accumulate,
                scaling_mode=spec.scaling_mode,
            )
        if seq_len:  # a data-parallel step holds every rank's batch: its global batch
            batch = base.get("global_batch_size") or spec.batch_size * spec.accumulate
            base["tokens_per_step"] = tokens_per_step(batch, seq_len)
        base.update(fields)
        return cls(**base)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def time_per_sample_s(self) -> float | None:
        if self.step_time_s is None:
            return None
        return self.step_time_s.median / (self.effective_batch_size or self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("step_time_s", "data_wait_s"):
            if isinstance(kwargs.get(key), dict):
                kwargs[key] = StepStats(**kwargs[key])
        kwargs["epochs"] = [EpochRecord(**e) for e in kwargs.get("epochs") or []]
        return cls(**kwargs)


@dataclass(kw_only=True)
class RunResult:
    """A whole sweep: what was asked, where it ran, and every trial."""

    run_id: str
    created: str
    workload: dict[str, Any]
    settings: dict[str, Any]
    environment: dict[str, Any]
    trials: list[TrialResult] = field(default_factory=list)
    schema: str = SCHEMA

    @property
    def is_protocol(self) -> bool:
        """Trials ran a training protocol of whole epochs (``--epochs``, fastai, Keras),
        so their wall time is measured, not estimated from steps."""
        framework = self.settings.get("framework")
        return self.settings.get("epochs") is not None or framework in ("fastai", "keras")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "run_id": self.run_id,
            "created": self.created,
            "workload": self.workload,
            "settings": self.settings,
            "environment": self.environment,
            "trials": [t.to_dict() for t in self.trials],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        return cls(
            schema=data.get("schema", SCHEMA),
            run_id=data["run_id"],
            created=data["created"],
            workload=data.get("workload", {}),
            settings=data.get("settings", {}),
            environment=data.get("environment", {}),
            trials=[TrialResult.from_dict(t) for t in data.get("trials", [])],
        )

    @property
    def devices(self) -> list[str]:
        seen: dict[str, None] = {}
        for t in self.trials:
            seen.setdefault(t.device, None)
        return list(seen)

    # -------------------------------------------------- the convenience API (analysis on demand)

    @property
    def analysis(self) -> Any:
        """The run's :class:`~batchscope.RunAnalysis` — the same the CLI prints (computed now)."""
        from batchscope.analyse.explain import analyse_run

        return analyse_run(self)

    @property
    def recommendation(self) -> dict[str, Any]:
        """Per series, the batch size to use and why: ``{"cpu": {"batch_size", "reason"}}``."""
        out: dict[str, Any] = {}
        for name, verdicts in self.analysis.verdicts().items():
            out[name] = verdicts.get("recommendation")
        return out

    def to_pandas(self) -> Any:
        """One row per trial (the CSV's columns), as a pandas DataFrame.

        Needs pandas (``pip install 'batchscope[pandas]'``).
        """
        try:
            import pandas as pd
        except ImportError as exc:
            from batchscope.errors import UsageError

            raise UsageError("to_pandas() needs pandas: pip install 'batchscope[pandas]'") from exc
        from batchscope.report.export import csv_rows

        return pd.DataFrame(csv_rows(self))

    def _summary(self) -> tuple[str, list[str]]:
        sizes = sorted({t.batch_size for t in self.trials})
        name = str(self.workload.get("name", "?"))
        failed = sum(not t.ok for t in self.trials)
        head = (
            f"{name}: {len(self.trials)} trial(s) on {', '.join(self.devices) or 'no device'}, "
            f"batch sizes {', '.join(map(str, sizes)) or '–'}"
            + (f", {failed} failed" if failed else "")
        )
        verdicts = []
        for series, rec in self.recommendation.items() if self.trials else []:
            verdicts.append(
                f"{series}: use b={rec['batch_size']}" if rec else f"{series}: no verdict"
            )
        return head, verdicts

    def __repr__(self) -> str:
        head, verdicts = self._summary()
        tail = f"; {'; '.join(verdicts)}" if verdicts else ""
        return f"<RunResult {self.run_id} {head}{tail}>"

    def _repr_html_(self) -> str:
        """A notebook's view: the verdict lines and the table (escaped)."""
        from batchscope.report.notebook import run_html

        return str(run_html(self))
