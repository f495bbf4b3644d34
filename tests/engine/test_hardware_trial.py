"""Issue 5 inside a trial: the step-time split, the input-bound diagnosis, the sampler's figures."""

from __future__ import annotations

import io
import time

import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from batchscope.core.plan import TrialSpec
from batchscope.core.results import RunResult
from batchscope.engine.step_summary import PHASES
from batchscope.engine.trial import run_trial
from batchscope.report.timeline import render_hardware_plots, run_timeline_rows
from batchscope.workloads import Workload


class SlowDataset(Dataset):  # type: ignore[type-arg]
    """Each item takes 4 ms to 'load', like a heavy decode or augmentation."""

    def __init__(self, n: int) -> None:
        self.x = torch.randn(n, 8)
        self.y = torch.randn(n, 1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        time.sleep(0.004)
        return self.x[i], self.y[i]


def _workload(dataset: Dataset) -> Workload:  # type: ignore[type-arg]
    return Workload(
        name="tiny",
        model=lambda: nn.Linear(8, 1),
        train_dataset=dataset,
        loss=nn.MSELoss(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.01),
    )


def _spec(**kw: object) -> TrialSpec:
    base = dict(
        workload="tiny",
        workload_options={},
        device="cpu",
        batch_size=8,
        steps=6,
        warmup=1,
        threads=1,
    )
    base.update(kw)
    return TrialSpec(**base)  # type: ignore[arg-type]


def test_slow_dataset_is_diagnosed_input_bound() -> None:
    slow = run_trial(_spec(), _workload(SlowDataset(64)))
    assert slow.time_split["data_wait"] > 0.5
    assert any(d.startswith("input-bound") and "--workers" in d for d in slow.diagnosis)
    fast = run_trial(_spec(), _workload(TensorDataset(torch.randn(64, 8), torch.randn(64, 1))))
    assert fast.time_split["data_wait"] < slow.time_split["data_wait"]


def test_breakdown_splits_the_step_into_phases_that_add_up() -> None:
    result = run_trial(
        _spec(workload="simplecnn", batch_size=32, steps=5, breakdown=True, threads=None), None
    )
    assert set(result.time_split) == {"data_wait", *PHASES}
    assert sum(result.time_split.values()) == pytest.approx(1.0, abs=0.02)
    assert result.time_split["backward"] > 0 and result.time_split["forward"] > 0
    mean_step = sum(result.step_times_s) / len(result.step_times_s)
    assert sum(result.time_split_s.values()) == pytest.approx(mean_step, rel=0.05)


def test_without_breakdown_the_split_is_wait_and_compute() -> None:
    result = run_trial(_spec(workload="simplecnn", batch_size=32, steps=3, threads=None))
    assert set(result.time_split) == {"data_wait", "compute"}
    assert sum(result.time_split.values()) == pytest.approx(1.0)
    assert result.diagnosis == []  # a conv net on in-memory tensors is compute-bound


def test_sampler_records_utilisation_and_a_timeline() -> None:
    result = run_trial(
        _spec(workload="simplecnn", batch_size=64, steps=15, threads=None, sample_interval_s=0.05)
    )
    util = result.utilization["cpu_process_percent_mean"]
    assert util is not None and util > 20  # training keeps at least part of a core busy
    assert result.timeline and result.timeline_start_unix is not None
    assert result.timeline[-1]["t_s"] > result.timeline[0]["t_s"]
    assert result.hardware["n_samples"] >= 2
    # the sampler reports its own cost: some CPU, far less than the core it watches
    assert result.sampler_cpu_fraction is not None and 0 < result.sampler_cpu_fraction < 0.5
    if result.energy_j is None:  # no RAPL/NVML here: said, not guessed
        assert result.hardware["unavailable"]
    else:
        assert result.energy_per_sample_j == pytest.approx(result.energy_j / result.samples_trained)


def test_sampler_off() -> None:
    result = run_trial(_spec(workload="simplecnn", steps=2, threads=None, sample_interval_s=0))
    assert result.timeline == [] and result.hardware == {} and result.energy_j is None
    assert result.sampler_cpu_fraction is None


def test_hardware_plots_for_a_run() -> None:
    trials = [
        run_trial(
            _spec(workload="simplecnn", batch_size=b, steps=4, threads=None, sample_interval_s=0.05)
        )
        for b in (16, 64)
    ]
    run = RunResult(
        run_id="r",
        created="now",
        workload={"name": "simplecnn"},
        settings={},
        environment={},
        trials=trials,
    )
    rows, marks = run_timeline_rows(run)
    assert [label for _, label in marks] == ["bs=16", "bs=64"]
    assert marks[1][0] > marks[0][0]
    assert any(r.get("t_s") is None for r in rows)  # the gap between trials
    plots = render_hardware_plots(run)
    assert set(plots) == {"timeline.png", "step_split.png"}
    for png in plots.values():
        with Image.open(io.BytesIO(png)) as img:
            assert img.format == "PNG" and img.size[0] > 500
