"""The measured training loop of one trial, run in this process.

Times are never compared with absolute values; where a test needs a slow step it
sleeps inside the data set, which makes a lower bound certain, not a guess.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from batchscope.core.plan import TrialSpec
from batchscope.core.results import StepStats
from batchscope.engine.trial import run_trial, set_frozen
from batchscope.errors import UsageError
from batchscope.run.isolation import run_in_process
from batchscope.workloads import Workload

N_LINEAR = 100  # linear workload with 100 training samples (and 20 validation)


def spec(**fields: Any) -> TrialSpec:
    base: dict[str, Any] = dict(
        workload="linear",
        workload_options={"images": N_LINEAR},
        device="cpu",
        batch_size=16,
        steps=3,
        warmup=1,
    )
    base.update(fields)
    return TrialSpec(**base)


def tiny_workload(dataset: Dataset[Any], model: Any = None, **fields: Any) -> Workload:
    return Workload(
        name="tiny",
        model=model or (lambda: nn.Linear(10, 1)),
        train_dataset=dataset,
        loss=nn.MSELoss(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.01),
        **fields,
    )


# --------------------------------------------------------------------------- a --steps trial


@pytest.fixture(scope="module")
def steps_trial():
    """One ordinary steps trial, shared by the tests that only read it."""
    import torch as _torch

    before = _torch.get_num_threads()
    try:
        result = run_trial(spec(batch_size=16, steps=4, warmup=2, seed=7, threads=1))
        threads_after = _torch.get_num_threads()
    finally:
        _torch.set_num_threads(before)
    return result, threads_after


def test_warmup_steps_are_not_counted(steps_trial) -> None:
    result, _ = steps_trial
    assert result.status == "ok"
    assert result.warmup_steps == 2
    assert result.measured_steps == 4
    assert len(result.step_times_s) == 4
    assert result.step_time_s is not None and result.step_time_s.n == 4
    assert result.data_wait_s is not None and result.data_wait_s.n == 4


def test_step_statistics_are_consistent(steps_trial) -> None:
    result, _ = steps_trial
    stats = result.step_time_s
    assert stats == StepStats.from_samples(result.step_times_s)
    assert 0 < stats.min <= stats.median <= stats.max
    assert stats.min <= stats.mean <= stats.max
    assert stats.iqr >= 0 and stats.stdev >= 0
    assert result.samples_per_s == pytest.approx(16 / stats.median)
    assert result.time_per_sample_s == pytest.approx(stats.median / 16)
    # the data wait is part of each step's time
    assert 0.0 <= result.data_wait_fraction <= 1.0
    assert result.data_wait_s.max <= stats.max
    # the protocol's wall time holds every measured step
    assert result.total_time_s >= math.fsum(result.step_times_s)


def test_seed_threads_and_protocol_are_recorded(steps_trial) -> None:
    result, threads_after = steps_trial
    assert result.seed == 7
    assert result.threads == 1 == threads_after  # what torch.get_num_threads said after set
    assert result.samples_per_epoch == N_LINEAR
    assert result.steps_per_epoch == 7  # ceil(100 / 16)
    assert result.final_train_loss is not None and math.isfinite(result.final_train_loss)
    assert result.setup_time_s is not None and result.setup_time_s > 0
    assert result.peak_rss_bytes and result.peak_rss_bytes > 0
    assert result.peak_memory_bytes is not None and result.peak_memory_bytes >= 0


def test_threads_recorded_equal_torch_setting(restore_torch_threads) -> None:
    wanted = 2 if torch.get_num_threads() == 1 else 1
    result = run_trial(spec(steps=1, warmup=0, threads=wanted))
    assert result.threads == wanted == torch.get_num_threads()


def test_progress_events() -> None:
    events: list[tuple[str, dict]] = []
    run_trial(spec(steps=2, warmup=1), progress=lambda e, p: events.append((e, p)))
    kinds = [e for e, _ in events]
    assert kinds[0] == "setup" and kinds[-1] == "done"
    assert ("warmup", {"done": 1, "total": 1}) in events
    assert ("step", {"done": 2, "total": 2}) in events


# --------------------------------------------------------------------------- warm-up restores


def test_warmup_does_not_change_the_training() -> None:
    cold = run_trial(spec(steps=5, warmup=0, seed=3))
    warm = run_trial(spec(steps=5, warmup=3, seed=3))
    other_seed = run_trial(spec(steps=5, warmup=0, seed=4))
    assert warm.final_train_loss == pytest.approx(cold.final_train_loss, rel=1e-6, abs=1e-9)
    # the comparison can tell trainings apart
    assert other_seed.final_train_loss != pytest.approx(cold.final_train_loss, rel=1e-6)


def test_warmup_does_not_change_an_epoch_protocol() -> None:
    cold = run_trial(spec(batch_size=32, epochs=2, steps=None, warmup=0))
    warm = run_trial(spec(batch_size=32, epochs=2, steps=None, warmup=3))
    assert [e.train_loss for e in warm.epochs] == pytest.approx(
        [e.train_loss for e in cold.epochs], rel=1e-6
    )
    assert [e.val_loss for e in warm.epochs] == pytest.approx(
        [e.val_loss for e in cold.epochs], rel=1e-6
    )


# --------------------------------------------------------------------------- data wait


class SlowDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Each item takes at least ``delay_s`` to fetch, like a slow disk."""

    def __init__(self, n: int, delay_s: float) -> None:
        self.x = torch.randn(n, 10)
        self.y = torch.randn(n, 1)
        self.delay_s = delay_s

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        time.sleep(self.delay_s)
        return self.x[i], self.y[i]


def test_data_wait_is_measured_apart_from_compute() -> None:
    delay, batch = 0.005, 8
    slow = run_trial(
        spec(batch_size=batch, steps=4, warmup=1), tiny_workload(SlowDataset(64, delay))
    )
    fast = run_trial(
        spec(batch_size=batch, steps=4, warmup=1),
        tiny_workload(TensorDataset(torch.randn(64, 10), torch.randn(64, 1))),
    )
    # every measured step waited at least batch * delay for its data
    assert slow.data_wait_s.min >= batch * delay
    assert slow.step_time_s.min >= slow.data_wait_s.min
    assert slow.data_wait_fraction > 0.5
    assert fast.data_wait_fraction < slow.data_wait_fraction
    assert fast.data_wait_s.median < slow.data_wait_s.median


# --------------------------------------------------------------------------- epochs and drop_last


@pytest.mark.parametrize(
    ("drop_last", "samples", "steps_per_epoch"), [(False, 100, 4), (True, 96, 3)]
)
def test_samples_per_epoch_and_partial_batch_excluded(
    drop_last: bool, samples: int, steps_per_epoch: int
) -> None:
    result = run_trial(spec(batch_size=32, epochs=2, steps=None, warmup=0, drop_last=drop_last))
    assert result.drop_last is drop_last
    assert result.samples_per_epoch == samples
    assert result.steps_per_epoch == steps_per_epoch
    assert [e.samples for e in result.epochs] == [samples, samples]
    # only the 3 full batches of 32 of each epoch are steps of this batch size
    assert result.step_time_s.n == 3 * 2 == result.measured_steps
    assert len(result.step_times_s) == 6
    assert len(result.epoch_time_s) == 2
    assert result.final_train_loss == result.epochs[-1].train_loss


@pytest.mark.parametrize("drop_last", [False, True])
def test_samples_per_epoch_in_steps_mode(drop_last: bool) -> None:
    result = run_trial(spec(batch_size=32, steps=5, warmup=0, drop_last=drop_last))
    assert result.samples_per_epoch == (96 if drop_last else 100)
    assert result.steps_per_epoch == (3 if drop_last else 4)
    # 5 full steps measured even though every 4th batch is partial without drop_last
    assert result.measured_steps == 5 == result.step_time_s.n


def test_epochs_record_validation_loss_and_accuracy_on_digits() -> None:
    result = run_trial(
        spec(workload="digits", workload_options={}, batch_size=128, epochs=2, steps=None)
    )
    assert result.status == "ok"
    assert [e.epoch for e in result.epochs] == [1, 2]
    assert [e.frozen for e in result.epochs] == [False, False]
    assert [e.samples for e in result.epochs] == [1438, 1438]
    for epoch in result.epochs:
        assert epoch.val_loss is not None and math.isfinite(epoch.val_loss)
        assert set(epoch.metrics) == {"accuracy", "error_rate"}
        assert 0.0 <= epoch.metrics["accuracy"] <= 1.0
        assert epoch.metrics["accuracy"] + epoch.metrics["error_rate"] == pytest.approx(1.0)
    # it learns real digits: far above the 10 % of chance, and validation loss falls
    assert result.epochs[1].metrics["accuracy"] > 0.3
    assert result.epochs[1].val_loss < result.epochs[0].val_loss
    assert result.step_time_s.n == 11 * 2  # 1438 = 11 × 128 + 30


def test_batch_larger_than_the_data_set() -> None:
    # drop_last: an epoch has no step at all -> a user error, and an 'error' trial
    with pytest.raises(UsageError, match="128"):
        run_trial(spec(batch_size=128, drop_last=True))
    failed = run_in_process(spec(batch_size=128, drop_last=True))
    assert failed.status == "error"
    assert "128" in failed.error and str(N_LINEAR) in failed.error
    assert failed.step_time_s is None
    # --steps without drop_last: no full batch ever comes, so no step can be timed
    with pytest.raises(UsageError, match="128"):
        run_trial(spec(batch_size=128, steps=2, warmup=0))


def test_epochs_with_only_partial_batches_train_but_have_no_step_stats() -> None:
    result = run_trial(spec(batch_size=128, epochs=1, steps=None, warmup=0))
    assert result.status == "ok"
    assert result.epochs[0].samples == N_LINEAR
    assert result.measured_steps == 0
    assert result.step_time_s is None and result.samples_per_s is None
    assert any("partial" in note for note in result.notes)


# --------------------------------------------------------------------------- freezing


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(10, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.mid = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.mid(self.body(x))))


TRAINABLE_WHEN_FROZEN = {
    "body.1.weight",
    "body.1.bias",
    "norm.weight",
    "norm.bias",
    "head.weight",
    "head.bias",
}


def test_set_frozen_keeps_head_and_normalisation_trainable() -> None:
    net = Net()
    trainable = set_frozen(net, net.head, True)
    flags = {name: p.requires_grad for name, p in net.named_parameters()}
    assert {n for n, f in flags.items() if f} == TRAINABLE_WHEN_FROZEN
    assert trainable == sum(p.numel() for n, p in net.named_parameters() if n in flags and flags[n])
    total = set_frozen(net, net.head, False)
    assert all(p.requires_grad for p in net.parameters())
    assert total == sum(p.numel() for p in net.parameters())


class Recorder:
    """A model factory that keeps the model it built and its initial weights."""

    def __init__(self) -> None:
        self.model: Net | None = None
        self.initial: dict[str, torch.Tensor] = {}

    def __call__(self) -> Net:
        self.model = Net()
        self.initial = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        return self.model

    def changed(self) -> set[str]:
        assert self.model is not None
        return {n for n, p in self.model.named_parameters() if not torch.equal(p, self.initial[n])}


def _freeze_data() -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(64, 10, generator=gen), torch.randn(64, 1, generator=gen))


@pytest.mark.parametrize("explicit_head", [True, False])
def test_frozen_epoch_trains_only_head_and_normalisation(explicit_head: bool) -> None:
    recorder = Recorder()
    head = (lambda m: m.head) if explicit_head else None  # default: last child with parameters
    workload = tiny_workload(_freeze_data(), model=recorder, head=head)
    result = run_trial(
        spec(batch_size=16, epochs=0, freeze_epochs=1, steps=None, warmup=2), workload
    )
    assert [e.frozen for e in result.epochs] == [True]
    assert recorder.changed() == TRAINABLE_WHEN_FROZEN  # the warm-up's changes were undone
    # the engine unfreezes the model when the protocol ends
    assert all(p.requires_grad for p in recorder.model.parameters())


def test_unfrozen_epochs_after_a_frozen_one_train_everything() -> None:
    recorder = Recorder()
    workload = tiny_workload(_freeze_data(), model=recorder)
    result = run_trial(
        spec(batch_size=16, epochs=1, freeze_epochs=1, steps=None, warmup=0), workload
    )
    assert [(e.epoch, e.frozen) for e in result.epochs] == [(1, True), (2, False)]
    # (body.0.bias may stay put: the BatchNorm right after it cancels its gradient)
    body = {"body.0.weight", "mid.weight", "mid.bias"}
    assert recorder.changed() >= body | TRAINABLE_WHEN_FROZEN
