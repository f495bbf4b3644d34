"""Learning-rate scaling across batch sizes, and the warm-up ramp, as the optimizer ran them."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from batchscope.core.plan import Plan, TrialSpec
from batchscope.engine import lr
from batchscope.engine.trial import run_trial
from batchscope.workloads import Workload

BASE_LR = 0.1


@pytest.fixture(autouse=True)
def _threads(restore_torch_threads: None) -> Iterator[None]:
    yield


class _RecordingSGD(torch.optim.SGD):
    """SGD that records the rate each step actually used."""

    used: list[float]

    def step(self, closure=None):  # type: ignore[no-untyped-def, override]
        self.used.append(float(self.param_groups[0]["lr"]))
        return super().step(closure)


def _workload(record: list[float], optimizer: str = "sgd") -> Workload:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=gen)
    y = torch.randn(256, 1, generator=gen)

    def make(params: object) -> torch.optim.Optimizer:
        if optimizer == "adam":
            return torch.optim.Adam(params, lr=BASE_LR)  # type: ignore[arg-type]
        opt = _RecordingSGD(params, lr=BASE_LR)  # type: ignore[arg-type]
        opt.used = record
        return opt

    return Workload(
        name="lin",
        model=lambda: nn.Linear(4, 1),
        train_dataset=TensorDataset(x, y),
        loss=nn.MSELoss(),
        optimizer=make,
    )


def _spec(**kw: object) -> TrialSpec:
    base: dict[str, object] = dict(
        workload="lin",
        workload_options={},
        device="cpu",
        batch_size=64,
        steps=5,
        warmup=0,
        sample_interval_s=0,
    )
    base.update(kw)
    return TrialSpec(**base)  # type: ignore[arg-type]


def test_the_rules() -> None:
    assert lr.scale_factor("linear", 256, 64) == 4
    assert lr.scale_factor("sqrt", 256, 64) == 2
    assert lr.scale_factor("none", 256, 64) == 1
    assert lr.scale_factor("linear", 16, 64) == 0.25
    assert [lr.warmup_factor(i, 4) for i in range(6)] == [0.25, 0.5, 0.75, 1, 1, 1]
    assert lr.warmup_factor(0, 0) == 1


def test_the_optimizer_runs_with_the_linearly_scaled_rate() -> None:
    used: list[float] = []
    r = run_trial(_spec(lr_scaling="linear", base_batch_size=16), _workload(used))
    assert r.status == "ok", r.error
    assert r.lr == pytest.approx(BASE_LR * 4)
    assert r.lr_scaling == "linear" and r.base_batch_size == 16
    assert used == pytest.approx([BASE_LR * 4] * 5)


def test_sqrt_scaling_uses_the_effective_batch_size_and_every_param_group() -> None:
    r = run_trial(
        _spec(batch_size=16, accumulate=4, lr_scaling="sqrt", base_batch_size=16),
        _workload([], optimizer="adam"),
    )
    assert r.status == "ok", r.error
    assert r.lr == pytest.approx(BASE_LR * math.sqrt(4))


def test_the_update_size_follows_the_rate() -> None:
    """Plain SGD: one step moves the weights by lr × gradient, so 4× the rate is 4× the move."""
    moves = []
    for rule in ("none", "linear"):
        torch.manual_seed(0)
        start = nn.Linear(4, 1)
        start_w = start.weight.detach().clone()
        workload = _workload([])
        built: list[nn.Module] = []

        def model(start: nn.Module = start, built: list[nn.Module] = built) -> nn.Module:
            m = nn.Linear(4, 1)
            m.load_state_dict(start.state_dict())
            built.append(m)
            return m

        workload.model = model
        run_trial(_spec(steps=1, lr_scaling=rule, base_batch_size=16), workload)
        moves.append(built[-1].weight.detach() - start_w)
    torch.testing.assert_close(moves[1], 4 * moves[0])


def test_warmup_ramp_and_its_restart_after_the_untimed_warmup() -> None:
    used: list[float] = []
    r = run_trial(
        _spec(warmup=2, lr_scaling="linear", base_batch_size=32, lr_warmup_steps=4),
        _workload(used),
    )
    assert r.status == "ok", r.error
    target = BASE_LR * 2
    ramp = [target * f for f in (0.25, 0.5, 0.75, 1.0, 1.0)]
    # two untimed warm-up steps climb the ramp, then it starts again for the protocol
    assert used == pytest.approx(ramp[:2] + ramp)
    assert r.lr == pytest.approx(target) and r.lr_warmup_steps == 4


def test_plan_default_base_is_the_smallest_effective_batch_size() -> None:
    plan = Plan(workload="w", batch_sizes=[32, 8, 64], accumulate=2, lr_scaling="linear")
    assert plan.base_batch_size == 16
    specs = plan.trials()
    assert {s.base_batch_size for s in specs} == {16}
    assert specs[0].key.endswith("|acc=2|lr=linear@16")
