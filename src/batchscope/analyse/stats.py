"""Per-trial statistics beyond :class:`~batchscope.core.results.StepStats`, and repeats merged.

* :func:`step_warnings` looks at one trial's step times the way hyperfine and
  ``torch.utils.benchmark`` do: a spread that is too wide (IQR/median ≥ 10 %),
  statistical outliers by the modified Z-score (``0.6745·(x − median)/MAD > 3.5``),
  and a first measured step far slower than the rest (the warm-up was too short).
* :func:`merge_repeats` merges the ``--repeats`` runs of one batch size: the median
  of the per-repeat medians, the spread *within* a trial (median of the repeats'
  IQRs) and the spread *across* repeats (range and IQR of their medians).

Pure Python (no numpy), so reports can use it without a heavy import.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from batchscope.core.results import TrialResult, quantile
from batchscope.units import format_seconds

#: torch.utils.benchmark warns from this relative IQR on.
NOISY_RELATIVE_IQR = 0.10
#: hyperfine's threshold on the modified Z-score.
OUTLIER_Z = 3.5
#: the first measured step must also be this many times the median to count as slow.
SLOW_FIRST_RATIO = 1.5
#: fewer step times than this are too few to call any of them an outlier.
MIN_STEPS_FOR_OUTLIERS = 5
#: repeats whose medians span this fraction of their median disagree.
REPEATS_DISAGREE = 0.10

_MAD_TO_Z = 0.6745  # Φ⁻¹(0.75): makes the MAD a consistent estimate of σ for normal data
_MEANAD_TO_Z = 1.253314  # √(π/2): the same for the mean absolute deviation


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return quantile(sorted(float(v) for v in values), 0.5)


def iqr(values: Sequence[float]) -> float:
    """Interquartile range with numpy's default (linear) interpolation."""
    if not values:
        raise ValueError("IQR of no values")
    ordered = sorted(float(v) for v in values)
    return quantile(ordered, 0.75) - quantile(ordered, 0.25)


def mad(values: Sequence[float]) -> float:
    """Median absolute deviation from the median (unscaled)."""
    m = median(values)
    return median([abs(float(v) - m) for v in values])


def modified_z_scores(values: Sequence[float]) -> list[float]:
    """``0.6745·(x − median)/MAD`` for each value (Iglewicz & Hoaglin, as hyperfine).

    When the MAD is zero (over half the values identical) the mean absolute
    deviation stands in: ``(x − median)/(1.2533·meanAD)``; when that is zero too,
    every score is 0.
    """
    if not values:
        return []
    m = median(values)
    d = mad(values)
    if d > 0:
        return [_MAD_TO_Z * (float(v) - m) / d for v in values]
    mean_ad = statistics.fmean(abs(float(v) - m) for v in values)
    if mean_ad > 0:
        return [(float(v) - m) / (_MEANAD_TO_Z * mean_ad) for v in values]
    return [0.0 for _ in values]


def outlier_indices(values: Sequence[float], threshold: float = OUTLIER_Z) -> list[int]:
    """Indices whose |modified Z-score| exceeds ``threshold`` (none for < 5 values)."""
    if len(values) < MIN_STEPS_FOR_OUTLIERS:
        return []
    return [i for i, z in enumerate(modified_z_scores(values)) if abs(z) > threshold]


def slow_first_step(values: Sequence[float]) -> float | None:
    """How many times the median of the rest the first step took, when it is far slower.

    "Far slower" means both: a modified Z-score against the other steps above 3.5
    (i.e. more than ~5.2 scaled MADs above their median), and more than 1.5× their
    median. Returns None when the first step is not far slower (or with < 5 steps).
    """
    if len(values) < MIN_STEPS_FOR_OUTLIERS:
        return None
    first, rest = float(values[0]), [float(v) for v in values[1:]]
    m = median(rest)
    if m <= 0:
        return None
    d = mad(rest)
    if d > 0:
        z = _MAD_TO_Z * (first - m) / d
    else:
        mean_ad = statistics.fmean(abs(v - m) for v in rest)
        z = (first - m) / (_MEANAD_TO_Z * mean_ad) if mean_ad > 0 else math.inf
    ratio = first / m
    if z > OUTLIER_Z and ratio > SLOW_FIRST_RATIO:
        return ratio
    return None


def trial_label(trial: TrialResult) -> str:
    """'cpu, batch size 64' (and ', repeat 2' for later repeats)."""
    label = f"{trial.device}, batch size {trial.batch_size}"
    if trial.repeat:
        label += f", repeat {trial.repeat + 1}"
    return label


#: the hint each kind of finding ends with
HINTS = {
    "noisy": "rerun with more --steps or --repeats, on a quieter machine",
    "warmup": (
        "raise --warmup (if the first step stays slow, it is a one-off start-up timed "
        "inside it, e.g. the data loader starting)"
    ),
    "outliers": "other programs may have interfered: close them and rerun, or add --repeats",
    "repeats": "the machine was not steady: rerun on a quieter machine or with more --repeats",
}


#: CLI flags in hints, and what a ``batchscope.measure`` user sets instead
PYTHON_NAMES = (
    ("--warmup ", "warmup="),
    ("raise --warmup", "raise warmup="),
    ("more --steps or --repeats", "more steps, or more measure() blocks per batch size"),
    ("more rounds (--repeats)", "more measure() blocks per batch size"),
    ("--repeats 3 (or auto)", "three measure() blocks per batch size"),
    ("with more --repeats", "with more measure() blocks per batch size"),
    ("or add --repeats", "or add measure() blocks"),
    ("more time (--max-time)", "more steps"),
    ("--repeats", "repeat="),
)


def for_python(text: str) -> str:
    """A hint written for the CLI, reworded for ``batchscope.measure``'s arguments."""
    for flag, argument in PYTHON_NAMES:
        text = text.replace(flag, argument)
    return text


@dataclass(frozen=True)
class Finding:
    """One statistical problem with one trial (or one batch size's repeats)."""

    #: "noisy", "warmup", "outliers" or "repeats"
    kind: str
    device: str
    batch_size: int
    #: 0-based repeat, None for a finding about all repeats of a batch size
    repeat: int | None
    #: the figure in a few words, e.g. "26%", "2.4×", "2 of 20"
    figure: str
    #: the full one-line warning, naming the trial, the figure and the fix
    text: str


def step_findings(trial: TrialResult) -> list[Finding]:
    """The structured form of :func:`step_warnings` (for grouping in reports)."""
    if not trial.ok or trial.step_time_s is None:
        return []
    label = trial_label(trial)
    out: list[Finding] = []

    def add(kind: str, figure: str, text: str) -> None:
        out.append(
            Finding(kind, trial.device, trial.batch_size, trial.repeat, figure, f"{label}: {text}")
        )

    s = trial.step_time_s
    if s.n >= 2 and s.median > 0 and s.relative_iqr >= NOISY_RELATIVE_IQR:
        add(
            "noisy",
            f"{s.relative_iqr:.0%}",
            f"noisy machine: the step times' IQR is {s.relative_iqr:.0%} of their median "
            f"({format_seconds(s.iqr)} of {format_seconds(s.median)}, n={s.n}); {HINTS['noisy']}",
        )
    times = trial.step_times_s
    slow = slow_first_step(times)
    if slow is not None and trial.warmup_steps > 0 and slow_first_step(times[1:]) is None:
        # After warm-up the weights and optimizer are restored to their initial state, so
        # the first measured step builds the optimizer's state again (Adam: two buffers the
        # size of the weights), a one-off that any training pays once; the median leaves
        # it out. A warm-up too short shows as a second slow step too.
        slow = None
        times = times[1:]
    if slow is not None:
        add(
            "warmup",
            f"{slow:.1f}×",
            f"the first measured step took {format_seconds(times[0])}, {slow:.1f}× the median "
            f"of the others ({format_seconds(median(times[1:]))}): warm-up too short "
            f"(--warmup {trial.warmup_steps}); {HINTS['warmup']}",
        )
    leading = 0  # a short warm-up's slow steps at the start are not outliers as well
    if slow is not None:
        rest = median(times[1:])
        while leading < len(times) and times[leading] > SLOW_FIRST_RATIO * rest:
            leading += 1
    outliers = [i for i in outlier_indices(times) if i >= leading]
    if outliers:
        m = median(times)
        worst = max(outliers, key=lambda i: abs(times[i] - m))
        add(
            "outliers",
            f"{len(outliers)} of {len(times)}",
            f"{len(outliers)} of {len(times)} step times are statistical outliers (modified "
            f"Z-score > {OUTLIER_Z:g}; the worst {format_seconds(times[worst])} against a median "
            f"of {format_seconds(m)}); {HINTS['outliers']}",
        )
    return out


def step_warnings(trial: TrialResult) -> list[str]:
    """Warnings about one trial's step times, each naming the trial, the figure and a fix.

    Nothing for a failed trial or one without step statistics.
    """
    return [f.text for f in step_findings(trial)]


_GROUP_HEADS = {
    "noisy": "noisy machine: step-time IQR/median =",
    "warmup": "warm-up too short: first measured step / median of the rest =",
    "outliers": f"statistical outliers (modified Z-score > {OUTLIER_Z:g}) among the step times:",
    "repeats": "repeats disagree: range/median of their median step times =",
}


def group_findings(findings: Sequence[Finding]) -> list[str]:
    """One line per kind: the full text when one trial has it, else every figure in one line.

    E.g. "cpu: noisy machine: step-time IQR/median of 47% at b=32, 27% at b=32 (repeat 2);
    rerun with more --steps or --repeats, on a quieter machine".
    """
    out: list[str] = []
    kinds: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        kinds.setdefault((f.device, f.kind), []).append(f)
    for (device, kind), group in kinds.items():
        if len(group) == 1:
            out.append(group[0].text)
            continue
        where = ", ".join(
            f"{f.figure} at b={f.batch_size}" + (f" (repeat {f.repeat + 1})" if f.repeat else "")
            for f in group
        )
        out.append(f"{device}: {_GROUP_HEADS[kind]} {where}; {HINTS[kind]}")
    return out


@dataclass
class RepeatStats:
    """One batch size on one device with its repeats merged (step times in seconds)."""

    device: str
    batch_size: int
    n_repeats: int
    #: the per-repeat median step times, in repeat order
    medians_s: list[float]
    #: median of the per-repeat medians
    median_s: float
    #: spread within a trial: the median of the repeats' IQRs
    within_iqr_s: float
    #: spread across repeats: max − min of the per-repeat medians (0 for one repeat)
    across_range_s: float
    #: spread across repeats: the IQR of the per-repeat medians (0 for one repeat)
    across_iqr_s: float
    #: measured steps over all repeats
    n_steps: int
    #: pooled mean and stdev of every step time of every repeat (for hyperfine's formula)
    mean_s: float
    stdev_s: float

    @property
    def spread_s(self) -> float:
        """The larger of the within-trial IQR and the across-repeat IQR."""
        return max(self.within_iqr_s, self.across_iqr_s)

    @property
    def relative_across_range(self) -> float:
        return self.across_range_s / self.median_s if self.median_s > 0 else math.inf


def merge_repeats(trials: Sequence[TrialResult]) -> RepeatStats:
    """Merge the ok repeats of one (device, batch size); failed repeats are left out.

    Raises ValueError when no trial has step statistics or when the trials mix
    devices or batch sizes.
    """
    usable = [t for t in trials if t.ok and t.step_time_s is not None]
    if not usable:
        raise ValueError("no successful trial with step times to merge")
    keys = {(t.device, t.batch_size) for t in usable}
    if len(keys) > 1:
        raise ValueError(f"merge_repeats got several (device, batch size) pairs: {sorted(keys)}")
    usable.sort(key=lambda t: t.repeat)
    meds = [t.step_time_s.median for t in usable if t.step_time_s is not None]
    iqrs = [t.step_time_s.iqr for t in usable if t.step_time_s is not None]
    # pooled mean/stdev over every step: from the raw times when recorded, else from StepStats
    total_n = 0
    sum_x = 0.0
    sum_sq = 0.0
    for t in usable:
        s = t.step_time_s
        assert s is not None
        if t.step_times_s:
            xs = [float(x) for x in t.step_times_s]
            total_n += len(xs)
            sum_x += math.fsum(xs)
            sum_sq += math.fsum(x * x for x in xs)
        else:
            total_n += s.n
            sum_x += s.mean * s.n
            sum_sq += (s.stdev**2) * (s.n - 1) + s.n * s.mean**2
    mean = sum_x / total_n
    var = (sum_sq - total_n * mean**2) / (total_n - 1) if total_n > 1 else 0.0
    return RepeatStats(
        device=usable[0].device,
        batch_size=usable[0].batch_size,
        n_repeats=len(usable),
        medians_s=meds,
        median_s=median(meds),
        within_iqr_s=median(iqrs),
        across_range_s=max(meds) - min(meds),
        across_iqr_s=iqr(meds),
        n_steps=total_n,
        mean_s=mean,
        stdev_s=math.sqrt(max(var, 0.0)),
    )


def repeat_findings(stats: RepeatStats) -> list[Finding]:
    """A finding when the repeats of one batch size disagree by ≥ 10 % of their median."""
    if stats.n_repeats < 2 or stats.relative_across_range < REPEATS_DISAGREE:
        return []
    lo, hi = min(stats.medians_s), max(stats.medians_s)
    text = (
        f"{stats.device}, batch size {stats.batch_size}: the {stats.n_repeats} repeats disagree: "
        f"median step times {format_seconds(lo)} to {format_seconds(hi)} (a range of "
        f"{stats.relative_across_range:.0%} of {format_seconds(stats.median_s)}); "
        f"{HINTS['repeats']}"
    )
    figure = f"{stats.relative_across_range:.0%}"
    return [Finding("repeats", stats.device, stats.batch_size, None, figure, text)]


def repeat_warnings(stats: RepeatStats) -> list[str]:
    """A warning when the repeats of one batch size disagree by ≥ 10 % of their median."""
    return [f.text for f in repeat_findings(stats)]
