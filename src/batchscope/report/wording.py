"""How batchscope says things: one home for the wording every report uses.

The terminal, Markdown, HTML and the ``fit`` command describe a fit, a speedup, a
point's interval or the memory line with these functions, so the same figure reads
the same everywhere. Intervals are always "95 % intervals" written ``value [low–high]``;
what the data cannot determine is said in words, never as a number.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from batchscope.units import format_bytes, format_seconds

if TYPE_CHECKING:
    from batchscope.analyse.curves import CurveFit, Estimate
    from batchscope.analyse.explain import DeviceAnalysis
    from batchscope.analyse.memory_model import MemoryFit
    from batchscope.analyse.points import Point
    from batchscope.analyse.scaling import ScalingFigure
    from batchscope.analyse.speedup import Speedup
    from batchscope.core.results import RunResult

#: what every error bar and bracket in batchscope's output is
INTERVAL_NAME = "95 % interval of the median"

_LABELS = {"c": "c", "alpha": "α", "t_min": "T_min", "x_max": "X_max", "b_half": "b_half"}


def finite(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def format_r2(r2: float) -> str:
    """R² with three decimals (four above 0.999, so a near-perfect fit is not '1.000')."""
    if not math.isfinite(r2):
        return "–"
    if abs(r2) < 5e-4:
        return "0.000"
    return f"{r2:.4f}" if 0.999 < r2 < 1 else f"{r2:.3f}"


def fmt_rate(x: float | None) -> str:
    """Samples/s: 1,234 above 100, three significant digits below."""
    if not finite(x):
        return "–"
    assert x is not None
    return f"{x:,.0f}" if x >= 100 else f"{x:,.3g}"


def fmt_time(x: float) -> str:
    """format_seconds up to an hour, then plain seconds ('1.53e+07 s')."""
    if x == 0:
        return "0 s"
    if not math.isfinite(x) or abs(x) >= 3600:
        return f"{x:.3g} s"
    return format_seconds(x)


def fmt_num(x: float) -> str:
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return str(x)
    return f"{x:.3g}"


def bracket(low: str, high: str) -> str:
    return f"[{low}–{high}]"


# ---------------------------------------------------------------- points


def _time_scale(seconds: float) -> tuple[float, str]:
    return (1.0, "s") if seconds >= 1 else (1e3, "ms")


def _digits3(x: float) -> str:
    """Three significant digits, never in exponent form ('2,060', not '2.06e+03')."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def step_time(p: Point) -> str:
    """'1.09 s [1.02–1.16]' — or '12.5 s (1 step: no interval)'."""
    scale, unit = _time_scale(p.step_time_s)
    value = _digits3(p.step_time_s * scale)
    if p.step_time_low_s is None or p.step_time_high_s is None:
        return f"{value} {unit} (no interval)"
    low, high = _digits3(p.step_time_low_s * scale), _digits3(p.step_time_high_s * scale)
    return f"{value} {unit} {bracket(low, high)}"


def steps_count(p: Point) -> str:
    """'20', or '3×20' for rounds of equal length, or the total '58' for rounds of
    different lengths (the per-round counts, in the JSON, would not fit 80 columns)."""
    ns = p.steps_per_round
    if len(ns) > 1 and len(set(ns)) == 1:
        return f"{len(ns)}×{ns[0]}"
    return str(sum(ns)) if ns else str(p.n_steps)


def samples_per_s(p: Point) -> str:
    """'14.7 [13.7–15.9]' or '14.7' without an interval."""
    value = fmt_rate(p.samples_per_s)
    if p.samples_per_s_low is None or p.samples_per_s_high is None:
        return value
    return f"{value} {bracket(fmt_rate(p.samples_per_s_low), fmt_rate(p.samples_per_s_high))}"


def tokens_per_s(p: Point) -> str:
    """A sequence workload's '9,410 [8,870–9,990]' (tokens/s), '–' without tokens."""
    value = fmt_rate(p.tokens_per_s)
    if p.tokens_per_s_low is None or p.tokens_per_s_high is None:
        return value
    return f"{value} {bracket(fmt_rate(p.tokens_per_s_low), fmt_rate(p.tokens_per_s_high))}"


# ---------------------------------------------------------------- fits


def _fmt_param(name: str, value: float, time_unit: bool) -> str:
    if name in ("c", "t_min") and time_unit:
        return fmt_time(value)
    if name == "x_max":
        return fmt_num(value) + (" samples/s" if time_unit else "")
    return fmt_num(value)


def describe_estimate(name: str, e: Estimate, *, time_unit: bool = True) -> str:
    """'α = 0.82 [0.71–0.93]', or 'α not determined (sits on its bound 4)'."""
    label = _LABELS.get(name, name)
    if not e.determined:
        return f"{label} not determined ({e.note})" if e.note else f"{label} not determined"
    value = _fmt_param(name, e.value, time_unit)
    if e.known:
        low = _fmt_param(name, e.low, False) if name != "x_max" else fmt_num(e.low)
        high = _fmt_param(name, e.high, False) if name != "x_max" else fmt_num(e.high)
        if name in ("c", "t_min") and time_unit:
            low, high = fmt_time(e.low), fmt_time(e.high)
        return f"{label} = {value} {bracket(low, high)}"
    return f"{label} = {value} (interval unknown)"


def fit_head(fit: CurveFit) -> str:
    if fit.model == "throughput":
        return "fit X(b) = X_max·b/(b + b_half)"
    return "fit T(b) = c/b^α + T_min"


def describe_fit(fit: CurveFit, *, time_unit: bool = True) -> str:
    """One line: the parameters with 95 % intervals and the verdict — or what the data show.

    A fit that is not a result (R² ≤ 0, a U shape, nothing determined) prints what the
    data show instead of its numbers.
    """
    head = fit_head(fit)
    if not fit.meaningful:
        return f"{head}: not a result: {fit.shows}" if fit.shows else f"{head}: {fit.verdict}"
    if not fit.ok:
        return f"{head}: {fit.verdict}"
    names = ("x_max", "b_half") if fit.model == "throughput" else ("alpha", "t_min")
    determined = [n for n in names if fit.params[n].determined]
    parts = [describe_estimate(n, fit.params[n], time_unit=time_unit) for n in determined]
    missing = [_LABELS[n] for n in names if not fit.params[n].determined]
    line = f"{head}: " + ", ".join(parts) if parts else f"{head}:"
    if missing:
        line += ("; " if parts else " ") + f"{' and '.join(missing)} not determined"
    line += f"; R² {format_r2(fit.r2)}; {fit.verdict}"
    if fit.notes:
        line += f" ({'; '.join(fit.notes)})"
    return line


# ---------------------------------------------------------------- speedups, memory


def speedup_text(s: Speedup) -> str:
    """'cuda:0 ran 45.8× [44.9–46.7] faster than cpu at b=64 (per sample)'."""
    ratio = f"{s.ratio:.3g}×"
    if s.low is not None and s.high is not None:
        ratio += f" {bracket(f'{s.low:.3g}', f'{s.high:.3g}')}"
        if not s.faster_beyond_noise:
            ratio += " (within the noise)"
    else:
        ratio += " (interval not determined: too few steps)"
    text = f"{s.fast} ran {ratio} faster than {s.slow}"
    if s.batch_size is not None:
        return text + f" at b={s.batch_size} (per {s.per})"
    return (
        text + f", best against best (b={s.fast_batch_size} vs b={s.slow_batch_size}, per {s.per})"
    )


def speedup_line(run: RunResult, s: Speedup) -> str:
    """:func:`speedup_text`, flagged when its two sides ran on different machines."""
    from batchscope.analyse.machines import machines_of

    text = speedup_text(s)
    on = machines_of(run, s.fast, s.slow)
    if len(on) > 1:
        text += (
            f" — across machines ({', '.join(m.label for m in on)}): the ratio compares "
            "the machines as well"
        )
    return text


def machine_lines(run: RunResult) -> list[str]:
    """What a report says when the trials ran on more than one machine (else nothing)."""
    from batchscope.analyse.machines import machines, split_series

    found = machines(run)
    if len(found) < 2:
        return []
    where = "; ".join(f"{m.label}: {m.trials} trial(s) of {', '.join(m.series)}" for m in found)
    lines = [
        f"the trials ran on {len(found)} machines ({where}); each trial records its "
        "hostname and machine_fingerprint"
    ]
    for series, on in split_series(run):
        lines.append(
            f"{series} ran on {len(on)} machines ({', '.join(m.label for m in on)}): its "
            "batch sizes are compared across machines as well"
        )
    return lines


def percent_interval(value: float, low: float | None, high: float | None) -> str:
    """'90 % [85–95 %]' (the bracket only when both ends are known)."""
    text = f"{100 * value:.0f} %"
    if low is not None and high is not None:
        text += f" [{100 * low:.0f}–{100 * high:.0f} %]"
    return text


def comm_text(value: float | None, high: float | None = None) -> str:
    """A step's exposed gradient communication, or that it was not determined."""
    if value is not None:
        return f"{100 * value:.0f} % of each step is exposed all-reduce"
    if high is not None and high > 0:
        return f"exposed all-reduce not determined (within the noise; at most {100 * high:.0f} %)"
    return "exposed all-reduce not determined"


def scaling_line(f: ScalingFigure) -> str:
    """'4 ranks reach 3.6× one rank at b=64 per device: 90 % [85–95 %] weak-scaling
    efficiency; 12 % of each step is exposed all-reduce'."""
    at = (
        f"at a global batch of {f.batch_size}"
        if f.scaling_mode == "strong"
        else f"at b={f.batch_size} per device"
    )
    head = f"{f.series}: {f.world_size} ranks"
    if f.efficiency is None or f.speedup is None:
        return f"{head} {at}: no scaling efficiency (the one-rank trial did not run ok)"
    eff = percent_interval(f.efficiency, f.efficiency_low, f.efficiency_high)
    return (
        f"{head} reach {f.speedup:.2g}× one rank {at}: {eff} {f.scaling_mode}-scaling "
        f"efficiency; {comm_text(f.comm_fraction, f.comm_fraction_high)}"
    )


def memory_line(mf: MemoryFit) -> str:
    """'memory: peak ≈ 350 MiB + 15.6 MiB × b (R² 0.997, 4 points)', or why it cannot predict."""
    why = mf.why_not
    if why is not None:
        return f"memory: {mf.n} peaks measured; no line to predict from: {why}"
    return (
        f"memory: peak ≈ {format_bytes(mf.a_bytes)} + {format_bytes(mf.m_bytes_per_sample)} × b "
        f"(R² {format_r2(mf.r2)}, {mf.n} points)"
    )


# ---------------------------------------------------------------- a series' summary


def summary_lines(d: DeviceAnalysis) -> list[str]:
    """The lines printed under a series' table: recommendation, shape, fits, memory, causes."""
    lines = d.recommendation.lines()
    if d.u_shape is not None:
        lines.append(f"shape: {d.u_shape.message}")
    if d.time_fit is not None:
        lines.append(describe_fit(d.time_fit))
    if d.throughput_fit is not None and d.throughput_fit.meaningful:
        lines.append(describe_fit(d.throughput_fit))
    if d.memory_fit is not None:
        lines.append(memory_line(d.memory_fit))
    if d.efficiency_verdict is not None:
        lines.append(f"efficiency: {d.efficiency_verdict.reason}")
    lines += [f"cause: {c}" for c in d.causes]
    lines += [
        f"failed: b={b}: {status}: {d.errors[b]}"
        for b, status in sorted(d.failed.items())
        if d.errors.get(b)
    ]
    lines += [f"note: {n}" for n in d.notes]
    return lines
