"""The recommendation: the fastest, the largest that fits, the smallest within 5 %, and the
one batch size to use — each a :class:`Choice` with its one-line reason.

The choices read the ranking (:mod:`batchscope.analyse.ranking`), so "fastest" and
"within 5 %" are judged on intervals, and the memory model
(:mod:`batchscope.analyse.memory_model`) for what fits a budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from batchscope.analyse.points import Point
from batchscope.analyse.ranking import NEAR_BEST, NearBest, Ranking
from batchscope.units import format_bytes, format_seconds

if TYPE_CHECKING:
    from batchscope.analyse.memory_model import MemoryFit


@dataclass
class Choice:
    """A recommended batch size and its one-line reason."""

    batch_size: int
    reason: str


@dataclass
class Recommendation:
    best_throughput: Choice | None
    largest_that_fits: Choice | None
    smallest_near_best: Choice | None  # smallest batch confirmed within 5 % of the best
    #: with --target: the smallest median time-to-target (target.soonest_to_target)
    reaches_target_soonest: Choice | None = None
    #: the one batch size to use, and why
    recommended: Choice | None = None

    def lines(self) -> list[str]:
        """'fastest: b=64: …', one per choice made, the recommendation first."""
        out = []
        for label, choice in (
            ("use", self.recommended),
            ("fastest", self.best_throughput),
            ("largest that fits", self.largest_that_fits),
            (f"smallest within {1 - NEAR_BEST:.0%} of the fastest", self.smallest_near_best),
            ("reaches the target soonest", self.reaches_target_soonest),
        ):
            if choice is not None:
                out.append(f"{label}: b={choice.batch_size}: {choice.reason}")
        return out


def memory_fit(points: list[Point]) -> MemoryFit | None:
    """The memory model through the points' peaks, or None (< 2 sizes)."""
    from batchscope.analyse.memory_model import fit_memory_model

    pts = [p for p in points if p.peak_memory_bytes is not None]
    if len({p.batch_size for p in pts}) < 2:
        return None
    try:
        return fit_memory_model(
            [p.batch_size for p in pts], [float(p.peak_memory_bytes or 0) for p in pts]
        )
    except (ValueError, ArithmeticError):
        return None


def _predicted_max_batch(fit: MemoryFit, limit: int) -> int | None:
    from batchscope.analyse.memory_model import predict_max_batch

    try:
        return predict_max_batch(fit, float(limit))
    except ValueError:
        return None


def _fmt_rate(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.3g}"


def _sizes(sizes: Sequence[int]) -> str:
    return ", ".join(f"b={b}" for b in sizes)


def _fastest_choice(ranking: Ranking, points: list[Point]) -> Choice | None:
    best = ranking.fastest
    if best is None:
        top = max(points, key=lambda p: p.samples_per_s, default=None)
        if top is None:
            return None
        return Choice(
            top.batch_size,
            f"the highest measured throughput, {_fmt_rate(top.samples_per_s)} samples/s, but not "
            f"judged: {top.not_judged_reason or 'no interval'}",
        )
    reason = (
        f"highest throughput, {_fmt_rate(best.samples_per_s)} samples/s "
        f"[{_fmt_rate(best.samples_per_s_low)}–{_fmt_rate(best.samples_per_s_high)}], "
        f"{format_seconds(best.time_per_sample_s)} per sample"
    )
    if best.tokens_per_s is not None:  # a sequence workload: its throughput is tokens
        reason = (
            f"highest throughput, {_fmt_rate(best.tokens_per_s)} tokens/s "
            f"[{_fmt_rate(best.tokens_per_s_low)}–{_fmt_rate(best.tokens_per_s_high)}] "
            f"({best.tokens_per_step:,} tokens per step, "
            f"{_fmt_rate(best.samples_per_s)} sequences/s)"
        )
    if ranking.tied_with:
        reason += (
            f"; tied with {_sizes(ranking.tied_with)} (cannot be told apart at the 95 % level)"
        )
    else:
        others = [r for r in ranking.ratios if r.batch_size != best.batch_size]
        if others:
            reason += "; faster than every other size beyond the noise"
    faster_unjudged = [
        p.batch_size for p in points if not p.judged and p.samples_per_s > best.samples_per_s
    ]
    if faster_unjudged:
        reason += (
            f" ({_sizes(faster_unjudged)} measured faster but "
            f"{'is' if len(faster_unjudged) == 1 else 'are'} not judged: too few steps)"
        )
    return Choice(best.batch_size, reason)


def _near_choice(near: NearBest, ranking: Ranking, points: list[Point]) -> Choice | None:
    best = ranking.fastest
    if best is None or near.batch_size is None:
        return None
    undetermined = ""
    if near.undetermined:
        parts = []
        for b in near.undetermined:
            r = ranking.ratio(b)
            if r is not None:
                parts.append(f"b={b} at {r.value:.0%} [{r.low:.0%}–{r.high:.0%}]")
        undetermined = (
            f"; not determined for {', '.join(parts)}: the data cannot place "
            f"{'it' if len(parts) == 1 else 'them'} either side of {NEAR_BEST:.0%}"
        )
    if near.status == "fastest":
        return Choice(
            best.batch_size,
            f"the fastest itself: no smaller batch size is confirmed within "
            f"{1 - NEAR_BEST:.0%} of it" + undetermined,
        )
    small = next(p for p in points if p.batch_size == near.batch_size)
    r = near.ratio
    assert r is not None
    text = (
        f"{r.value:.1%} [{r.low:.1%}–{r.high:.1%}] of the fastest's throughput "
        f"(b={best.batch_size})"
    )
    if small.peak_memory_bytes is not None and best.peak_memory_bytes:
        saved = best.peak_memory_bytes - small.peak_memory_bytes
        if saved > 0:
            text += (
                f" with {saved / best.peak_memory_bytes:.0%} less peak memory "
                f"({format_bytes(small.peak_memory_bytes)} vs "
                f"{format_bytes(best.peak_memory_bytes)})"
            )
    return Choice(near.batch_size, text + undetermined)


def recommended(
    ranking: Ranking,
    near: NearBest,
    fits: Choice | None,
    soonest: Choice | None,
    points: list[Point],
) -> Choice | None:
    """One batch size to use.

    With a target, the one that reached it soonest. Otherwise the smallest batch size
    that is as fast as the fastest: tied with it within the noise *and* measured at no
    less than 95 % of its throughput (a size the noise cannot separate but that
    measured far slower is not recommended: the data do not support it), or confirmed
    within 5 %; a smaller batch needs less memory for the same speed. Never above the
    largest size that fits.
    """
    if soonest is not None:
        return Choice(soonest.batch_size, f"it reached the target soonest ({soonest.reason})")
    best = ranking.fastest
    if best is None:
        return None
    as_fast = {
        b
        for b in ranking.fastest_set
        if (r := ranking.ratio(b)) is not None and r.value >= NEAR_BEST
    }
    candidates = as_fast | {best.batch_size}
    if near.status == "confirmed" and near.batch_size is not None:
        candidates.add(near.batch_size)
    limit = fits.batch_size if fits is not None else None
    usable = sorted(b for b in candidates if limit is None or b <= limit)
    if not usable:
        return None
    b = usable[0]
    if len(ranking.ratios) == 1:
        return Choice(b, "the only batch size measured precisely enough to judge")
    unresolved = [x for x in ranking.tied_with if x not in candidates]
    caveat = (
        f"; {_sizes(unresolved)} cannot be told apart from it either, but measured "
        "slower: more steps or rounds would tell"
        if unresolved
        else ""
    )
    if b == best.batch_size:
        if not ranking.tied_with:
            return Choice(b, "the fastest, beyond the noise")
        return Choice(b, "the fastest measured" + caveat)
    others = [x for x in sorted(candidates) if x != b]
    why = (
        f"the smallest batch size as fast as the fastest within the noise and measured "
        f"at ≥ {NEAR_BEST:.0%} of it"
        if b in ranking.fastest_set
        else f"the smallest batch size confirmed within {1 - NEAR_BEST:.0%} of the fastest"
    )
    return Choice(
        b, f"{why} ({_sizes(others)} no faster beyond the noise); it needs the least memory{caveat}"
    )


def recommend(
    points: list[Point],
    failed: dict[int, str],
    ranking: Ranking,
    near: NearBest,
    *,
    memory_limit_bytes: int | None = None,
    memory_fit: MemoryFit | None = None,
) -> Recommendation:
    """Pick the fastest, the largest that fits (when known), the smallest near the best."""
    fits = largest_that_fits(points, failed, memory_limit_bytes, memory_fit)
    return Recommendation(
        best_throughput=_fastest_choice(ranking, points),
        largest_that_fits=fits,
        smallest_near_best=_near_choice(near, ranking, points),
    )


def largest_that_fits(
    points: list[Point],
    failed: dict[int, str],
    limit: int | None,
    memory_fit: MemoryFit | None,
) -> Choice | None:
    oom_sizes = sorted(
        {b for b, status in failed.items() if status == "oom"}
        | {p.batch_size for p in points if p.failed_repeats.get("oom")}
    )
    if oom_sizes:
        first_oom = oom_sizes[0]
        below = [p for p in points if p.batch_size < first_oom and not p.failed_repeats.get("oom")]
        where = (
            f"b={first_oom} ran out of memory"
            if first_oom in failed
            else f"b={first_oom} ran out of memory in "
            f"{next(p for p in points if p.batch_size == first_oom).failed_repeats['oom']} "
            "repeat(s)"
        )
        if not below:
            return None
        fit = max(below, key=lambda p: p.batch_size)
        mem = (
            f" (peak {format_bytes(fit.peak_memory_bytes)})"
            if fit.peak_memory_bytes is not None
            else ""
        )
        return Choice(
            fit.batch_size,
            f"the largest that ran{mem}; {where} (measured: the smallest oom)",
        )
    if limit:
        measured = [p for p in points if p.peak_memory_bytes is not None]
        if memory_fit is not None and getattr(memory_fit, "can_predict", True):
            predicted = _predicted_max_batch(memory_fit, limit)
            if predicted is not None and predicted > 0:
                return Choice(
                    predicted,
                    f"predicted by the memory fit ({format_bytes(memory_fit.a_bytes)} + "
                    f"{format_bytes(memory_fit.m_bytes_per_sample)} × b, R² "
                    f"{memory_fit.r2:.3g}) to stay under --memory-limit {format_bytes(limit)}; "
                    "not measured, run it to be sure",
                )
        if measured:
            top = max(measured, key=lambda p: p.batch_size)
            assert top.peak_memory_bytes is not None
            return Choice(
                top.batch_size,
                f"the largest measured, and it fits: peak {format_bytes(top.peak_memory_bytes)}, "
                f"{top.peak_memory_bytes / limit:.0%} of --memory-limit {format_bytes(limit)} "
                "(larger sizes were not tried)",
            )
    return None
