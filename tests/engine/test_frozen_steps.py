"""Frozen-body steps (fine_tune's first phase) are not the batch size's step time."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from batchscope.core.plan import TrialSpec
from batchscope.core.results import TrialResult
from batchscope.engine.step_summary import unfrozen_steps
from batchscope.engine.trial import run_trial
from batchscope.integrations.callback_clock import CallbackClock
from batchscope.workloads import Workload


def test_only_unfrozen_steps_less_their_warm_up_are_kept() -> None:
    assert unfrozen_steps([False] * 5, warmup=2) is None  # one kind only: all steps
    assert unfrozen_steps([True] * 5, warmup=2) is None
    keep, n_frozen, rewarm = unfrozen_steps([True] * 3 + [False] * 5, warmup=2)  # type: ignore[misc]
    assert (keep, n_frozen, rewarm) == ([5, 6, 7], 3, 2)
    # never fewer than one step: a protocol with one unfrozen step keeps it
    assert unfrozen_steps([True, True, False], warmup=3) == ([2], 2, 0)


def test_callback_clock_keeps_the_unfrozen_steps() -> None:
    clock = CallbackClock(batch_size=4, warmup=1, sync=lambda: None)
    clock.resume()
    for frozen in [True] * 4 + [False] * 4:
        clock.frozen = frozen
        clock.batch_begin()
        clock.batch_end(4)
    clock.batch_begin()
    clock.batch_end(2)  # a partial batch: trained, not a step of this size
    result = TrialResult(device="cpu", batch_size=4)
    clock.summarise(result)
    # 8 full steps: the first is warm-up, 3 frozen remain and go; the unfrozen 4 less 1
    assert result.measured_steps == 3 and len(result.step_times_s) == 3
    assert result.samples_trained == 8 * 4 + 2
    assert any("3 frozen-body steps" in n and "less the first 1" in n for n in result.notes)


def test_engine_freeze_epochs_step_statistics_are_the_unfrozen_steps() -> None:
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(
        torch.randn(64, 8, generator=gen), torch.randint(0, 2, (64,), generator=gen)
    )
    model = lambda: nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))  # noqa: E731
    workload = Workload(
        name="tiny",
        model=model,
        train_dataset=data,
        val_dataset=None,
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
        head=lambda m: m[2],
    )
    spec = TrialSpec(
        workload="tiny",
        workload_options={},
        device="cpu",
        batch_size=16,
        epochs=1,
        freeze_epochs=1,
        warmup=1,
        sample_interval_s=0,
    )
    result = run_trial(spec, workload)
    # 4 frozen + 4 unfrozen steps; the engine's warm-up ran before the protocol, and
    # the first unfrozen step is warm-up again
    assert result.measured_steps == 3
    assert any("4 frozen-body steps" in n for n in result.notes)
