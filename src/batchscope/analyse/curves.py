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


def quantile(dof: int, weighted: bool) -> float:
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
    q = quantile(dof, weighted) if ok else math.inf
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
