"""Workloads whose rank 1 fails on purpose, for the data-parallel failure tests.

Each rank writes its PID and process group into ``$BATCHSCOPE_TEST_PID_DIR`` before
anything else, so a test can check afterwards that no rank is left running.
"""

from __future__ import annotations

import os
import signal
import time

import torch
from torch import nn

from batchscope.workloads import Workload, WorkloadOptions, load_workload

#: the per-device batch at which rank 1 fails (other batch sizes train normally)
FAIL_AT = 16


class _Faulty(nn.Module):
    """``nn.Linear(10, 1)`` that fails on rank 1 at a batch of FAIL_AT samples."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.inner = nn.Linear(10, 1)
        self.how = how

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if os.environ.get("RANK") == "1" and x.shape[0] == FAIL_AT:
            if self.how == "oom":
                raise RuntimeError("CPU out of memory: rank 1 could not allocate (a test)")
            if self.how == "hang":
                time.sleep(3600)  # rank 0 waits in the all-reduce: only a timeout ends it
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner(x)


def _record_pid() -> None:
    folder = os.environ.get("BATCHSCOPE_TEST_PID_DIR")
    if folder and "RANK" in os.environ:
        with open(os.path.join(folder, f"rank{os.environ['RANK']}-{os.getpid()}"), "w") as f:
            f.write(f"{os.getpid()} {os.getpgid(0)}\n")


def _faulty(how: str, options: WorkloadOptions) -> Workload:
    _record_pid()
    base = load_workload("linear", options)
    base.model = lambda: _Faulty(how)  # type: ignore[method-assign]
    base.name = f"linear-{how}-on-rank-1"
    return base


def oom_on_rank_1(options: WorkloadOptions) -> Workload:
    return _faulty("oom", options)


def killed_on_rank_1(options: WorkloadOptions) -> Workload:
    return _faulty("kill", options)


def hang_on_rank_1(options: WorkloadOptions) -> Workload:
    return _faulty("hang", options)
