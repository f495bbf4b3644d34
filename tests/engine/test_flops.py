"""The FLOP count of a step (batchscope.engine.flops): exact against hand counts, free of
side effects, and recorded once per trial without touching what the trial measures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from batchscope.core.plan import TrialSpec
from batchscope.core.results import TrialResult
from batchscope.engine.flops import count_step_flops, record_step_flops
from batchscope.engine.trainer import MicroBatches, Trainer
from batchscope.engine.trial import run_trial
from batchscope.workloads import Workload, WorkloadOptions, load_workload


@pytest.fixture(autouse=True)
def _threads(restore_torch_threads: None) -> Iterator[None]:
    yield


def _spec(workload: str = "linear", **fields: Any) -> TrialSpec:
    base: dict[str, Any] = dict(
        workload=workload,
        workload_options={"images": 64},
        device="cpu",
        batch_size=8,
        steps=2,
        warmup=1,
        sample_interval_s=0,
    )
    base.update(fields)
    return TrialSpec(**base)


def _trainer(spec: TrialSpec, workload: Workload | None = None) -> Trainer:
    if workload is None:
        workload = load_workload(spec.workload, WorkloadOptions.from_dict(spec.workload_options))
    return Trainer(spec, workload, torch.device("cpu"))


def linear_flops(b: int, n_in: int, n_out: int, input_grad: bool) -> int:
    """nn.Linear: forward addmm 2·b·in·out; backward mm for the weight's gradient (same),
    and one more for the input's gradient when the input needs one."""
    one = 2 * b * n_in * n_out
    return one * (3 if input_grad else 2)


def conv_flops(b: int, c_in: int, c_out: int, h_out: int, w_out: int, k: int) -> int:
    """A convolution's forward: 2·b·Cout·Hout·Wout·Cin·k·k."""
    return 2 * b * c_out * h_out * w_out * c_in * k * k


@pytest.mark.parametrize("b", [1, 8, 33])
def test_linear_workload_counts_two_matmuls_of_2_b_in_out(b: int) -> None:
    trainer = _trainer(_spec(batch_size=b))
    x = torch.randn(b, 10)
    y = torch.randn(b, 1)
    # forward addmm 2·b·10·1, and the weight's gradient (the data need none): 4·b·in·out
    assert count_step_flops(trainer, (x, y)) == linear_flops(b, 10, 1, input_grad=False)
    assert count_step_flops(trainer, (x, y)) == 4 * b * 10 * 1


def test_simplecnn_counts_its_conv_and_linear_forward_and_backward() -> None:
    b = 4
    trainer = _trainer(_spec("simplecnn", batch_size=b))
    x = torch.randn(b, 3, 32, 32)
    y = torch.randint(0, 10, (b,))
    conv = conv_flops(b, 3, 16, 32, 32, 3)  # padding 1: 32×32 out
    # conv: forward + the weight's gradient (the images need none); fc (16·16·16 → 10):
    # forward + weight gradient + the gradient of its input (the pooled activations)
    expected = 2 * conv + linear_flops(b, 16 * 16 * 16, 10, input_grad=True)
    assert count_step_flops(trainer, (x, y)) == expected == 8_060_928


def test_a_micro_batch_group_sums_its_micro_batches() -> None:
    trainer = _trainer(_spec(batch_size=4, accumulate=3))
    group = MicroBatches([(torch.randn(4, 10), torch.randn(4, 1)) for _ in range(3)])
    assert count_step_flops(trainer, group) == 3 * 4 * 4 * 10


def test_counting_leaves_weights_grads_buffers_and_random_state_untouched() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Dropout(0.5), nn.Linear(5, 1))
    data = TensorDataset(torch.randn(32, 6), torch.randn(32, 1))
    workload = Workload(
        name="bn",
        model=lambda: model,
        train_dataset=data,
        loss=nn.MSELoss(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
    )
    trainer = _trainer(_spec(batch_size=8), workload)
    marker = torch.ones(5, 6)
    trainer.model[0].weight.grad = marker  # an existing gradient stays the same object
    state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    batch = (torch.randn(8, 6), torch.randn(8, 1))
    rng = torch.get_rng_state()
    flops = count_step_flops(trainer, batch)
    assert flops == 2 * 8 * 6 * 5 * 2 + 2 * 8 * 5 * 1 * 3
    after = trainer.model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)  # incl. BN running stats
    assert trainer.model[0].weight.grad is marker and torch.equal(marker, torch.ones(5, 6))
    assert all(p.grad is None for p in list(trainer.model.parameters())[1:])
    assert torch.equal(rng, torch.get_rng_state())
    assert trainer.optimizer_steps == 0


def test_a_step_without_a_counted_op_or_a_failing_one_leaves_a_note() -> None:
    trainer = _trainer(_spec())
    result = TrialResult(device="cpu", batch_size=8)
    trainer.model = nn.Identity()  # MSE of the raw inputs: nothing the counter counts
    record_step_flops(trainer, (torch.randn(8, 1), torch.randn(8, 1)), result)
    assert result.flops_per_step is None and "no matmul" in result.notes[-1]

    def boom(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("unsupported op in the loss")

    trainer.loss_fn = boom
    record_step_flops(trainer, (torch.randn(8, 1), torch.randn(8, 1)), result)
    assert result.flops_per_step is None
    assert "FLOPs not counted (RuntimeError: unsupported op in the loss)" in result.notes[-1]


@pytest.mark.parametrize("warmup", [0, 2])
def test_a_trial_records_its_flops_with_or_without_warmup(warmup: int) -> None:
    result = run_trial(_spec(batch_size=8, warmup=warmup, accumulate=2, steps=2))
    assert result.ok
    assert result.flops_per_step == 2 * 4 * 8 * 10  # two micro-batches of 8
    assert result.flops_per_sample == 4 * 10
    assert not any("FLOPs" in n for n in result.notes)


def test_the_count_changes_nothing_the_trial_trains_or_measures_with_warmup_0() -> None:
    """The same seed trains the same weights with the count as without it (the count
    runs before the measured steps and puts everything back)."""
    import batchscope.engine.flops as flops

    a = run_trial(_spec(batch_size=8, warmup=0, steps=3))
    original = flops.record_step_flops
    try:
        flops.record_step_flops = lambda *args, **kw: None  # type: ignore[assignment]
        b = run_trial(_spec(batch_size=8, warmup=0, steps=3))
    finally:
        flops.record_step_flops = original
    assert a.flops_per_step is not None and b.flops_per_step is None
    assert a.final_train_loss == b.final_train_loss


def test_bytes_moved_counts_operands_of_every_op_but_views() -> None:
    from batchscope.engine.flops import bytes_counter

    a, w = torch.randn(8, 16), torch.randn(4, 16)
    counter = bytes_counter()
    with counter:
        out = torch.mm(a, w.t())  # t() is a view: it moves nothing
    assert counter.total == 4 * (a.numel() + w.numel() + out.numel())


def test_bytes_per_step_grows_linearly_with_the_batch_and_holds_the_optimizer() -> None:
    moved = {}
    for b in (8, 16, 32):
        result = TrialResult(device="cpu", batch_size=b)
        trainer = _trainer(_spec(batch_size=b))
        record_step_flops(trainer, (torch.randn(b, 10), torch.randn(b, 1)), result)
        assert result.bytes_per_step is not None
        moved[b] = result.bytes_per_step
        params = sum(p.numel() * p.element_size() for p in trainer.model.parameters())
        assert moved[b] >= 3 * params + b * 10 * 4  # the optimizer's share and the input
    assert moved[32] - moved[16] == 2 * (moved[16] - moved[8])


@pytest.mark.parametrize("warmup", [0, 1])
def test_a_trial_told_not_to_count_runs_no_counting_pass(warmup: int) -> None:
    """maxbs's attempts (count_flops=False): no FLOPs, no bytes, no note — and the model
    sees exactly the forward passes of its protocol."""
    calls = 0
    workload = load_workload("linear", WorkloadOptions.from_dict({"images": 64}))
    build = workload.model

    def counted_model() -> nn.Module:
        model = build()

        def hook(*_: Any) -> None:
            nonlocal calls
            calls += 1

        model.register_forward_hook(hook)
        return model

    workload.model = counted_model
    result = run_trial(_spec(warmup=warmup, steps=3, count_flops=False), workload)
    assert result.ok and result.flops_per_step is None and result.bytes_per_step is None
    assert not any("FLOPs" in n for n in result.notes)
    assert calls == warmup + 3
