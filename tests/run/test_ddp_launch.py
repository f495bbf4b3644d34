"""Data-parallel trials on the CPU: gloo, 2 ranks, one thread each, the linear workload.

Each launch starts real ranks with torch's elastic launcher (a few seconds each on a
small machine), so there are five, all with this process as the launcher's agent (the
place a trial's child process holds in a sweep): the equivalence run (two trials), a
sweep whose rank 1 runs out of memory at one of its two batch sizes, and a killed rank.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest
import torch

from batchscope.core.plan import Plan
from batchscope.run.ddp_launch import run_data_parallel
from batchscope.run.sweep import run_sweep

FAULTS = str(Path(__file__).with_name("ddp_faults.py"))

#: the relative difference allowed between the 2-rank and the 1-rank loss after the
#: same steps: float32 gradients summed in another order (two shard means averaged by
#: the all-reduce against one mean over the whole batch) differ by a few units in the
#: 7th digit per step; a different batch split or a missed all-reduce moves the loss
#: of this model by percents
LOSS_TOLERANCE = 1e-5


def _plan(workload: str, **fields: object) -> Plan:
    base: dict[str, object] = dict(
        workload=workload,
        steps=4,
        warmup=1,
        threads=1,
        sample_interval_s=0.0,
        workload_options={"images": 256},
    )
    base.update(fields)
    return Plan(**base)  # type: ignore[arg-type]


def _ranks_gone(folder: Path) -> list[int]:
    """PIDs the ranks recorded that still run (a zombie has ended)."""
    alive = []
    for path in folder.iterdir():
        pid = int(path.read_text().split()[0])
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_two_ranks_at_b_train_like_one_rank_at_2b_and_record_the_fields() -> None:
    # strong scaling, global batch 16: the 1-rank trial trains b=16, each of 2 ranks b=8
    plan = _plan("linear", batch_sizes=[16], world_sizes=[1, 2], scaling_mode="strong", steps=6)
    run = run_sweep(plan, isolation="none", peak=False)
    one, two = run.trials
    assert (one.status, two.status) == ("ok", "ok"), (one.error, two.error)
    assert (one.world_size, one.batch_size, one.global_batch_size) == (1, 16, 16)
    assert (two.world_size, two.per_device_batch_size, two.global_batch_size) == (2, 8, 16)
    assert two.scaling_mode == "strong" and two.threads == 1
    # the same shuffled samples form each global batch and the gradients are averaged:
    # the same 6 updates, so the same loss after them (any update that differed shows)
    assert one.final_train_loss is not None and two.final_train_loss is not None
    assert two.final_train_loss == pytest.approx(one.final_train_loss, rel=LOSS_TOLERANCE)
    assert two.step_time_s is not None and two.samples_per_s is not None
    assert two.samples_per_s == pytest.approx(16 / two.step_time_s.median)
    assert two.samples_per_s_per_device == pytest.approx(two.samples_per_s / 2)
    assert one.scaling_efficiency == 1.0
    assert one.samples_per_s is not None and two.scaling_efficiency is not None
    assert two.scaling_efficiency == pytest.approx(two.samples_per_s / (2 * one.samples_per_s))
    low, high = two.scaling_efficiency_low, two.scaling_efficiency_high
    assert low is not None and high is not None and low <= two.scaling_efficiency <= high
    # measured or said to be not determined, never silently missing
    assert two.comm_fraction_low is not None
    assert two.comm_fraction is not None or any("comm_fraction" in n for n in two.notes)


def test_a_rank_out_of_memory_ends_its_trial_as_oom_and_the_sweep_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCHSCOPE_TEST_PID_DIR", str(tmp_path))
    plan = _plan(f"{FAULTS}:oom_on_rank_1", batch_sizes=[8, 16], world_sizes=[2], steps=2)
    run = run_sweep(plan, isolation="none", peak=False)
    by_size = {t.batch_size: t for t in run.trials}
    assert by_size[8].status == "ok"
    assert by_size[16].status == "oom"
    assert by_size[16].error is not None and by_size[16].error.startswith("rank 1 of 2:")
    assert "out of memory" in by_size[16].error
    assert len(list(tmp_path.iterdir())) == 4  # two ranks in each of two trials
    assert _ranks_gone(tmp_path) == []


def test_a_killed_rank_ends_the_trial_as_crashed_and_no_rank_survives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCHSCOPE_TEST_PID_DIR", str(tmp_path))
    (spec,) = _plan(f"{FAULTS}:killed_on_rank_1", batch_sizes=[16], world_sizes=[2]).trials()
    trial = run_data_parallel(spec)
    assert trial.status == "crashed"
    assert trial.error == "rank 1 of 2: killed by SIGKILL"
    records = [p.read_text().split() for p in tmp_path.iterdir()]
    assert len(records) == 2
    # the ranks share the launcher's process group, which a trial timeout kills whole
    assert {int(group) for _, group in records} == {os.getpgid(0)}
    assert _ranks_gone(tmp_path) == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_nccl_ranks_one_gpu_each() -> None:
    worlds = [1, 2] if torch.cuda.device_count() >= 2 else [1]
    plan = _plan("linear", batch_sizes=[64], world_sizes=worlds, devices=["cuda:0"])
    run = run_sweep(plan, isolation="process", trial_timeout_s=300, peak=False)
    assert [t.status for t in run.trials] == ["ok"] * len(worlds), [t.error for t in run.trials]
    assert [t.world_size for t in run.trials] == worlds
    assert all(t.device == "cuda:0" for t in run.trials)
