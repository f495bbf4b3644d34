"""Curve fits with uncertainty: the time model and the throughput model.

Two models describe how training speed depends on the batch size ``b``:

* seed 003's ``T(b) = c / b^alpha + t_min`` on the time per sample (or per epoch of a
  fixed data set): a cost that shrinks as batches grow, down to a floor ``t_min``;
* the throughput saturation ``X(b) = x_max * b / (b + b_half)``: samples/s rise
  with ``b`` and level off at ``x_max``; ``b_half`` is where half of it is reached.
  (It is the ``alpha = 1`` case of the time model, since ``1/X = 1/x_max + (b_half/x_max)/b``.)

Both curves only ever fall (time) or rise (throughput); a true U shape
(:mod:`batchscope.analyse.ushape`) is what neither can express, and the verdicts say so.

The ``sigmas`` are the *standard errors* of the values (for measured points, the
standard error of the median step time, run-to-run variation included), so the fit
uses them as absolute (``absolute_sigma=True``): the 95 % intervals are normal
quantiles times the covariance's standard errors, and the chi-square of the
residuals gives a goodness-of-fit p-value that is close to uniform when the model
is right (``tests/analyse/test_fit_simulation.py`` measures it). Without sigmas
nothing is judged against noise.

What the data cannot determine is marked so (:attr:`Estimate.determined` False, with
the reason): a parameter on its bound, one the covariance cannot bound, ``alpha``
when ``c`` cannot be told from 0 (a flat curve has no exponent), ``b_half`` below the
smallest or far above the largest measured batch size. A fit with R² ≤ 0 explains
nothing (:attr:`CurveFit.meaningful` False). Nothing here prints; the wording is
:mod:`batchscope.report.wording`'s.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from batchscope.analyse.ushape import UShape, detect_u_shape

TIME_FORMULA = "T(b) = c / b^alpha + t_min"
THROUGHPUT_FORMULA = "X(b) = x_max * b / (b + b_half)"

#: A fit "describes the data within the noise" unless the residuals' chi-square,
#: with the sigmas as standard errors, is this improbable under the model.
CHI2_P_THRESHOLD = 0.01
#: Without sigmas nothing can be judged against noise; below this R² a fit is "poor".
R2_GOOD = 0.95
#: Upper bound on alpha (seed 003: typically 0 < alpha < 1; 1 = a fixed cost per step).
ALPHA_MAX = 4.0
#: An interval wider than this factor (high / low) does not determine its parameter.
MAX_INTERVAL_FACTOR = 100.0
#: two-sided 95 % normal quantile
Z95 = 1.959963984540054

ArrayLike = Sequence[float] | np.ndarray


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class Estimate:
    """A fitted parameter and its 95 % interval (``low``/``high`` are ±inf when unknown).

    ``determined`` is False when the data cannot pin the parameter down; ``note`` says why.
    """

    value: float
    low: float
    high: float
    determined: bool = True
    note: str | None = None

    @property
    def known(self) -> bool:
        """True when the interval could be estimated (both ends finite)."""
        return math.isfinite(self.low) and math.isfinite(self.high)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: an infinite or NaN end becomes ``None``; undetermined values too."""
        return {
            "value": _finite_or_none(self.value) if self.determined else None,
            "low": _finite_or_none(self.low) if self.determined else None,
            "high": _finite_or_none(self.high) if self.determined else None,
            "determined": self.determined,
            "note": self.note,
            "fitted_value": _finite_or_none(self.value),
        }


@dataclass
class CurveFit:
    """One fitted model, its parameters with 95 % intervals, and a plain verdict."""

    model: str  # "time_per_sample" ("time_per_epoch" from the CLI) or "throughput"
    formula: str
    params: dict[str, Estimate]
    r2: float
    n: int
    #: the model describes the data within the noise (or, without sigmas, with R² ≥ 0.95)
    ok: bool
    #: one sentence: does it fit, and if not, why not
    verdict: str
    #: degrees of freedom (points - parameters); intervals need at least 1
    dof: int = 0
    #: whether sigmas weighted the fit
    weighted: bool = False
    #: whether the covariance (and so the intervals) could be estimated
    covariance_ok: bool = False
    #: p-value of the residuals' chi-square against the sigmas (None without sigmas)
    chi2_p: float | None = None
    #: the U-shape test the verdict used (None for too few points)
    u_shape: UShape | None = None
    #: caveats, e.g. a parameter sitting on its bound
    notes: list[str] = field(default_factory=list)
    #: False when the fit explains nothing (R² ≤ 0, a degenerate solution): not a result
    meaningful: bool = True
    #: what the data show instead, when the fit is not a result ("flat within the noise")
    shows: str | None = None

    def predict(self, b: float | np.ndarray) -> np.ndarray | float:
        """The fitted curve at batch size(s) ``b``."""
        p = {k: v.value for k, v in self.params.items()}
        if self.model == "throughput":
            out = _throughput(np.asarray(b, dtype=float), p["x_max"], p["b_half"])
        else:
            out = _time(np.asarray(b, dtype=float), p["c"], p["alpha"], p["t_min"])
        if np.ndim(out) == 0:
            return float(out)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "formula": self.formula,
            "params": {k: v.to_dict() for k, v in self.params.items()},
            "r2": _finite_or_none(self.r2),
            "n": self.n,
            "ok": self.ok,
            "meaningful": self.meaningful,
            "verdict": self.verdict,
            "shows": self.shows,
            "dof": self.dof,
            "weighted": self.weighted,
            "covariance_ok": self.covariance_ok,
            "chi2_p": None if self.chi2_p is None else _finite_or_none(self.chi2_p),
            "u_shape": self.u_shape.to_dict() if self.u_shape else None,
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------- models


def _time(b: np.ndarray, c: float, alpha: float, t_min: float) -> np.ndarray:
    return c / np.power(b, alpha) + t_min


def _throughput(b: np.ndarray, x_max: float, b_half: float) -> np.ndarray:
    return x_max * b / (b + b_half)


# ---------------------------------------------------------------- input checks


def _arrays(
    batch_sizes: ArrayLike, values: ArrayLike, sigmas: ArrayLike | None, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    b = np.asarray(batch_sizes, dtype=float).ravel()
    y = np.asarray(values, dtype=float).ravel()
    if b.shape != y.shape:
        raise ValueError(f"{len(b)} batch sizes but {len(y)} {what}")
    if not (np.all(np.isfinite(b)) and np.all(b > 0)):
        raise ValueError("batch sizes must be positive numbers")
    if not (np.all(np.isfinite(y)) and np.all(y > 0)):
        raise ValueError(f"{what} must be positive numbers")
    s: np.ndarray | None = None
    if sigmas is not None:
        s = np.asarray(sigmas, dtype=float).ravel()
        if s.shape != y.shape:
            raise ValueError(f"{len(s)} sigmas for {len(y)} {what}")
        # an unknown or zero error cannot weight a fit: without every error, nothing is judged
        if not np.all(np.isfinite(s) & (s > 0)):
            s = None
    order = np.argsort(b, kind="stable")
    return b[order], y[order], (s[order] if s is not None else None)


# ---------------------------------------------------------------- fitting


def r_squared(y: np.ndarray, yhat: np.ndarray, s: np.ndarray | None = None) -> float:
    """R², weighted by 1/σ² when sigmas are given (the fit's own objective)."""
    w = np.ones_like(y) if s is None else 1.0 / s**2
    mean = float(np.sum(w * y) / np.sum(w))
    ss_res = float(np.sum(w * (y - yhat) ** 2))
    ss_tot = float(np.sum(w * (y - mean) ** 2))
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return 1.0 - ss_res / ss_tot


def _curve_fit(
    func: Any,
    b: np.ndarray,
    y: np.ndarray,
    s: np.ndarray | None,
    p0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
) -> tuple[np.ndarray, np.ndarray | None]:
    from scipy.optimize import OptimizeWarning, curve_fit

    lo = [x + 1e-9 * (1 + abs(x)) if math.isfinite(x) else x for x in lower]
    hi = [x - 1e-9 * (1 + abs(x)) if math.isfinite(x) else x for x in upper]
    p0 = np.clip(p0, lo, hi)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            popt, pcov = curve_fit(
                func,
                b,
                y,
                p0=p0,
                sigma=s,
                absolute_sigma=s is not None,
                bounds=(lower, upper),
                method="trf",
                x_scale="jac",
                max_nfev=20000,
            )
        except (RuntimeError, ValueError):
            return p0, None
    return np.asarray(popt, dtype=float), np.asarray(pcov, dtype=float)


def _quantile(dof: int, weighted: bool) -> float:
    """Normal with absolute sigmas; Student's t when the scale comes from the residuals."""
    if weighted:
        return Z95
    from scipy import stats

    return float(stats.t.ppf(0.975, dof))


def _estimates(
    names: Sequence[str],
    popt: np.ndarray,
    pcov: np.ndarray | None,
    dof: int,
    lower: np.ndarray,
    upper: np.ndarray,
    weighted: bool,
) -> tuple[dict[str, Estimate], bool]:
    ok = (
        pcov is not None
        and dof >= 1
        and bool(np.all(np.isfinite(pcov)))
        and bool(np.all(np.diag(pcov) >= 0))
    )
    out: dict[str, Estimate] = {}
    q = _quantile(dof, weighted) if ok else math.inf
    for i, name in enumerate(names):
        value = float(popt[i])
        if ok:
            assert pcov is not None
            half = q * math.sqrt(float(pcov[i, i]))
            low = max(value - half, float(lower[i]))
            high = min(value + half, float(upper[i]))
            out[name] = Estimate(value, low, high)
        else:
            why = (
                f"{len(popt)} parameters need at least {len(popt) + 1} points for an interval"
                if dof < 1
                else "the covariance could not be estimated"
            )
            out[name] = Estimate(value, -math.inf, math.inf, False, why)
    return out, ok


def _chi2_p(resid: np.ndarray, s: np.ndarray | None, dof: int) -> float | None:
    if s is None or dof < 1:
        return None
    from scipy import stats

    chi2 = float(np.sum((resid / s) ** 2))
    return float(stats.chi2.sf(chi2, dof))


def _undetermined(e: Estimate, note: str) -> Estimate:
    return Estimate(e.value, e.low, e.high, False, note)


def _on_bound(e: Estimate, bound: float, scale: float) -> bool:
    return math.isfinite(bound) and abs(e.value - bound) <= 1e-6 * max(abs(scale), 1e-300)


def _too_wide(e: Estimate) -> bool:
    if not e.known:
        return True
    if e.low <= 0 < e.high:
        return e.value <= 0 or e.high / max(e.value, 1e-300) > MAX_INTERVAL_FACTOR
    return e.low > 0 and e.high / e.low > MAX_INTERVAL_FACTOR


def _judge_time_params(
    params: dict[str, Estimate], b: np.ndarray, scale: float
) -> tuple[dict[str, Estimate], list[str]]:
    """Mark what the time model's data cannot determine, and say what they show instead."""
    c, alpha, t_min = params["c"], params["alpha"], params["t_min"]
    notes: list[str] = []
    if not c.determined:
        return params, notes
    flat = c.low <= 0 or _on_bound(c, 0.0, scale * float(np.max(b)))
    if flat:
        c = _undetermined(c, "cannot be told from 0: no falling trend within the noise")
        alpha = _undetermined(alpha, "a curve without a falling trend has no exponent")
        notes.append("no falling trend within the noise: c and α are not determined")
    else:
        for bound in (0.0, ALPHA_MAX):
            if _on_bound(alpha, bound, 1.0):
                alpha = _undetermined(alpha, f"sits on its bound {bound:g}")
                notes.append(f"α sits on its bound {bound:g}: not determined")
        if _too_wide(alpha):
            alpha = _undetermined(alpha, "its interval spans more than a factor of 100")
    if _on_bound(t_min, 0.0, scale) or t_min.low <= 0:
        t_min = _undetermined(t_min, "cannot be told from 0: the floor is not reached")
        notes.append("T_min cannot be told from 0: the floor is not reached in this range")
    return {"c": c, "alpha": alpha, "t_min": t_min}, notes


def fit_time_model(
    batch_sizes: ArrayLike,
    times: ArrayLike,
    sigmas: ArrayLike | None = None,
    *,
    quantity: str = "time_per_sample",
) -> CurveFit:
    """Fit ``T(b) = c / b^alpha + t_min`` (c ≥ 0, 0 ≤ alpha ≤ 4, t_min ≥ 0).

    ``times`` are per sample (the default) or per epoch of a fixed data set
    (``quantity="time_per_epoch"``; the model is the same, the units differ).
    ``sigmas`` are the standard errors of the times; they weight the fit and judge
    it, and without them nothing is judged against noise. Starting values come from
    a grid over alpha with ``c`` and ``t_min`` solved by non-negative least squares.
    """
    from scipy.optimize import nnls

    b, y, s = _arrays(batch_sizes, times, sigmas, "times")
    n = len(b)
    if n < 1:
        raise ValueError("no points to fit")
    w = 1.0 / s if s is not None else np.ones(n)
    best: tuple[float, float, float, float] | None = None
    for alpha in np.linspace(0.0, ALPHA_MAX, 161)[1:]:
        a = np.column_stack([np.power(b, -alpha), np.ones(n)]) * w[:, None]
        coef, rnorm = nnls(a, y * w)
        if best is None or rnorm < best[0]:
            best = (float(rnorm), float(coef[0]), float(alpha), float(coef[1]))
    assert best is not None
    _, c0, a0, t0 = best
    scale = float(np.max(y))
    c0 = max(c0, 1e-6 * scale)
    t0 = max(t0, 1e-6 * scale)
    lower = np.array([0.0, 0.0, 0.0])
    upper = np.array([np.inf, ALPHA_MAX, np.inf])
    popt, pcov = _curve_fit(_time, b, y, s, np.array([c0, a0, t0]), lower, upper)
    dof = n - 3
    params, cov_ok = _estimates(
        ("c", "alpha", "t_min"), popt, pcov, dof, lower, upper, s is not None
    )
    params, notes = _judge_time_params(params, b, scale)
    yhat = _time(b, *popt)
    r2 = r_squared(y, yhat, s)
    chi2_p = _chi2_p(y - yhat, s, dof)
    what = "the time per epoch" if quantity == "time_per_epoch" else "the time per sample"
    u = detect_u_shape(b, y, s, what=what) if n >= 3 else None
    fit = CurveFit(
        model=quantity,
        formula=TIME_FORMULA,
        params=params,
        r2=r2,
        n=n,
        ok=False,
        verdict="",
        dof=dof,
        weighted=s is not None,
        covariance_ok=cov_ok,
        chi2_p=chi2_p,
        u_shape=u,
        notes=notes,
    )
    _judge(fit, kind="time", cannot="c/b^α + T_min cannot express (it only falls)")
    return fit


def _judge_throughput_params(
    params: dict[str, Estimate], b: np.ndarray
) -> tuple[dict[str, Estimate], list[str]]:
    x_max, b_half = params["x_max"], params["b_half"]
    notes: list[str] = []
    if not b_half.determined:
        return params, notes
    smallest, largest = float(np.min(b)), float(np.max(b))
    if b_half.high < smallest / 2 or b_half.low <= 0:
        b_half = _undetermined(
            b_half, f"below the smallest batch size measured (b={smallest:g}): saturated already"
        )
        notes.append(
            f"throughput is saturated from the smallest batch size (b={smallest:g}) on: "
            "b_half is not determined"
        )
    elif b_half.low > 2 * largest or _too_wide(b_half):
        b_half = _undetermined(b_half, "beyond the measured range: no saturation seen")
        x_max = _undetermined(x_max, "the throughput is still rising at the largest batch size")
        notes.append("no saturation within the measured batch sizes: X_max is not determined")
    return {"x_max": x_max, "b_half": b_half}, notes


def fit_throughput_model(
    batch_sizes: ArrayLike, throughputs: ArrayLike, sigmas: ArrayLike | None = None
) -> CurveFit:
    """Fit ``X(b) = x_max * b / (b + b_half)`` (x_max > 0, b_half ≥ 0).

    A throughput that falls after its maximum beyond the noise is the U shape seen
    from the other side; the verdict says the model (which only rises) cannot
    express it. The U test runs on ``1/X`` with the errors carried over (``σ/X²``).
    """
    b, x, s = _arrays(batch_sizes, throughputs, sigmas, "throughputs")
    n = len(b)
    w = 1.0 / s if s is not None else np.ones(n)
    best: tuple[float, float, float] | None = None
    for b_half in np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 121) * float(np.max(b))]):
        f = b / (b + b_half) * w
        denom = float(np.dot(f, f))
        x_max = float(np.dot(f, x * w)) / denom if denom > 0 else float(np.max(x))
        r = float(np.sum((x * w - x_max * f) ** 2))
        if x_max > 0 and (best is None or r < best[0]):
            best = (r, x_max, float(b_half))
    assert best is not None
    _, x0, h0 = best
    h0 = max(h0, 1e-6 * float(np.min(b)))
    lower = np.array([0.0, 0.0])
    upper = np.array([np.inf, np.inf])
    popt, pcov = _curve_fit(_throughput, b, x, s, np.array([x0, h0]), lower, upper)
    dof = n - 2
    params, cov_ok = _estimates(("x_max", "b_half"), popt, pcov, dof, lower, upper, s is not None)
    params, notes = _judge_throughput_params(params, b)
    xhat = _throughput(b, *popt)
    r2 = r_squared(x, xhat, s)
    chi2_p = _chi2_p(x - xhat, s, dof)
    u = detect_u_shape(b, 1.0 / x, None if s is None else s / x**2) if n >= 3 else None
    fit = CurveFit(
        model="throughput",
        formula=THROUGHPUT_FORMULA,
        params=params,
        r2=r2,
        n=n,
        ok=False,
        verdict="",
        dof=dof,
        weighted=s is not None,
        covariance_ok=cov_ok,
        chi2_p=chi2_p,
        u_shape=u,
        notes=notes,
    )
    _judge(fit, kind="throughput", cannot="X_max·b/(b + b_half) cannot express (it only rises)")
    return fit


def _pct(x: float) -> str:
    return f"{x:+.0%}" if abs(x) >= 0.01 else f"{x:+.1%}"


def _judge(fit: CurveFit, *, kind: str, cannot: str) -> None:
    """Set ``ok``, ``meaningful``, ``verdict`` and ``shows``: one sentence, never a bare number."""
    u = fit.u_shape
    n_params = len(fit.params)
    tail = ""
    if fit.n < n_params + 1:
        tail = (
            f"; {fit.n} points for {n_params} parameters: no 95 % intervals "
            f"(they need at least {n_params + 1} points)"
        )
    elif not fit.covariance_ok:
        tail = "; the covariance could not be estimated, so the intervals are unknown"
    r2_text = "–" if not math.isfinite(fit.r2) else f"{fit.r2:.3f}"
    if u is not None and u.present:
        moves = "falls again" if kind == "throughput" else "rises again"
        fit.ok, fit.meaningful = False, False
        fit.verdict = (
            f"does not fit: the {kind} {moves} after b={u.b_min} beyond the noise "
            f"(a U shape), which {cannot}" + tail
        )
        return
    if u is not None and not u.judged and u.rise > 0 and not fit.weighted and fit.r2 < R2_GOOD:
        moves = "falls again" if kind == "throughput" else "rises again"
        pct = f"{u.rise:+.0%}" if kind != "throughput" else f"{-u.rise / (1 + u.rise):+.0%}"
        fit.ok = False
        fit.verdict = (
            f"does not fit well (R² {r2_text}): the {kind} {moves} after b={u.b_min} "
            f"({pct} by b={u.b_rise}), which {cannot}; without standard errors it cannot be "
            "told whether that is a U shape or noise" + tail
        )
    elif fit.weighted and fit.chi2_p is not None and fit.chi2_p < CHI2_P_THRESHOLD:
        fit.ok = False
        fit.verdict = (
            f"does not fit within the noise (residuals beyond the standard errors, "
            f"chi-square p = {fit.chi2_p:.2g})" + tail
        )
    elif fit.weighted and fit.chi2_p is not None:
        fit.ok = True
        fit.verdict = f"fits within the noise (chi-square p = {fit.chi2_p:.2g})" + tail
    elif fit.weighted:
        fit.ok = True
        fit.verdict = "passes through the points: nothing left to judge the fit by" + tail
    elif fit.r2 >= R2_GOOD:
        fit.ok = True
        fit.verdict = (
            f"fits (R² {r2_text}); no standard errors given, so it is not judged against "
            "noise" + tail
        )
    else:
        fit.ok = False
        fit.verdict = f"does not fit well (R² {r2_text}); no standard errors given" + tail
    if not math.isfinite(fit.r2) or fit.r2 <= 0:
        fit.meaningful = False
        fit.shows = (
            u.message
            if u is not None
            else f"the model explains none of the variation (R² {r2_text})"
        )
    elif all(not e.determined for e in fit.params.values()):
        fit.meaningful = False
        fit.shows = "no parameter is determined by these points"


# ---------------------------------------------------------------- fitting a table (the CLI)

#: what a value column can hold; "per-step" times are divided by the batch size
KINDS = ("per-sample", "per-step", "per-epoch", "throughput")

#: auto-detected value columns, in order of preference, and what each holds
VALUE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("time_per_sample_s", "per-sample"),
    ("time_per_sample", "per-sample"),
    ("step_time_s", "per-step"),
    ("step_time", "per-step"),
    ("epoch_time_s", "per-epoch"),
    ("epoch_time", "per-epoch"),
    ("training_time_s", "per-epoch"),
    ("training_time", "per-epoch"),
    ("total_time_s", "per-epoch"),
    ("time_s", "per-epoch"),
    ("time", "per-epoch"),
    ("seconds", "per-epoch"),
    ("samples_per_s", "throughput"),
    ("samples_s", "throughput"),
    ("throughput", "throughput"),
)
BATCH_COLUMNS = ("batch_size", "bs", "batch")
SPREAD_COLUMNS = ("stderr", "sem", "spread", "iqr", "stdev", "std", "sd", "sigma", "error", "err")

_TIME_UNITS = {
    "": 1.0,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "msec": 1e-3,
    "millisecond": 1e-3,
    "milliseconds": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "microsecond": 1e-6,
    "microseconds": 1e-6,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}
_RATE_UNITS = (
    "",
    "/s",
    "samples/s",
    "sample/s",
    "samples/sec",
    "samples per second",
    "img/s",
    "images/s",
    "it/s",
)
_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?"


def _normalise(name: str) -> str:
    import re

    text = re.sub(r"[*`]+", "", name.strip())  # Markdown **bold** and `code`
    text = re.sub(r"[^0-9a-zA-Zµμ]+", "_", text.lower())
    return text.strip("_")


def parse_value(text: str, kind: str) -> float | None:
    """'14.1 seconds' → 14.1, '9.44s' → 9.44, '250 ms' → 0.25, '1,234.5 samples/s' → 1234.5.

    Returns None when ``text`` is not a number with a unit this kind accepts.
    """
    import re

    match = re.fullmatch(rf"\s*({_NUMBER})\s*(.*?)\s*", text)
    # the digits must be in the mantissa: "e5" alone is no number (float() refuses it)
    if not match or not re.search(r"\d", re.split(r"[eE]", match.group(1), maxsplit=1)[0]):
        return None
    number = float(match.group(1).replace(",", ""))
    unit = match.group(2).lower()
    if kind == "throughput":
        return number if unit in _RATE_UNITS else None
    scale = _TIME_UNITS.get(unit)
    return None if scale is None else number * scale


@dataclass
class FitTable:
    """A table of batch sizes and times (or throughputs), read and checked."""

    path: str
    batch_size_column: str
    value_column: str
    spread_column: str | None
    #: one of KINDS
    kind: str
    #: how the kind was chosen: "--kind" or "column name"
    kind_source: str
    #: distinct batch sizes, ascending
    batch_sizes: list[int]
    #: the column's values in seconds (times) or samples/s, duplicates averaged
    values: list[float]
    spreads: list[float] | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "batch_size_column": self.batch_size_column,
            "value_column": self.value_column,
            "spread_column": self.spread_column,
            "kind": self.kind,
            "kind_source": self.kind_source,
            "n": len(self.batch_sizes),
            "batch_sizes": list(self.batch_sizes),
            "values": list(self.values),
            "spreads": list(self.spreads) if self.spreads is not None else None,
            "notes": list(self.notes),
        }


def _kind_for(name: str) -> str | None:
    norm = _normalise(name)
    for col, kind in VALUE_COLUMNS:
        if norm == col or norm.startswith(col + "_"):
            return kind
    if "per_s" in norm or "throughput" in norm:
        return "throughput"
    if "sample" in norm and "time" in norm:
        return "per-sample"
    if "step" in norm and "time" in norm:
        return "per-step"
    if "time" in norm or "sec" in norm:
        return "per-epoch"
    return None


def _read_rows(path: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every non-empty row: CSV, or a Markdown pipe table."""
    import csv
    from pathlib import Path

    from batchscope.errors import UsageError

    p = Path(path)
    if not p.exists():
        raise UsageError(f"{path!r}: no such file: give a CSV table of batch_size and times")
    if p.is_dir():
        raise UsageError(f"{path!r} is a folder: give a CSV file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path!r}: {exc.strerror}") from exc
    if b"\0" in raw[:4096]:
        raise UsageError(f"{path!r} is not a CSV file (it is binary)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path!r} is not a CSV text file (not UTF-8)") from exc
    lines = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]
    if not lines:
        raise UsageError(
            f"{path!r} is empty: expected a header row with batch_size and a time or "
            "throughput column"
        )
    if lines[0][1].lstrip().startswith("|"):
        import re

        rows = []
        for number, line in lines:
            if not line.lstrip().startswith("|"):
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
                continue  # the |---|---| separator
            rows.append((number, cells))
    else:
        sample = "\n".join(line for _, line in lines[:20])
        try:
            dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        try:
            rows = [
                (number, [c.strip() for c in cells])
                for number, line in lines
                for cells in csv.reader([line], dialect)
            ]
        except csv.Error as exc:
            raise UsageError(f"{path!r} is not a readable CSV file: {exc}") from exc
    if not rows:  # e.g. a Markdown table that is only its |---| separator
        raise UsageError(
            f"{path!r} has no table rows: expected a header row with batch_size and a time "
            "or throughput column"
        )
    return rows


def read_table(path: str, *, time_column: str | None = None, kind: str | None = None) -> FitTable:
    """Read a CSV (or Markdown) table with a ``batch_size`` column and a time column.

    The value column is ``time_column`` or the first of :data:`VALUE_COLUMNS` present
    (a name may carry a suffix: ``training_time_gpu``); ``kind`` overrides what the
    column name says it holds. A ``spread``/``iqr``/``stdev`` column, in the value
    column's unit, becomes the fit's sigmas. Values may carry units ("14.1 seconds",
    "9.44s", "250 ms"). Duplicate batch sizes are averaged, with a note. Raises
    :class:`~batchscope.errors.UsageError` (one line) for anything unusable.
    """
    from batchscope.errors import UsageError

    if kind is not None and kind not in KINDS:
        raise UsageError(f"--kind {kind!r} is not one of {', '.join(KINDS)}")
    rows = _read_rows(path)
    (header_line, header), body = rows[0], rows[1:]
    norm = [_normalise(h) for h in header]
    found = ", ".join(repr(h) for h in header)
    b_idx = next((norm.index(c) for c in BATCH_COLUMNS if c in norm), None)
    if b_idx is None:
        raise UsageError(
            f"{path!r} has no batch_size column (its header, line {header_line}, has {found})"
        )
    v_idx: int | None = None
    if time_column is not None:
        wanted = _normalise(time_column)
        matches = [i for i, h in enumerate(header) if h == time_column or norm[i] == wanted]
        if not matches:
            raise UsageError(f"--time-column {time_column!r} is not a column of {path!r} ({found})")
        v_idx = matches[0]
    else:
        for col, _ in VALUE_COLUMNS:
            hits = [
                i
                for i, h in enumerate(norm)
                if i != b_idx and (h == col or h.startswith(col + "_"))
            ]
            if hits:
                v_idx = hits[0]
                break
        if v_idx is None:
            names = ", ".join(c for c, _ in VALUE_COLUMNS)
            raise UsageError(
                f"{path!r} has no time or throughput column ({found}); name one with "
                f"--time-column, or use one of: {names}"
            )
    column = header[v_idx]
    if kind is not None:
        chosen, source = kind, "--kind"
    else:
        detected = _kind_for(column)
        if detected is None:
            raise UsageError(
                f"cannot tell what column {column!r} holds: give --kind ({', '.join(KINDS)})"
            )
        chosen, source = detected, "column name"
    s_idx = next(
        (
            i
            for i, h in enumerate(norm)
            if i not in (b_idx, v_idx)
            and any(h == s or h.startswith(s + "_") or f"_{s}" in h for s in SPREAD_COLUMNS)
        ),
        None,
    )
    if not body:
        raise UsageError(f"{path!r} has a header but no rows")
    by_b: dict[int, list[tuple[int, float, float | None]]] = {}
    for number, cells in body:
        if len(cells) != len(header):
            raise UsageError(
                f"{path!r} line {number} has {len(cells)} field(s), the header has {len(header)}"
            )
        b_text = cells[b_idx]
        try:
            b_value = float(b_text.replace(",", ""))
        except ValueError:
            b_value = math.nan
        if not (math.isfinite(b_value) and b_value >= 1 and b_value.is_integer()):
            raise UsageError(
                f"{path!r} line {number}: batch size {b_text!r} is not a whole number ≥ 1"
            )
        value = parse_value(cells[v_idx], chosen)
        example = (
            "e.g. 1234.5 or 1234.5 samples/s"
            if chosen == "throughput"
            else ("e.g. 9.44, 9.44s, 14.1 seconds, 250 ms")
        )
        if value is None:
            raise UsageError(
                f"{path!r} line {number} (batch size {int(b_value)}): {cells[v_idx]!r} in column "
                f"{column!r} is not a number ({example})"
            )
        if not (math.isfinite(value) and value > 0):
            raise UsageError(
                f"{path!r} line {number} (batch size {int(b_value)}): {cells[v_idx]!r} in column "
                f"{column!r} must be greater than zero"
            )
        spread: float | None = None
        if s_idx is not None and cells[s_idx] != "":
            spread = parse_value(cells[s_idx], chosen)
            if spread is None or not math.isfinite(spread) or spread < 0:
                raise UsageError(
                    f"{path!r} line {number} (batch size {int(b_value)}): {cells[s_idx]!r} in "
                    f"spread column {header[s_idx]!r} is not a number ≥ 0 ({example})"
                )
        by_b.setdefault(int(b_value), []).append((number, value, spread))
    notes: list[str] = []
    sizes = sorted(by_b)
    values: list[float] = []
    spreads: list[float] = []
    for b in sizes:
        entries = by_b[b]
        vals = [v for _, v, _ in entries]
        mean = math.fsum(vals) / len(vals)
        values.append(mean)
        ss = [s for _, _, s in entries if s is not None]
        spreads.append(math.fsum(ss) / len(ss) if ss else 0.0)
        if len(entries) > 1:
            lines = ", ".join(str(n) for n, _, _ in entries)
            notes.append(
                f"batch size {b} appears {len(entries)} times (lines {lines}): averaged "
                f"({', '.join(f'{v:g}' for v in vals)} → {mean:.4g})"
            )
    if len(sizes) < 3:
        raise UsageError(
            f"{path!r} has {len(sizes)} distinct batch size(s): T(b) = c/b^α + T_min has 3 "
            "parameters, so a fit needs at least 3 points (and its 95 % intervals at least 4)"
        )
    if len(sizes) == 3:
        notes.append(
            "3 batch sizes for 3 parameters: the time fit has no intervals (they need at least 4)"
        )
    has_spread = s_idx is not None and any(s > 0 for s in spreads)
    return FitTable(
        path=str(path),
        batch_size_column=header[b_idx],
        value_column=column,
        spread_column=header[s_idx] if s_idx is not None else None,
        kind=chosen,
        kind_source=source,
        batch_sizes=sizes,
        values=values,
        spreads=spreads if has_spread else None,
        notes=notes,
    )


@dataclass
class TableFit:
    """Both models fitted to a table, and the U-shape verdict on its times."""

    table: FitTable
    time: CurveFit
    throughput: CurveFit
    u_shape: UShape
    #: what the time model's T means, e.g. "time per epoch (s)"
    time_quantity: str
    #: what the throughput model's X means, e.g. "samples/s"
    throughput_quantity: str

    def to_dict(self) -> dict[str, Any]:
        time = self.time.to_dict()
        time["quantity"] = self.time_quantity
        throughput = self.throughput.to_dict()
        throughput["quantity"] = self.throughput_quantity
        return {
            "models": {"time": time, "throughput": throughput},
            "u_shape": self.u_shape.to_dict(),
            "input": self.table.to_dict(),
        }


def fit_table(table: FitTable) -> TableFit:
    """Fit the time model and the throughput model to a table read by :func:`read_table`.

    Per-step times are divided by the batch size (time per sample). For per-epoch
    times of a fixed data set the throughput is seed 003's "relative performance":
    best time / time, so ``x_max`` is relative to the fastest measured.
    """
    b = np.asarray(table.batch_sizes, dtype=float)
    v = np.asarray(table.values, dtype=float)
    s = np.asarray(table.spreads, dtype=float) if table.spreads is not None else None
    if table.kind == "throughput":
        x, xs = v, s
        t = 1.0 / v
        ts = None if s is None else s / v**2
        time_quantity, quantity = "time per sample (s), 1 / throughput", "time_per_sample"
        throughput_quantity = "samples/s"
    elif table.kind == "per-epoch":
        t, ts = v, s
        best = float(np.min(v))
        x = best / v
        xs = None if s is None else best * s / v**2
        time_quantity, quantity = "time per epoch or protocol (s)", "time_per_epoch"
        throughput_quantity = "relative performance (fastest measured = 1)"
    else:
        per = b if table.kind == "per-step" else np.ones_like(b)
        t = v / per
        ts = None if s is None else s / per
        x = 1.0 / t
        xs = None if ts is None else ts / t**2
        time_quantity, quantity = "time per sample (s)", "time_per_sample"
        throughput_quantity = "samples/s"
    time_fit = fit_time_model(b, t, ts, quantity=quantity)
    throughput_fit = fit_throughput_model(b, x, xs)
    u = time_fit.u_shape or detect_u_shape(b, t, ts)
    return TableFit(
        table=table,
        time=time_fit,
        throughput=throughput_fit,
        u_shape=u,
        time_quantity=time_quantity,
        throughput_quantity=throughput_quantity,
    )
