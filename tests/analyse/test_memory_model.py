"""The memory model a + m·b: fitted on synthetic data with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from batchscope.analyse.memory_model import MemoryFit, fit_memory_model, predict_max_batch

MiB = 1024**2


def test_exact_line_recovers_a_and_m() -> None:
    sizes = [8, 32, 64, 128]
    peaks = [100 * MiB + 3 * MiB * b for b in sizes]
    fit = fit_memory_model(sizes, peaks)
    assert fit.a_bytes == pytest.approx(100 * MiB)
    assert fit.m_bytes_per_sample == pytest.approx(3 * MiB)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.n == 4
    assert fit.residuals_bytes == pytest.approx([0.0] * 4, abs=1e-3)
    assert fit.m_stderr_bytes == pytest.approx(0.0, abs=1e-6)
    assert fit.predict(256) == pytest.approx(100 * MiB + 768 * MiB)
    assert fit.batch_sizes == sizes


def test_noisy_line_intervals_cover_the_truth_and_match_textbook_formulas() -> None:
    rng = np.random.default_rng(0)
    a_true, m_true = 200 * MiB, 2.5 * MiB
    sizes = np.array([4, 8, 16, 32, 64, 96, 128, 160], dtype=float)
    peaks = a_true + m_true * sizes + rng.normal(0, 4 * MiB, len(sizes))
    fit = fit_memory_model(sizes.tolist(), peaks.tolist())
    # the same numbers from numpy's own least squares
    m_ref, a_ref = np.polyfit(sizes, peaks, 1)
    assert fit.m_bytes_per_sample == pytest.approx(m_ref, rel=1e-9)
    assert fit.a_bytes == pytest.approx(a_ref, rel=1e-9)
    residuals = peaks - (a_ref + m_ref * sizes)
    assert fit.residuals_bytes == pytest.approx(residuals.tolist(), abs=1.0)
    r2 = 1 - np.sum(residuals**2) / np.sum((peaks - peaks.mean()) ** 2)
    assert fit.r2 == pytest.approx(r2)
    # standard errors: the textbook formulas, n - 2 degrees of freedom
    s2 = np.sum(residuals**2) / (len(sizes) - 2)
    sxx = np.sum((sizes - sizes.mean()) ** 2)
    assert fit.m_stderr_bytes == pytest.approx(math.sqrt(s2 / sxx))
    assert fit.a_stderr_bytes == pytest.approx(
        math.sqrt(s2 * (1 / len(sizes) + sizes.mean() ** 2 / sxx))
    )
    assert fit.a_ci95_bytes is not None and fit.m_ci95_bytes is not None
    assert fit.a_ci95_bytes[0] < a_true < fit.a_ci95_bytes[1]
    assert fit.m_ci95_bytes[0] < m_true < fit.m_ci95_bytes[1]
    # t(0.975, 6) = 2.4469: the interval is estimate ± t·se
    half = fit.m_ci95_bytes[1] - fit.m_bytes_per_sample
    assert half == pytest.approx(2.4469 * fit.m_stderr_bytes, rel=1e-3)


def test_two_points_give_a_line_but_no_error_estimate() -> None:
    fit = fit_memory_model([10, 20], [110.0, 210.0])
    assert (fit.a_bytes, fit.m_bytes_per_sample) == pytest.approx((10.0, 10.0))
    assert fit.a_stderr_bytes is None and fit.m_ci95_bytes is None


def test_repeated_sizes_count_as_points() -> None:
    fit = fit_memory_model([10, 10, 20, 20], [100.0, 120.0, 200.0, 220.0])
    assert fit.m_bytes_per_sample == pytest.approx(10.0)
    assert fit.a_bytes == pytest.approx(10.0)
    assert fit.residuals_bytes == pytest.approx([-10.0, 10.0, -10.0, 10.0])


@pytest.mark.parametrize(
    ("sizes", "peaks", "match"),
    [
        ([16], [1.0], "two or more different"),
        ([16, 16, 16], [1.0, 2.0, 3.0], "two or more different"),
        ([16, 32], [1.0], "one peak per size"),
        ([16, 32], [1.0, float("nan")], "finite"),
    ],
)
def test_bad_input_is_refused(sizes: list[int], peaks: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_memory_model(sizes, peaks)


def _line(a: float, m: float) -> MemoryFit:
    return fit_memory_model([1, 2], [a + m, a + 2 * m])


def test_predict_max_batch_is_the_largest_size_under_the_budget() -> None:
    fit = _line(a=1000.0, m=10.0)
    # 1000 + 10·b <= 2000  →  b = 100 exactly (the boundary itself fits)
    assert predict_max_batch(fit, 2000) == 100
    assert predict_max_batch(fit, 1999.99) == 99
    # margin: 20 % headroom → limit 1600 → b = 60
    assert predict_max_batch(fit, 2000, margin=0.2) == 60
    # granularity rounds down to a multiple
    assert predict_max_batch(fit, 2000, granularity=32) == 96
    assert predict_max_batch(fit, 2000, margin=0.2, granularity=8) == 56
    # the answer really is the largest: the next multiple is over the limit
    b = predict_max_batch(fit, 12345.0, margin=0.1, granularity=7)
    assert b is not None and b % 7 == 0
    assert fit.predict(b) <= 12345.0 * 0.9 < fit.predict(b + 7)


def test_predict_max_batch_edges() -> None:
    fit = _line(a=1000.0, m=10.0)
    assert predict_max_batch(fit, 900) == 0  # the fixed part alone is over budget
    assert predict_max_batch(fit, 1005) == 0  # not even one sample
    assert predict_max_batch(fit, 1015, granularity=4) == 0  # 1 fits, 4 does not
    flat = _line(a=1000.0, m=0.0)
    assert predict_max_batch(flat, 2000) is None  # memory does not grow: no limit
    with pytest.raises(ValueError, match="margin"):
        predict_max_batch(fit, 2000, margin=1.0)
    with pytest.raises(ValueError, match="margin"):
        predict_max_batch(fit, 2000, margin=-0.1)
    with pytest.raises(ValueError, match="granularity"):
        predict_max_batch(fit, 2000, granularity=0)
    with pytest.raises(ValueError, match="budget"):
        predict_max_batch(fit, 0)


def test_to_dict_is_plain_json() -> None:
    import json

    fit = fit_memory_model([8, 16, 32], [10.0, 19.0, 41.0])
    data = json.loads(json.dumps(fit.to_dict()))
    assert data["n"] == 3
    assert set(data) >= {"a_bytes", "m_bytes_per_sample", "r2", "residuals_bytes", "n"}
    assert len(data["m_ci95_bytes"]) == 2
