"""How a data-parallel launch's outcome becomes one trial, without launching (fakes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from batchscope.cli.request import build_sweep_request
from batchscope.core.plan import Plan
from batchscope.engine.ddp import merge_ranks
from batchscope.errors import UsageError
from batchscope.run.ddp_launch import failed_trial, rank_spec, rank_threads


@dataclass
class FakeFailure:
    """What torch's ProcessFailure offers that the launcher reads."""

    exitcode: int
    message: Any = ""

    def signal_name(self) -> str:
        return "SIGKILL" if self.exitcode == -9 else "Signals.UNKNOWN"


SPEC = Plan(workload="linear", batch_sizes=[8], world_sizes=[4], steps=3).trials()[0]


@pytest.mark.parametrize(
    ("failure", "status", "error"),
    [
        (
            FakeFailure(1, {"message": "RuntimeError: CUDA out of memory. Tried 2 GiB"}),
            "oom",
            "rank 2 of 4: RuntimeError: CUDA out of memory. Tried 2 GiB",
        ),
        (FakeFailure(-9, "Signal 9 (SIGKILL)"), "crashed", "rank 2 of 4: killed by SIGKILL"),
        (FakeFailure(1, "ValueError: bad"), "crashed", "rank 2 of 4: ValueError: bad"),
        (FakeFailure(1, "UsageError: batch too big"), "error", "rank 2 of 4: UsageError: batch"),
        (FakeFailure(3, ""), "crashed", "rank 2 of 4: exited with status 3"),
    ],
)
def test_the_first_failing_rank_is_named_with_its_status(
    failure: FakeFailure, status: str, error: str
) -> None:
    trial = failed_trial(SPEC, {3: FakeFailure(-15), 2: failure}, first=2)
    assert trial.status == status
    assert trial.error is not None and trial.error.startswith(error)
    assert trial.world_size == 4 and trial.global_batch_size == 32


def test_cpu_ranks_split_the_cores() -> None:
    assert rank_threads(2, cores=16) == 8
    assert rank_threads(4, cores=2) == 1
    assert rank_spec(SPEC).threads == rank_threads(4)
    given = Plan(workload="linear", batch_sizes=[8], world_sizes=[4], threads=3).trials()[0]
    assert rank_spec(given).threads == 3


def test_merge_takes_the_largest_rank_peak_and_global_throughput() -> None:
    from batchscope.core.results import StepStats, TrialResult

    base = TrialResult.from_spec(SPEC, step_time_s=StepStats.from_samples([0.01] * 8))
    ranks = {
        0: {**base.to_dict(), "peak_memory_bytes": 100},
        1: {**base.to_dict(), "peak_memory_bytes": 300},
    }
    merged = merge_ranks(SPEC, ranks)
    assert merged.peak_memory_bytes == 300
    assert merged.samples_per_s == pytest.approx(32 / 0.01)
    assert merged.samples_per_s_per_device == pytest.approx(8 / 0.01)


def test_cli_options_become_plan_fields() -> None:
    request = build_sweep_request(
        {"workload": "linear", "world_sizes": "2,1", "global_batch_sizes": "64", "steps": 3},
        {"workload", "world_sizes", "global_batch_sizes", "steps"},
    )
    assert request.batch_sizes == "64"
    assert request.protocol["world_sizes"] == [1, 2]
    assert request.protocol["scaling_mode"] == "strong"
    assert request.protocol["threads"] is None  # split per rank at launch
    with pytest.raises(UsageError, match="contradict"):
        build_sweep_request(
            {"workload": "linear", "batch_sizes": "8", "global_batch_sizes": "64"},
            {"workload", "batch_sizes", "global_batch_sizes"},
        )


def test_cpu_ranks_sharing_a_machine_are_noted() -> None:
    from batchscope.run.ddp_launch import sharing_notes

    assert sharing_notes(None, ["cpu"], None) == []
    assert sharing_notes([1, 2], ["cuda:0"], None) == []
    (shared,) = sharing_notes([1, 2], ["cpu"], None, cores=2)
    assert "share this machine's cores" in shared
    _, over = sharing_notes([1, 2, 4], ["cpu"], 1, cores=2)
    assert over.startswith("world size 4 × --threads 1 is more than the 2 cores")
