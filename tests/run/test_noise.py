"""The gradient noise scale against closed form, E(b), and goodput arithmetic.

Validation (the issue's requirement): linear regression on Gaussian data, where the
gradient's mean and covariance are known exactly at a fixed weight vector. For
``y = x·w* + ε``, ``x ~ N(0, I_d)``, ``ε ~ N(0, σ²)`` and the loss ``½(x·w − y)²``, the
per-sample gradient is ``g = x(x·Δ − ε)`` with ``Δ = w − w*``, so ``G = E[g] = Δ`` and
``E[g gᵀ] = 2ΔΔᵀ + |Δ|² I + σ² I`` (Isserlis). Hence ``tr(Σ) = (d + 1)|Δ|² + dσ²``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from batchscope.core.results import RunResult, StepStats, TrialResult
from batchscope.errors import UsageError
from batchscope.run.noise_run import (
    NoiseEstimate,
    best_goodput,
    bootstrap_interval,
    efficiency_table,
    estimate_noise_scale,
    goodput,
    ratio_of_means,
    statistical_efficiency,
    unbiased_terms,
)
from batchscope.workloads import Workload

D = 10
SIGMA = 1.0
DELTA_NORM = 1.0


def true_values() -> tuple[float, float]:
    """(|G|², tr Σ) in closed form."""
    return DELTA_NORM**2, (D + 1) * DELTA_NORM**2 + D * SIGMA**2


def gaussian_workload(n: int, seed: int = 0) -> Workload:
    """Linear regression at a fixed w = w* + Δ (SGD with lr 0: every step sees the same w)."""
    gen = torch.Generator().manual_seed(seed)
    w_star = torch.randn(D, generator=gen)
    delta = torch.randn(D, generator=gen)
    delta *= DELTA_NORM / delta.norm()
    x = torch.randn(n, D, generator=gen)
    y = x @ w_star + SIGMA * torch.randn(n, generator=gen)
    w = w_star + delta

    def model() -> nn.Module:
        m = nn.Linear(D, 1, bias=False)
        with torch.no_grad():
            m.weight.copy_(w.unsqueeze(0))
        return m

    return Workload(
        name="gauss",
        model=model,
        train_dataset=TensorDataset(x, y.unsqueeze(1)),
        loss=lambda out, target: 0.5 * ((out - target) ** 2).mean(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.0),
    )


def test_closed_form_matches_monte_carlo() -> None:
    """The derivation itself: per-sample gradients of 400k samples."""
    gen = torch.Generator().manual_seed(1)
    n = 400_000
    delta = torch.randn(D, generator=gen, dtype=torch.float64)
    delta *= DELTA_NORM / delta.norm()
    x = torch.randn(n, D, generator=gen, dtype=torch.float64)
    eps = SIGMA * torch.randn(n, generator=gen, dtype=torch.float64)
    g = x * (x @ delta - eps).unsqueeze(1)
    mean = g.mean(0)
    trace = float(((g - mean) ** 2).sum(1).mean())
    grad_sq, trace_true = true_values()
    assert float((mean - delta).norm()) < 0.03
    assert trace == pytest.approx(trace_true, rel=0.02)
    assert float(mean.pow(2).sum()) == pytest.approx(grad_sq, rel=0.05)


def test_estimate_covers_the_true_noise_scale() -> None:
    batch, k, steps = 128, 8, 200
    est = estimate_noise_scale(
        gaussian_workload(batch * steps),
        batch_size=batch,
        micro_batches=k,
        steps=steps,
        every=50,
        seed=0,
        threads=1,
    )
    grad_sq, trace = true_values()
    b_true = trace / grad_sq  # 21
    assert est.low <= b_true <= est.high, (est.b_noise, est.low, est.high)
    assert est.high - est.low < 0.25 * b_true  # informative, not just wide
    assert est.grad_sq == pytest.approx(grad_sq, rel=0.1)
    assert est.trace_sigma == pytest.approx(trace, rel=0.05)
    assert [p.step for p in est.points] == [50, 100, 150, 200]
    assert all(p.low <= p.b_simple <= p.high for p in est.points)
    assert est.micro_batch_size == 16 and est.steps == steps
    data = est.to_dict()
    assert data["b_noise"] == est.b_noise and data["interval"].startswith("95 %")


def test_unbiased_terms_without_noise() -> None:
    """Identical micro-batch gradients: |G|² is their norm and tr Σ is zero."""
    assert unbiased_terms(4.0, 4.0, 64, 8) == (pytest.approx(4.0), pytest.approx(0.0))
    # noise only (G = 0): E|G_b|² = tr Σ / b, E|G_B|² = tr Σ / B
    grad_sq, trace = unbiased_terms(10.0 / 64, 10.0 / 8, 64, 8)
    assert grad_sq == pytest.approx(0.0, abs=1e-12) and trace == pytest.approx(10.0)
    with pytest.raises(ValueError):
        unbiased_terms(1.0, 1.0, 8, 8)


def test_signal_below_noise_is_infinite_not_nan() -> None:
    grad_sq = [-0.1, 0.05, -0.2, 0.01]
    trace = [5.0, 6.0, 5.5, 4.0]
    assert ratio_of_means(grad_sq, trace) == math.inf
    low, high = bootstrap_interval(grad_sq, trace, seed=3)
    assert high == math.inf and not math.isnan(low)


def test_statistical_efficiency() -> None:
    assert statistical_efficiency(100.0, 16, 16) == 1.0
    assert statistical_efficiency(100.0, 256, 16) == pytest.approx(116 / 356)
    assert statistical_efficiency(math.inf, 1024, 16) == 1.0
    assert statistical_efficiency(0.0, 64, 16) == pytest.approx(0.25)  # pure signal: 1/4 per sample


def _noise(b_noise: float, low: float, high: float, workload: str = "linear") -> NoiseEstimate:
    return NoiseEstimate(
        workload=workload,
        device="cpu",
        batch_size=64,
        micro_batches=4,
        steps=10,
        every=5,
        seed=0,
        b_noise=b_noise,
        low=low,
        high=high,
        grad_sq=1.0,
        trace_sigma=b_noise,
    )


def _run(step_times: dict[int, float], workload: str = "linear") -> RunResult:
    trials = [
        TrialResult(
            device="cpu",
            batch_size=b,
            step_time_s=StepStats.from_samples([t, t, t]),
            samples_per_s=b / t,
        )
        for b, t in step_times.items()
    ]
    return RunResult(
        run_id="r1",
        created="now",
        workload={"name": workload, "spec": workload},
        settings={},
        environment={},
        trials=trials,
    )


def test_goodput_arithmetic_and_choice() -> None:
    # throughput 1,000 / 3,000 / 4,000 samples/s at b = 16 / 64 / 256
    run = _run({16: 0.016, 64: 64 / 3000, 256: 0.064})
    rows = goodput(_noise(48.0, 32.0, 80.0), run)
    assert [r.batch_size for r in rows] == [16, 64, 256]
    by_b = {r.batch_size: r for r in rows}
    assert by_b[16].efficiency == 1.0 and by_b[16].goodput == pytest.approx(1000)
    assert by_b[64].efficiency == pytest.approx(64 / 112)
    assert by_b[64].goodput == pytest.approx(3000 * 64 / 112)
    assert by_b[256].goodput == pytest.approx(4000 * 64 / 304)
    assert by_b[256].goodput_low < by_b[256].goodput < by_b[256].goodput_high
    (choice,) = best_goodput(_noise(48.0, 32.0, 80.0), rows)
    assert choice.batch_size == 64 and choice.fastest_batch_size == 256
    assert "b=256" in choice.reason and "goodput" in choice.reason
    # a huge noise scale: every sample counts, the fastest is also the goodput-optimal
    (big,) = best_goodput(_noise(1e6, 1e5, 1e7), goodput(_noise(1e6, 1e5, 1e7), run))
    assert big.batch_size == 256 and "also the fastest" in big.reason


def test_goodput_keeps_variants_apart() -> None:
    """fp32 160 samples/s, bf16 80, acc=4 (effective 64) 213: three series, never pooled."""

    def t(precision: str, accumulate: int, per_step: float) -> TrialResult:
        return TrialResult(
            device="cpu",
            batch_size=16,
            precision=precision,
            accumulate=accumulate,
            effective_batch_size=16 * accumulate,
            step_time_s=StepStats.from_samples([per_step] * 3),
            samples_per_s=16 * accumulate / per_step,
        )

    run = _run({})
    run.trials = [t("fp32", 1, 16 / 160), t("bf16", 1, 16 / 80), t("fp32", 4, 64 / 213)]
    rows = goodput(_noise(48.0, 32.0, 80.0), run)
    by_series = {(r.device, r.batch_size): r.samples_per_s for r in rows}
    assert by_series == pytest.approx(
        {("cpu", 16): 160.0, ("cpu bf16", 16): 80.0, ("cpu acc=4", 64): 213.0}
    )


def test_goodput_refuses_another_workload() -> None:
    with pytest.raises(UsageError, match="same workload"):
        goodput(_noise(10.0, 5.0, 20.0, workload="digits"), _run({16: 0.01}))


def test_efficiency_table() -> None:
    rows = efficiency_table(_noise(48.0, 32.0, 80.0), [64, 16])
    assert [r["batch_size"] for r in rows] == [16, 64]
    assert rows[1]["efficiency_low"] < rows[1]["efficiency"] < rows[1]["efficiency_high"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"micro_batches": 1}, "at least 2"),
        ({"batch_size": 30, "micro_batches": 8}, "equal parts"),
        ({"steps": 10, "every": 11}, "--every"),
        ({"steps": 1}, "at least 2"),
        ({"batch_size": 4096}, "larger than"),
    ],
)
def test_bad_settings(kwargs: dict, match: str) -> None:
    args = {"batch_size": 64, "micro_batches": 4, "steps": 10, "every": 5, **kwargs}
    with pytest.raises(UsageError, match=match):
        estimate_noise_scale(gaussian_workload(256), **args)
