"""The memory model of a training step: ``memory(b) = a + m·b``.

``a`` is what a step holds whatever the batch size (weights, gradients, optimizer
state, workspace); ``m`` is what each sample adds (activations kept for the backward
pass, the batch itself). Fitted by least squares to the peaks of successful trials,
it predicts the largest batch size that fits a memory budget — which
:mod:`batchscope.run.maxbs` then verifies by running it, since a model is a guess and
only a trial is a fact.

Pure NumPy/SciPy: no torch, so reports and plots can use it cheaply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MemoryFit", "fit_memory_model", "predict_max_batch"]


@dataclass(frozen=True, kw_only=True)
class MemoryFit:
    """A least-squares line through (batch size, peak memory) points.

    Attributes:
        a_bytes: intercept: memory a step needs at batch size 0.
        m_bytes_per_sample: slope: memory each sample adds.
        r2: coefficient of determination (1.0 when every point lies on the line).
        residuals_bytes: measured minus fitted peak, per point, in input order.
        n: number of points.
        batch_sizes: the points' batch sizes, in input order.
        peak_bytes: the points' measured peaks, in input order.
        a_stderr_bytes, m_stderr_bytes: standard errors (``None`` with fewer than
            3 points: two points fix a line exactly and say nothing about its error).
        a_ci95_bytes, m_ci95_bytes: 95 % confidence intervals from Student's t with
            ``n − 2`` degrees of freedom (``None`` with fewer than 3 points).
    """

    a_bytes: float
    m_bytes_per_sample: float
    r2: float
    residuals_bytes: list[float]
    n: int
    batch_sizes: list[int] = field(default_factory=list)
    peak_bytes: list[float] = field(default_factory=list)
    a_stderr_bytes: float | None = None
    m_stderr_bytes: float | None = None
    a_ci95_bytes: tuple[float, float] | None = None
    m_ci95_bytes: tuple[float, float] | None = None

    def predict(self, batch_size: float) -> float:
        """Predicted peak memory (bytes) at ``batch_size``."""
        return self.a_bytes + self.m_bytes_per_sample * float(batch_size)

    @property
    def max_abs_residual_bytes(self) -> float:
        return max((abs(r) for r in self.residuals_bytes), default=0.0)

    @property
    def why_not(self) -> str | None:
        """Why this line cannot predict a batch size (None when it can)."""
        from batchscope.units import format_bytes

        distinct = len(set(self.batch_sizes)) if self.batch_sizes else self.n
        if self.m_bytes_per_sample <= 0:
            slope = format_bytes(abs(self.m_bytes_per_sample))
            return (
                f"memory does not grow with the batch size here (slope −{slope} per sample): "
                "the peak is set by what every step holds, not by the batch"
            )
        if distinct < 3:
            return (
                f"a line through {distinct} batch sizes has no point left to check it: "
                "run a third size to predict from it"
            )
        if self.m_ci95_bytes is not None and self.m_ci95_bytes[0] <= 0:
            return "the slope cannot be told from 0: the peaks do not grow beyond their noise"
        return None

    @property
    def can_predict(self) -> bool:
        return self.why_not is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "a_bytes": self.a_bytes,
            "m_bytes_per_sample": self.m_bytes_per_sample,
            "r2": self.r2,
            "residuals_bytes": list(self.residuals_bytes),
            "n": self.n,
            "batch_sizes": list(self.batch_sizes),
            "peak_bytes": list(self.peak_bytes),
            "a_stderr_bytes": self.a_stderr_bytes,
            "m_stderr_bytes": self.m_stderr_bytes,
            "a_ci95_bytes": list(self.a_ci95_bytes) if self.a_ci95_bytes else None,
            "m_ci95_bytes": list(self.m_ci95_bytes) if self.m_ci95_bytes else None,
            "can_predict": self.can_predict,
            "why_not": self.why_not,
        }


def fit_memory_model(
    batch_sizes: Sequence[float],
    peak_bytes: Sequence[float],
    *,
    weights: Sequence[float] | None = None,
) -> MemoryFit:
    """Fit ``memory(b) = a + m·b`` by least squares.

    Needs at least two distinct batch sizes; repeated sizes are fine (each run is a
    point). ``weights`` (optional, positive) makes it weighted least squares: the
    search weights points near the budget more, where the line is used. Standard
    errors then assume the noise variance is proportional to ``1/weight``.
    Raises :class:`ValueError` on too few points, mismatched lengths or values that
    are not finite.
    """
    import numpy as np

    if len(batch_sizes) != len(peak_bytes):
        raise ValueError(
            f"{len(batch_sizes)} batch sizes but {len(peak_bytes)} peaks: give one peak per size"
        )
    x = np.asarray(batch_sizes, dtype=float)
    y = np.asarray(peak_bytes, dtype=float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    if len(w) != len(x):
        raise ValueError(f"{len(w)} weights for {len(x)} points: give one weight per point")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.isfinite(w))):
        raise ValueError("batch sizes, peaks and weights must be finite numbers")
    if np.any(w <= 0):
        raise ValueError("weights must be positive")
    if len(np.unique(x)) < 2:
        raise ValueError("a memory model needs peaks at two or more different batch sizes")
    n = len(x)
    w = w / w.sum() * n  # scale-free: only relative weights matter
    x_mean = float(np.sum(w * x) / n)
    y_mean = float(np.sum(w * y) / n)
    sxx = float(np.sum(w * (x - x_mean) ** 2))
    sxy = float(np.sum(w * (x - x_mean) * (y - y_mean)))
    m = sxy / sxx
    a = float(y_mean - m * x_mean)
    residuals = y - (a + m * x)
    ssr = float(np.sum(w * residuals**2))
    sst = float(np.sum(w * (y - y_mean) ** 2))
    # every peak equal: the flat line fits them exactly
    r2 = 1.0 - ssr / sst if sst > 0 else 1.0
    a_se = m_se = None
    a_ci = m_ci = None
    if n >= 3:
        from scipy import stats

        dof = n - 2
        s2 = ssr / dof
        m_se = math.sqrt(s2 / sxx)
        a_se = math.sqrt(s2 * (1.0 / n + x_mean**2 / sxx))
        t = float(stats.t.ppf(0.975, dof))
        a_ci = (a - t * a_se, a + t * a_se)
        m_ci = (m - t * m_se, m + t * m_se)
    return MemoryFit(
        a_bytes=a,
        m_bytes_per_sample=float(m),
        r2=float(r2),
        residuals_bytes=[float(r) for r in residuals],
        n=n,
        batch_sizes=[int(b) if float(b).is_integer() else b for b in batch_sizes],  # type: ignore[misc]
        peak_bytes=[float(p) for p in peak_bytes],
        a_stderr_bytes=a_se,
        m_stderr_bytes=m_se,
        a_ci95_bytes=a_ci,
        m_ci95_bytes=m_ci,
    )


def predict_max_batch(
    fit: MemoryFit, budget_bytes: float, margin: float = 0.0, granularity: int = 1
) -> int | None:
    """The largest batch size ``b`` (a multiple of ``granularity``) with
    ``a + m·b ≤ budget·(1 − margin)``.

    Returns 0 when not even ``granularity`` samples fit, and ``None`` when the fit
    does not grow with the batch size (``m ≤ 0``), so it sets no limit.
    """
    if budget_bytes <= 0 or not math.isfinite(budget_bytes):
        raise ValueError(f"budget {budget_bytes!r} must be a positive number of bytes")
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin {margin!r} must be in [0, 1)")
    if isinstance(granularity, bool) or not isinstance(granularity, int) or granularity < 1:
        raise ValueError(f"granularity {granularity!r} must be a whole number of at least 1")
    limit = budget_bytes * (1.0 - margin)
    m = fit.m_bytes_per_sample
    if m <= 0:
        return None
    room = (limit - fit.a_bytes) / m
    if room < 0:
        return 0
    b = math.floor(room)
    # floating point: settle the boundary with the model itself
    while fit.predict(b + 1) <= limit:
        b += 1
    while b > 0 and fit.predict(b) > limit:
        b -= 1
    return (b // granularity) * granularity
