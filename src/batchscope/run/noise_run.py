"""The gradient noise scale, statistical efficiency and goodput (McCandlish et al. 2018).

Why: throughput alone rewards ever larger batches, but past the *critical batch
size* a larger batch buys almost no fewer steps, so the samples it processes are
partly wasted. "An Empirical Model of Large-Batch Training" (Appendix A) estimates
the simple noise scale ``B_simple = tr(Σ) / |G|²`` from the gradients of one step's
batch split into micro-batches; Pollux multiplies throughput by the resulting
statistical efficiency to get the *goodput*: useful samples per second.

How it is measured here: a short training run at a base batch size ``B``; every step
splits its batch into ``k`` micro-batches of ``b = B/k``, back-propagates each, and
trains on their mean (the big-batch gradient, so training is that of batch ``B``).
Per step, with ``|G_B|²`` the squared norm of the mean and ``|G_b|²`` the mean squared
norm of the micro-batch gradients, the unbiased estimators are

    |G|²  ≈ (B·|G_B|² − b·|G_b|²) / (B − b)
    tr(Σ) ≈ (|G_b|² − |G_B|²) / (1/b − 1/B)

Their ratio is biased when taken step by step, so numerator and denominator are
averaged over steps first (a window of ``every`` steps for the curve over training,
all steps for the summary), then divided. The 95 % interval is a percentile
bootstrap over steps of that ratio of means; steps close in training are correlated,
so it is a lower bound on the true uncertainty.

The estimator assumes the loss is a *mean* over the batch (as every torch loss is by
default), so that a batch's gradient is the mean of its samples' gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from batchscope.core.results import json_safe
from batchscope.errors import UsageError

if TYPE_CHECKING:
    from batchscope.core.results import RunResult
    from batchscope.workloads import Workload

#: the interval reported with every estimate
CONFIDENCE = 0.95
#: bootstrap resamples of the steps
BOOTSTRAP = 2000

#: ``progress(done_steps, total_steps)``
NoiseProgress = Callable[[int, int], None]


@dataclass
class NoisePoint:
    """The noise scale over one window of training steps (``step`` is its last)."""

    step: int
    b_simple: float
    low: float
    high: float
    grad_sq: float
    trace_sigma: float
    train_loss: float | None = None


@dataclass
class NoiseEstimate:
    """The simple noise scale of a workload at a base batch size, over training.

    ``b_noise`` (≈ the critical batch size) pools every measured step; ``low``/``high``
    bound it with ``confidence`` (a percentile bootstrap over steps). ``inf`` means the
    gradient's signal was not measurably above its noise: larger than ``B`` can tell.
    """

    workload: str
    device: str
    batch_size: int
    micro_batches: int
    steps: int
    every: int
    seed: int
    b_noise: float
    low: float
    high: float
    grad_sq: float
    trace_sigma: float
    confidence: float = CONFIDENCE
    points: list[NoisePoint] = field(default_factory=list)
    #: per measured step: (|G|² estimate, tr(Σ) estimate)
    per_step: list[tuple[float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // self.micro_batches

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data; infinite or undefined figures become None."""
        data = asdict(self)
        data["micro_batch_size"] = self.micro_batch_size
        data["interval"] = f"{self.confidence * 100:g} % percentile bootstrap over steps"
        return json_safe(data)


# ---------------------------------------------------------------- the estimator


def unbiased_terms(big_sq: float, small_sq: float, big: int, small: int) -> tuple[float, float]:
    """``(|G|², tr(Σ))`` from ``|G_B|²`` and the mean ``|G_b|²`` (Appendix A, eqs. A.2–A.3)."""
    if not 0 < small < big:
        raise ValueError(f"need 0 < micro-batch size {small} < batch size {big}")
    grad_sq = (big * big_sq - small * small_sq) / (big - small)
    trace = (small_sq - big_sq) / (1.0 / small - 1.0 / big)
    return grad_sq, trace


def ratio_of_means(grad_sq: Sequence[float], trace: Sequence[float]) -> float:
    """``mean(tr Σ) / mean(|G|²)``: ``inf`` when the mean ``|G|²`` is not positive."""
    if not grad_sq:
        return math.nan
    g = math.fsum(grad_sq) / len(grad_sq)
    s = math.fsum(trace) / len(trace)
    return s / g if g > 0 else math.inf


def bootstrap_interval(
    grad_sq: Sequence[float],
    trace: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap over steps of :func:`ratio_of_means` (resampling whole steps)."""
    import numpy as np

    n = len(grad_sq)
    if n < 2:
        return math.nan, math.nan
    g = np.asarray(grad_sq, dtype=float)
    s = np.asarray(trace, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    g_mean = g[idx].mean(axis=1)
    s_mean = s[idx].mean(axis=1)
    ratios = np.where(g_mean > 0, s_mean / np.where(g_mean > 0, g_mean, 1.0), np.inf)
    ratios.sort()
    alpha = (1.0 - confidence) / 2
    # order statistics, no interpolation: an infinite tail stays infinite, never NaN
    lo = ratios[min(resamples - 1, int(math.floor(alpha * resamples)))]
    hi = ratios[min(resamples - 1, int(math.ceil((1 - alpha) * resamples)) - 1)]
    return float(lo), float(hi)


def _slice_batch(obj: Any, start: int, stop: int) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj[start:stop]
    if isinstance(obj, (list, tuple)):
        return type(obj)(_slice_batch(o, start, stop) for o in obj)
    if isinstance(obj, dict):
        return {k: _slice_batch(v, start, stop) for k, v in obj.items()}
    return obj


def estimate_noise_scale(
    workload: str | Workload,
    *,
    batch_size: int = 256,
    micro_batches: int = 8,
    steps: int = 200,
    every: int = 20,
    seed: int = 0,
    threads: int | None = None,
    device: str = "cpu",
    workload_options: dict[str, Any] | None = None,
    progress: NoiseProgress | None = None,
) -> NoiseEstimate:
    """Train ``steps`` steps at ``batch_size`` and estimate ``B_simple`` along the way.

    Every step's batch is split into ``micro_batches`` equal parts; the curve has one
    point per ``every`` steps (each from its own window), the summary pools all steps.
    Raises :class:`~batchscope.errors.UsageError` for settings that cannot work.
    """
    import torch

    from batchscope.core.plan import TrialSpec
    from batchscope.engine.trainer import Trainer, batch_length, to_device
    from batchscope.engine.trial import check_device, seed_everything
    from batchscope.workloads import WorkloadOptions, load_workload

    check_settings(batch_size, micro_batches, steps, every)
    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads {threads} must be at least 1")
        torch.set_num_threads(threads)
    torch_device = check_device(device)
    options = dict(workload_options or {})
    if isinstance(workload, str):
        spec_text = workload
        options.setdefault("seed", seed)
        loaded = load_workload(workload, WorkloadOptions.from_dict(options))
    else:
        spec_text, loaded = workload.name, workload
    n_train = len(loaded.train_dataset)  # type: ignore[arg-type]
    if n_train < batch_size:
        raise UsageError(
            f"--batch-size {batch_size} is larger than the {n_train} training samples of "
            f"{loaded.name}: use at most {n_train}"
        )
    seed_everything(seed)
    spec = TrialSpec(
        workload=spec_text,
        workload_options=options,
        device=device,
        batch_size=batch_size,
        steps=steps,
        seed=seed,
        drop_last=True,  # every step splits into equal micro-batches
        warmup=0,
    )
    trainer = Trainer(spec, loaded, torch_device)
    model, optimizer = trainer.model, trainer.optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    small = batch_size // micro_batches
    notes: list[str] = []
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        notes.append(
            f"the model has batch normalisation: each micro-batch of {small} normalises "
            "with its own statistics, so the gradients differ a little from a batch of "
            f"{batch_size}'s"
        )
    per_step: list[tuple[float, float]] = []
    losses: list[float] = []
    batches = trainer.batches()
    model.train()
    for step in range(steps):
        batch = next(batches)
        inputs = to_device(batch[0], torch_device, trainer.non_blocking)
        targets = to_device(batch[1], torch_device, trainer.non_blocking)
        if batch_length(targets) != batch_size:  # pragma: no cover - drop_last guards it
            raise UsageError(f"a batch of {batch_length(targets)} is not {batch_size}")
        sums = [torch.zeros_like(p) for p in params]
        small_sq = torch.zeros((), device=torch_device, dtype=torch.float64)
        loss_sum = torch.zeros((), device=torch_device)
        for j in range(micro_batches):
            lo, hi = j * small, (j + 1) * small
            optimizer.zero_grad(set_to_none=True)
            loss = trainer.loss_fn(
                model(_slice_batch(inputs, lo, hi)), _slice_batch(targets, lo, hi)
            )
            loss.backward()
            loss_sum += loss.detach()
            for acc, p in zip(sums, params, strict=True):
                if p.grad is not None:
                    acc += p.grad
                    small_sq += p.grad.double().pow(2).sum()
        big_sq = torch.zeros((), device=torch_device, dtype=torch.float64)
        for acc, p in zip(sums, params, strict=True):
            acc /= micro_batches
            big_sq += acc.double().pow(2).sum()
            p.grad = acc  # the big batch's gradient: training is that of batch_size
        optimizer.step()
        per_step.append(
            unbiased_terms(float(big_sq), float(small_sq) / micro_batches, batch_size, small)
        )
        losses.append(float(loss_sum) / micro_batches)
        if progress is not None:
            progress(step + 1, steps)
    return summarise(
        per_step,
        losses=losses,
        workload=spec_text,
        device=device,
        batch_size=batch_size,
        micro_batches=micro_batches,
        every=every,
        seed=seed,
        notes=notes,
    )


def check_settings(batch_size: int, micro_batches: int, steps: int, every: int) -> None:
    if micro_batches < 2:
        raise UsageError(f"--micro-batches {micro_batches} must be at least 2")
    if batch_size < micro_batches or batch_size % micro_batches:
        raise UsageError(
            f"--batch-size {batch_size} must split into --micro-batches {micro_batches} "
            "equal parts of at least 1 sample: use a multiple of it"
        )
    if steps < 2:
        raise UsageError(f"--steps {steps} must be at least 2 (the interval needs 2 steps)")
    if every < 1 or every > steps:
        raise UsageError(f"--every {every} must be between 1 and --steps {steps}")


def summarise(
    per_step: Sequence[tuple[float, float]],
    *,
    workload: str,
    device: str,
    batch_size: int,
    micro_batches: int,
    every: int,
    seed: int = 0,
    losses: Sequence[float] | None = None,
    notes: Sequence[str] = (),
) -> NoiseEstimate:
    """The curve (one point per window of ``every`` steps) and the pooled estimate."""
    grad_sq = [g for g, _ in per_step]
    trace = [s for _, s in per_step]
    points = []
    for end in range(every, len(per_step) + 1, every):
        g, s = grad_sq[end - every : end], trace[end - every : end]
        low, high = bootstrap_interval(g, s, seed=seed + end)
        window_loss = math.fsum(losses[end - every : end]) / every if losses is not None else None
        points.append(
            NoisePoint(
                step=end,
                b_simple=ratio_of_means(g, s),
                low=low,
                high=high,
                grad_sq=math.fsum(g) / every,
                trace_sigma=math.fsum(s) / every,
                train_loss=window_loss,
            )
        )
    low, high = bootstrap_interval(grad_sq, trace, seed=seed)
    b_noise = ratio_of_means(grad_sq, trace)
    out_notes = list(notes)
    if not math.isfinite(b_noise):
        out_notes.append(
            f"the gradient's signal is not above its noise at batch {batch_size}: B_noise is "
            "larger than this measurement can tell (try more --steps or a larger --batch-size)"
        )
    return NoiseEstimate(
        workload=workload,
        device=device,
        batch_size=batch_size,
        micro_batches=micro_batches,
        steps=len(per_step),
        every=every,
        seed=seed,
        b_noise=b_noise,
        low=low,
        high=high,
        grad_sq=math.fsum(grad_sq) / len(grad_sq),
        trace_sigma=math.fsum(trace) / len(trace),
        points=points,
        per_step=[(float(g), float(s)) for g, s in per_step],
        notes=out_notes,
    )


# ---------------------------------------------------------------- efficiency and goodput


def statistical_efficiency(b_noise: float, batch_size: float, base: float) -> float:
    """Useful work per sample at ``batch_size`` relative to ``base``: (B + b0)/(B + b).

    From the paper's steps/samples trade-off ``S = S_min(1 + B_noise/b)``: the samples
    to reach a goal grow as ``b + B_noise``. ``inf`` noise means every size is as good.
    """
    if math.isinf(b_noise):
        return 1.0
    if b_noise < 0 or math.isnan(b_noise):
        return math.nan
    return (b_noise + base) / (b_noise + batch_size)


@dataclass
class GoodputRow:
    """One batch size on one device: throughput × efficiency = goodput (samples/s)."""

    device: str
    batch_size: int
    samples_per_s: float
    efficiency: float
    efficiency_low: float
    efficiency_high: float
    goodput: float
    goodput_low: float
    goodput_high: float


@dataclass
class GoodputChoice:
    """The goodput-optimal and throughput-optimal batch sizes of one device, and why."""

    device: str
    batch_size: int
    fastest_batch_size: int
    reason: str


def goodput(noise: NoiseEstimate, run: RunResult) -> list[GoodputRow]:
    """Each series' measured throughput per batch size weighted by E(b).

    A series is a device, or a device with a variant ("cpu bf16", "cpu acc=4", whose
    batch sizes are the effective ones): variants are never pooled as if they were
    repeats. ``b0`` (efficiency 1) is each series' smallest successful batch size.
    The low and high ends come from the ends of B_noise's interval (a small B_noise
    penalises large batches most). Raises :class:`UsageError` if the run measured
    another workload.
    """
    from batchscope.analyse.explain import analyse_run

    check_same_workload(noise.workload, run)
    rows: list[GoodputRow] = []
    for series in analyse_run(run).devices:
        points = [p for p in series.points if math.isfinite(p.samples_per_s)]
        if not points:
            continue
        base = points[0].batch_size
        for p in points:
            e = statistical_efficiency(noise.b_noise, p.batch_size, base)
            e_low = statistical_efficiency(noise.low, p.batch_size, base)
            e_high = statistical_efficiency(noise.high, p.batch_size, base)
            if p.batch_size < base:  # pragma: no cover - base is the smallest
                e_low, e_high = e_high, e_low
            rows.append(
                GoodputRow(
                    device=series.device,
                    batch_size=p.batch_size,
                    samples_per_s=p.samples_per_s,
                    efficiency=e,
                    efficiency_low=min(e_low, e_high),
                    efficiency_high=max(e_low, e_high),
                    goodput=p.samples_per_s * e,
                    goodput_low=p.samples_per_s * min(e_low, e_high),
                    goodput_high=p.samples_per_s * max(e_low, e_high),
                )
            )
    return rows


def check_same_workload(workload: str, run: RunResult) -> None:
    """Refuse goodput from another workload's throughput (one line, before any training)."""
    measured = str(run.workload.get("spec") or run.workload.get("name") or "")
    if workload not in {str(run.workload.get("spec")), str(run.workload.get("name"))}:
        raise UsageError(
            f"run {run.run_id} measured workload {measured!r}, but the noise scale is of "
            f"{workload!r}: goodput needs the same workload"
        )


def efficiency_table(noise: NoiseEstimate, sizes: Sequence[int]) -> list[dict[str, float]]:
    """E(b) with its interval for each of ``sizes``, relative to the smallest."""
    if not sizes:
        return []
    base = min(sizes)
    rows = []
    for b in sorted(set(sizes)):
        ends = [statistical_efficiency(x, b, base) for x in (noise.low, noise.high)]
        rows.append(
            {
                "batch_size": b,
                "efficiency": statistical_efficiency(noise.b_noise, b, base),
                "efficiency_low": min(ends),
                "efficiency_high": max(ends),
            }
        )
    return rows


def _rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def best_goodput(noise: NoiseEstimate, rows: Sequence[GoodputRow]) -> list[GoodputChoice]:
    """Per device, the batch size with the highest goodput, next to the fastest one."""
    out: list[GoodputChoice] = []
    devices = list(dict.fromkeys(r.device for r in rows))
    for device in devices:
        mine = [r for r in rows if r.device == device and math.isfinite(r.goodput)]
        if not mine:
            continue
        best = max(mine, key=lambda r: r.goodput)
        fastest = max(mine, key=lambda r: r.samples_per_s)
        reason = (
            f"highest goodput, {_rate(best.goodput)} useful samples/s = "
            f"{_rate(best.samples_per_s)} samples/s × efficiency {best.efficiency:.2f} "
            f"(B_noise ≈ {format_noise(noise.b_noise)})"
        )
        if fastest is not best:
            reason += (
                f"; the fastest, b={fastest.batch_size}, gives {_rate(fastest.goodput)} "
                f"(efficiency {fastest.efficiency:.2f})"
            )
        else:
            reason += "; it is also the fastest"
        out.append(GoodputChoice(device, best.batch_size, fastest.batch_size, reason))
    return out


def format_noise(value: float) -> str:
    """B_noise for people: ``∞`` when unmeasurably large, else 3 significant figures."""
    if math.isinf(value):
        return "∞"
    if math.isnan(value):
        return "–"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
