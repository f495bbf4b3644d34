"""Peak memory is measured the same way with or without warm-up.

The warm-up's snapshot of the initial weights and optimizer state (kept to restore
them after warm-up) used to land in the peak: a model with ~34 MiB of weights peaked
64 MiB higher with ``--warmup 3`` than with ``--warmup 0``. With ``--memory-limit``
the CPU child's allocator returns freed memory at once (MALLOC_MMAP_THRESHOLD_), so
the peak is exact and the two must agree within a few MiB.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli

BIG = """
import torch
from torch import nn
from torch.utils.data import TensorDataset
import batchscope

def make():
    x = torch.randn(64, 2048, generator=torch.Generator().manual_seed(0))
    return batchscope.Workload(
        name="big",
        model=lambda: nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 2048),
                                    nn.ReLU(), nn.Linear(2048, 1)),
        train_dataset=TensorDataset(x, x[:, :1]),
        loss=nn.MSELoss(),
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-4),
    )
"""

MIB = 1024**2


def _peak(tmp_path: Path, warmup: int) -> dict:
    out = tmp_path / f"w{warmup}.json"
    code, _, err = run_cli(
        "sweep", "big.py:make", "-b", "16", "--steps", "3", "--warmup", str(warmup),
        "--threads", "1", "--memory-limit", "8GiB", "--sample-interval", "0",
        "--no-store", "-q", "--json", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    (trial,) = json.loads(out.read_text())["trials"]
    return trial


def test_warm_up_does_not_change_the_peak(tmp_path: Path) -> None:
    (tmp_path / "big.py").write_text(BIG)
    cold, warm = _peak(tmp_path, 0), _peak(tmp_path, 3)
    for t in (cold, warm):
        assert t["peak_memory_kind"] == "cpu_rss_growth"
        assert t["peak_over_baseline_bytes"] == t["peak_memory_bytes"]
    # weights 34 MiB, gradients 34 MiB, Adam 67 MiB: the peak holds at least the last two
    assert cold["peak_memory_bytes"] > 90 * MIB
    assert abs(warm["peak_memory_bytes"] - cold["peak_memory_bytes"]) < 8 * MIB, (cold, warm)
