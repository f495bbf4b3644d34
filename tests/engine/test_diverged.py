"""A loss that becomes NaN ends the trial as ``diverged`` with its step; the sweep goes on."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

import batchscope
from batchscope.core.plan import TrialSpec
from batchscope.engine.trial import run_trial


class Explodes(nn.Module):
    """A linear model whose output turns NaN from its 5th forward pass on.

    A trial's first forward pass is its FLOP count's (batchscope.engine.flops: one forward
    and backward before the warm-up, outside every clock), so the 5th pass is the 4th
    the trial trains on."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.lin(x)
        return out * float("nan") if self.calls >= 5 else out


def _workload() -> batchscope.Workload:
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    return batchscope.Workload(
        name="explodes",
        model=Explodes,
        train_dataset=TensorDataset(x, x.sum(dim=1, keepdim=True)),
        loss=nn.MSELoss(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.01),
    )


def _spec(**kw: object) -> TrialSpec:
    return TrialSpec(
        workload="explodes",
        workload_options={},
        device="cpu",
        batch_size=8,
        sample_interval_s=0.0,
        **kw,  # type: ignore[arg-type]
    )


def test_a_nan_loss_is_a_diverged_trial_with_its_step(restore_torch_threads: None) -> None:
    result = run_trial(_spec(steps=10, warmup=2), _workload())
    assert result.status == "diverged" and not result.ok
    # the count: pass 1; warm-up: passes 2-3 (then the model is restored, calls go on);
    # measured step 2 is pass 5
    assert result.diverged_at_step == 2
    assert result.error is not None and "the loss became nan at step 2" in result.error
    assert result.peak_memory_bytes is not None  # what was measured is kept


def test_a_nan_loss_in_warm_up_is_diverged_too(restore_torch_threads: None) -> None:
    result = run_trial(_spec(steps=10, warmup=6), _workload())
    assert result.status == "diverged" and result.diverged_at_step is None
    assert result.error is not None and "warm-up step 4" in result.error  # pass 5


def test_a_nan_loss_in_an_epoch_protocol(restore_torch_threads: None) -> None:
    result = run_trial(_spec(epochs=2, warmup=0), _workload())
    assert result.status == "diverged" and result.diverged_at_step == 4  # pass 5
