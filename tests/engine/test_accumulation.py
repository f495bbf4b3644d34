"""Gradient accumulation: K micro-batches per optimizer step give the large-batch update
(without batch normalisation), and a timed step is the whole optimizer step."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from batchscope.core.plan import TrialSpec
from batchscope.engine.trial import run_trial
from batchscope.workloads import Workload

N = 200  # not a multiple of 64: the last accumulated step of an epoch is partial


@pytest.fixture(autouse=True)
def _threads(restore_torch_threads: None) -> Iterator[None]:
    yield


def _workload(batchnorm: bool) -> tuple[Workload, list[nn.Module]]:
    built: list[nn.Module] = []
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(N, 6, generator=gen)
    y = torch.randn(N, 1, generator=gen)

    def model() -> nn.Module:
        layers: list[nn.Module] = [nn.Linear(6, 8)]
        if batchnorm:
            layers.append(nn.BatchNorm1d(8))
        layers += [nn.Tanh(), nn.Linear(8, 1)]
        m = nn.Sequential(*layers)
        built.append(m)
        return m

    workload = Workload(
        name="mlp",
        model=model,
        train_dataset=TensorDataset(x, y),
        loss=nn.MSELoss(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.5),
    )
    return workload, built


def _after_one_step(batch_size: int, accumulate: int, batchnorm: bool) -> tuple[list, object]:
    workload, built = _workload(batchnorm)
    spec = TrialSpec(
        workload="mlp",
        workload_options={},
        device="cpu",
        batch_size=batch_size,
        accumulate=accumulate,
        steps=1,
        warmup=0,
        seed=3,
        sample_interval_s=0,
    )
    result = run_trial(spec, workload)
    assert result.status == "ok", result.error
    return [p.detach().clone() for p in built[-1].parameters()], result


def test_accumulated_update_equals_the_large_batch_update_without_batchnorm() -> None:
    big, r_big = _after_one_step(64, 1, batchnorm=False)
    acc, r_acc = _after_one_step(16, 4, batchnorm=False)
    start = [p.detach() for p in _workload(False)[0].model().parameters()]
    # the step moved the weights (else equality would prove nothing) ...
    assert max(float((a - s).abs().max()) for a, s in zip(acc, start, strict=True)) > 1e-3
    # ... and moved them exactly as the single batch of 64 did
    for a, b in zip(acc, big, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert r_acc.final_train_loss == pytest.approx(r_big.final_train_loss, rel=1e-5)


def test_with_batchnorm_they_differ_and_the_trial_says_so() -> None:
    big, _ = _after_one_step(64, 1, batchnorm=True)
    acc, r_acc = _after_one_step(16, 4, batchnorm=True)
    diff = max(float((a - b).abs().max()) for a, b in zip(acc, big, strict=True))
    assert diff > 1e-4
    assert any("batch normalisation" in n for n in r_acc.notes)
    _, r_plain = _after_one_step(64, 1, batchnorm=True)
    assert not any("batch normalisation" in n for n in r_plain.notes)


def test_a_step_is_one_optimizer_step_of_k_micro_batches() -> None:
    workload, _ = _workload(False)
    calls = {"n": 0}
    inner = workload.optimizer

    def counting(params: object) -> torch.optim.Optimizer:
        opt = inner(params)  # type: ignore[arg-type]
        original = opt.step

        def step(*a: object, **k: object) -> object:
            calls["n"] += 1
            return original(*a, **k)

        opt.step = step  # type: ignore[method-assign]
        return opt

    workload.optimizer = counting
    spec = TrialSpec(
        workload="mlp",
        workload_options={},
        device="cpu",
        batch_size=16,
        accumulate=4,
        epochs=1,
        warmup=2,
        sample_interval_s=0,
    )
    r = run_trial(spec, workload)
    assert r.status == "ok", r.error
    micro = math.ceil(N / 16)  # 13 micro-batches: 3 full groups of 4 and one of 1
    assert r.steps_per_epoch == math.ceil(micro / 4) == 4
    assert calls["n"] == 2 + 4  # warm-up counts optimizer steps too
    assert r.effective_batch_size == 64 and r.accumulate == 4
    assert r.samples_trained == N
    assert r.step_time_s is not None and r.step_time_s.n == 3  # only full 64-sample steps
    assert r.samples_per_s == pytest.approx(64 / r.step_time_s.median)
    assert r.time_per_sample_s == pytest.approx(r.step_time_s.median / 64)
