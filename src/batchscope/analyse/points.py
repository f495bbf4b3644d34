"""One point per batch size, with the one uncertainty model every verdict reads.

A *point* is one batch size of one series (a device, or a device with a variant
such as ``cpu bf16``). Its figure is the median step time; with several rounds
(``--repeats``), the geometric mean of each round's median. Its uncertainty:

* within a round, the Maritz–Jarrett standard error of the median
  (:mod:`batchscope.core.precision`), on the log scale;
* between rounds, the machine's run-to-run variation, in two parts (a two-way
  analysis of the batch sizes × rounds table of log medians): a *shared* round
  effect that moves every batch size of a round alike (a slow period, a throttled
  CPU), and each trial's *own* variation beyond its step noise (a fresh process,
  its allocator, its cache);
* a point's figure alone has variance ``(within² + own² + shared²) / rounds``
  (``log_se``: the table's interval, speedups between series); comparing batch
  sizes *within* a series, the shared effect cancels, so ranking, the U-shape test
  and the fits use ``(within² + own²) / rounds`` (``log_se_relative``). Intervals
  use Student's t with Welch–Satterthwaite degrees of freedom, and both standard
  errors are stored normal-equivalent (interval half-width / 1.96), so every test
  downstream can use normal quantiles.

A point whose rounds have fewer than 6 measured steps has an *unknown* spread:
``judged`` is False and ``not_judged_reason`` says why. With one round the
run-to-run variation is not measured; ``tau_known`` is False and reports say so.

Every figure a report shows for a batch size — step time, time per sample,
samples/s, tokens/s (a sequence workload), relative performance and their intervals —
is computed here, once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from batchscope.core.precision import MIN_STEPS_FOR_INTERVAL, Z95, median_precision
from batchscope.core.results import TrialResult

#: the 'status' of a batch size whose trials finished but timed no full-size step
NO_STEP_TIMES = "no step times"


@dataclass(frozen=True)
class RoundFigure:
    """One trial (round) of a batch size: its median step and that median's precision."""

    repeat: int
    median_s: float
    n: int
    #: standard error of log(median); None when the trial has too few steps for one
    log_se: float | None


@dataclass
class Point:
    """One batch size of one series, its rounds combined (see the module docstring)."""

    batch_size: int
    #: rounds (ok trials) combined into this point
    n_trials: int
    #: median step time (geometric mean of the rounds' medians), seconds
    step_time_s: float
    #: its 95 % interval (None when the spread is unknown)
    step_time_low_s: float | None
    step_time_high_s: float | None
    #: normal-equivalent standard error of log(step time), all run-to-run variation included
    log_se: float | None
    #: measured steps over all rounds, and per round
    n_steps: int
    steps_per_round: list[int] = field(default_factory=list)
    #: the rounds' own medians (seconds), in repeat order
    round_medians_s: list[float] = field(default_factory=list)
    #: the same for comparisons within the series (the shared round effect cancels)
    log_se_relative: float | None = None
    #: whether verdicts may rest on this point, and if not why ("b=128 has 1 measured step")
    judged: bool = True
    not_judged_reason: str | None = None
    #: True when several rounds measured the machine's run-to-run variation
    tau_known: bool = False
    peak_memory_bytes: int | None = None
    data_wait_fraction: float | None = None
    samples_per_epoch: int | None = None
    #: median IQR of the rounds' step times, seconds (the within-trial spread, descriptive)
    step_time_iqr_s: float = 0.0
    #: repeats at this batch size that did not finish ok, as {status: count}
    failed_repeats: dict[str, int] = field(default_factory=dict)
    #: a sequence workload's tokens per step (effective batch × seq_len), else None
    tokens_per_step: int | None = None

    # ------------------------------------------------------------ derived figures

    @property
    def time_per_sample_s(self) -> float:
        return self.step_time_s / self.batch_size

    @property
    def time_per_sample_low_s(self) -> float | None:
        return None if self.step_time_low_s is None else self.step_time_low_s / self.batch_size

    @property
    def time_per_sample_high_s(self) -> float | None:
        return None if self.step_time_high_s is None else self.step_time_high_s / self.batch_size

    @property
    def samples_per_s(self) -> float:
        return self.batch_size / self.step_time_s if self.step_time_s > 0 else math.inf

    @property
    def samples_per_s_low(self) -> float | None:
        """The slow end of the throughput's 95 % interval (from the step time's high end)."""
        high = self.step_time_high_s
        return None if high is None or high <= 0 else self.batch_size / high

    @property
    def samples_per_s_high(self) -> float | None:
        low = self.step_time_low_s
        return None if low is None or low <= 0 else self.batch_size / low

    @property
    def tokens_per_s(self) -> float | None:
        """Tokens per step ÷ the point's step time (a sequence workload), else None."""
        if not self.tokens_per_step or self.step_time_s <= 0:
            return None
        return self.tokens_per_step / self.step_time_s

    @property
    def tokens_per_s_low(self) -> float | None:
        high = self.step_time_high_s
        return None if not self.tokens_per_step or not high else self.tokens_per_step / high

    @property
    def tokens_per_s_high(self) -> float | None:
        low = self.step_time_low_s
        return None if not self.tokens_per_step or not low else self.tokens_per_step / low

    @property
    def relative_half_width(self) -> float | None:
        """Half the 95 % interval of the step time, as a fraction (0.02 = ±2 %)."""
        return None if self.log_se is None else math.expm1(Z95 * self.log_se)

    def to_dict(self) -> dict[str, object]:
        return {
            "batch_size": self.batch_size,
            "n_trials": self.n_trials,
            "n_steps": self.n_steps,
            "steps_per_round": list(self.steps_per_round),
            "step_time_s": self.step_time_s,
            "step_time_low_s": self.step_time_low_s,
            "step_time_high_s": self.step_time_high_s,
            "time_per_sample_s": self.time_per_sample_s,
            "time_per_sample_low_s": self.time_per_sample_low_s,
            "time_per_sample_high_s": self.time_per_sample_high_s,
            "samples_per_s": self.samples_per_s,
            "samples_per_s_low": self.samples_per_s_low,
            "samples_per_s_high": self.samples_per_s_high,
            "log_se": self.log_se,
            "log_se_relative": self.log_se_relative,
            "judged": self.judged,
            "not_judged_reason": self.not_judged_reason,
            "run_to_run_variation_measured": self.tau_known,
            "round_medians_s": list(self.round_medians_s),
            "peak_memory_bytes": self.peak_memory_bytes,
            "data_wait_fraction": self.data_wait_fraction,
            "samples_per_epoch": self.samples_per_epoch,
            "failed_repeats": dict(self.failed_repeats),
            "tokens_per_step": self.tokens_per_step,
            "tokens_per_s": self.tokens_per_s,
            "tokens_per_s_low": self.tokens_per_s_low,
            "tokens_per_s_high": self.tokens_per_s_high,
        }


@dataclass(frozen=True)
class Drift:
    """The machine's run-to-run variation in one series (log scale), from its rounds.

    Per trial, the variance of its log median across rounds: ``absolute_var`` in all
    (step noise, each trial's own variation and the round's shared effect), and
    ``relative_var`` without the shared effect (what comparisons within a series
    see), each with its degrees of freedom (0 when the rounds could not measure it).
    ``shared`` and ``own`` are the descriptive split, in log standard deviations.
    """

    absolute_var: float = 0.0
    absolute_dof: float = 0.0
    relative_var: float = 0.0
    relative_dof: float = 0.0
    shared: float = 0.0
    own: float = 0.0

    @property
    def known(self) -> bool:
        return self.absolute_dof > 0

    @property
    def tau(self) -> float:
        """The run-to-run standard deviation of a trial's log median beyond its step noise."""
        return math.hypot(self.shared, self.own)

    def to_dict(self) -> dict[str, object]:
        return {
            "measured": self.known,
            "shared_log_sd": self.shared if self.known else None,
            "own_log_sd": self.own if self.relative_dof else None,
            "absolute_dof": self.absolute_dof,
            "relative_dof": self.relative_dof,
        }


def round_figure(trial: TrialResult) -> RoundFigure | None:
    """A trial's median and its precision, from its raw step times when recorded."""
    if not trial.ok or trial.step_time_s is None:
        return None
    if trial.step_times_s:
        mp = median_precision(trial.step_times_s)
        return RoundFigure(trial.repeat, mp.median, mp.n, mp.log_se)
    s = trial.step_time_s  # an old result without raw times: the median, spread unknown
    return RoundFigure(trial.repeat, s.median, s.n, None)


def _satterthwaite(parts: Sequence[tuple[float, float, float]]) -> tuple[float, float]:
    """(value, dof) of Σ cᵢ·vᵢ for mean squares vᵢ with dofᵢ (Welch–Satterthwaite)."""
    value = math.fsum(c * v for c, v, _ in parts)
    denom = math.fsum((c * v) ** 2 / d for c, v, d in parts if d > 0)
    return value, (value**2 / denom if denom > 0 else math.inf)


def estimate_drift(rounds_by_size: Sequence[Sequence[RoundFigure]]) -> Drift:
    """The rounds' variation, from the two-way table of log medians (sizes × rounds).

    Uses the largest table of rounds with a known precision that the batch sizes share
    (a size with fewer rounds, e.g. a failed one, is left out). With ``p`` sizes
    and ``k`` rounds, the interaction mean square ``I`` ((p − 1)(k − 1) degrees of
    freedom) estimates a trial's variance without the round's shared effect; the
    variance of the round means ``C`` (k − 1) estimates the shared effect plus
    ``I/p``; so a trial's whole variance is ``C + (1 − 1/p)·I``, with
    Satterthwaite's degrees of freedom. Neither is allowed below the trials' own
    measured step noise (the Maritz–Jarrett variances). With one batch size,
    ``C`` is the whole variance.
    """
    sizes = [
        {r.repeat: r for r in rounds if r.log_se is not None and r.median_s > 0}
        for rounds in rounds_by_size
    ]
    # the largest table: sizes with the most rounds first, while two rounds stay common
    chosen: list[dict[int, RoundFigure]] = []
    common: set[int] = set()
    for s in sorted((s for s in sizes if len(s) >= 2), key=len, reverse=True):
        shared = set(s) if not chosen else common & set(s)
        if len(shared) >= 2:
            chosen.append(s)
            common = shared
    sizes = chosen
    p, k = len(sizes), len(common)
    if p == 0 or k < 2:
        return Drift()
    repeats = sorted(common)
    y = [[math.log(s[r].median_s) for r in repeats] for s in sizes]
    within = math.fsum((s[r].log_se or 0.0) ** 2 for s in sizes for r in repeats) / (p * k)
    row = [math.fsum(v) / k for v in y]
    col = [math.fsum(y[i][j] for i in range(p)) / p for j in range(k)]
    grand = math.fsum(row) / p
    col_ms = math.fsum((c - grand) ** 2 for c in col) / (k - 1)
    if p == 1:
        absolute = max(col_ms, within)
        return Drift(absolute, float(k - 1), 0.0, 0.0, math.sqrt(max(col_ms - within, 0.0)), 0.0)
    inter_dof = float((p - 1) * (k - 1))
    inter = (
        math.fsum((y[i][j] - row[i] - col[j] + grand) ** 2 for i in range(p) for j in range(k))
        / inter_dof
    )
    absolute, absolute_dof = _satterthwaite(
        [(1.0, col_ms, k - 1), (1.0 - 1.0 / p, inter, inter_dof)]
    )
    return Drift(
        absolute_var=max(absolute, within),
        absolute_dof=absolute_dof,
        relative_var=max(inter, within),
        relative_dof=inter_dof,
        shared=math.sqrt(max(col_ms - inter / p, 0.0)),
        own=math.sqrt(max(inter - within, 0.0)),
    )


def combine_rounds(
    rounds: Sequence[RoundFigure], drift: Drift, *, relative: bool = False
) -> tuple[float, float | None]:
    """(step time, normal-equivalent standard error of its log, or None) of one point.

    With measured drift the point's variance is the per-trial variance of its series
    (:func:`estimate_drift`) over its rounds, quantile Student's t; with one round,
    its own Maritz–Jarrett error (normal quantile). ``relative``: for comparisons
    within the series, where the shared round effect cancels.
    """
    from scipy import stats

    k = len(rounds)
    ys = [math.log(r.median_s) for r in rounds]
    estimate = math.exp(math.fsum(ys) / k)
    if any(r.log_se is None for r in rounds):
        return estimate, None
    within = math.fsum((r.log_se or 0.0) ** 2 for r in rounds) / (k * k)
    per_trial, dof = (
        (drift.relative_var, drift.relative_dof)
        if relative
        else (drift.absolute_var, drift.absolute_dof)
    )
    if dof <= 0:  # no drift measured (one round, or one size for the relative case)
        return estimate, math.sqrt(within)
    var = max(per_trial / k, within)
    q = float(stats.t.ppf(0.975, dof)) if math.isfinite(dof) else Z95
    return estimate, q * math.sqrt(var) / Z95


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


def _not_judged(batch_size: int, rounds: Sequence[RoundFigure]) -> str:
    few = min(rounds, key=lambda r: r.n)
    steps = f"{few.n} measured step{'s' if few.n != 1 else ''}"
    where = f" in round {few.repeat + 1}" if len(rounds) > 1 else ""
    return (
        f"b={batch_size} has {steps}{where}: a 95 % interval of the median needs at least "
        f"{MIN_STEPS_FOR_INTERVAL}"
    )


def series_points(trials: Sequence[TrialResult]) -> tuple[list[Point], dict[int, str], Drift]:
    """The points of one series (ascending batch size), its failed sizes and its drift.

    ``failed`` holds the batch sizes where no round finished ok with step times, with
    the first failing round's status (or :data:`NO_STEP_TIMES`).
    """
    by_size: dict[int, list[TrialResult]] = {}
    for t in trials:
        by_size.setdefault(t.batch_size, []).append(t)
    rounds: dict[int, list[RoundFigure]] = {}
    failed: dict[int, str] = {}
    for b in sorted(by_size):
        figures = [f for t in sorted(by_size[b], key=lambda t: t.repeat) if (f := round_figure(t))]
        if figures:
            rounds[b] = figures
        else:
            first_bad = next((t for t in by_size[b] if not t.ok), None)
            failed[b] = first_bad.status if first_bad else NO_STEP_TIMES
    drift = estimate_drift(list(rounds.values()))
    points = []
    for b, figures in rounds.items():
        good = [t for t in by_size[b] if t.ok and t.step_time_s is not None]
        bad: dict[str, int] = {}
        for t in by_size[b]:
            if not t.ok:
                bad[t.status] = bad.get(t.status, 0) + 1
        estimate, log_se = combine_rounds(figures, drift)
        _, log_se_relative = combine_rounds(figures, drift, relative=True)
        interval = (
            (estimate * math.exp(-Z95 * log_se), estimate * math.exp(Z95 * log_se))
            if log_se is not None
            else (None, None)
        )
        peaks = [t.peak_memory_bytes for t in good if t.peak_memory_bytes is not None]
        waits = [t.data_wait_fraction for t in good if t.data_wait_fraction is not None]
        epochs = [t.samples_per_epoch for t in good if t.samples_per_epoch is not None]
        iqrs = [t.step_time_s.iqr for t in good if t.step_time_s is not None]
        tokens = [t.tokens_per_step for t in good if t.tokens_per_step]
        points.append(
            Point(
                batch_size=b,
                n_trials=len(figures),
                step_time_s=estimate,
                step_time_low_s=interval[0],
                step_time_high_s=interval[1],
                log_se=log_se,
                log_se_relative=log_se_relative,
                n_steps=sum(f.n for f in figures),
                steps_per_round=[f.n for f in figures],
                round_medians_s=[f.median_s for f in figures],
                judged=log_se is not None,
                not_judged_reason=None if log_se is not None else _not_judged(b, figures),
                tau_known=drift.known,
                peak_memory_bytes=max(peaks) if peaks else None,
                data_wait_fraction=_median(waits) if waits else None,
                samples_per_epoch=epochs[0] if epochs else None,
                step_time_iqr_s=_median(iqrs) if iqrs else 0.0,
                failed_repeats=bad,
                tokens_per_step=tokens[0] if tokens else None,
            )
        )
    return points, failed, drift
