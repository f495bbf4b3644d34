"""Faults a user meets: Ctrl-C while the workload loads, more threads than cores, a loss
that turns NaN — each said in one line, nothing measured lost, valid JSON."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import cli_env, run_cli

SLOW_LOAD = """\
import pathlib, time
HERE = pathlib.Path(__file__).parent

def make():
    (HERE / "loading").write_text("yes")
    while True:
        time.sleep(0.05)
"""

NAN_LOSS = """\
import torch
from torch import nn
from torch.utils.data import TensorDataset
import batchscope


class Explodes(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, x):
        out = self.lin(x)
        return out * float("nan") if x.shape[0] == 16 else out


def make():
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    return batchscope.Workload(
        name="explodes",
        model=Explodes,
        train_dataset=TensorDataset(x, x.sum(dim=1, keepdim=True)),
        loss=nn.MSELoss(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.01),
    )
"""


def test_ctrl_c_while_the_workload_loads_speaks_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(SLOW_LOAD)
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchscope", "sweep", "slow.py:make", "-b", "2", "--steps", "1"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not (tmp_path / "loading").exists():  # the probe child is inside make()
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the probe never started loading"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "interrupted while loading the workload: nothing was measured or saved" in err
    assert "Traceback" not in err
    assert not (tmp_path / "batchscope-results").exists()


def test_more_threads_than_cores_is_said_and_recorded(tmp_path: Path) -> None:
    code, _, err = run_cli(
        "sweep", "linear", "-b", "8", "--steps", "2", "--warmup", "0", "--threads", "999",
        "--no-store", "--json", "r.json", cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert "warning: --threads 999 is more than the" in err
    settings = json.loads((tmp_path / "r.json").read_text())["settings"]
    assert any("--threads 999" in note for note in settings["notes"])


def test_a_loss_that_turns_nan_is_a_diverged_trial_and_the_json_is_valid(tmp_path: Path) -> None:
    (tmp_path / "nan.py").write_text(NAN_LOSS)
    code, out, err = run_cli(
        "sweep", "nan.py:make", "-b", "8,16", "--steps", "8", "--warmup", "0", "--threads", "1",
        "--no-store", "--json", "r.json", "-q", cwd=tmp_path,
    )  # fmt: skip
    assert code in (0, 1), err
    data = json.loads((tmp_path / "r.json").read_text())  # valid JSON, NaN loss or not
    by_b = {t["batch_size"]: t for t in data["trials"]}
    assert by_b[8]["status"] == "ok"
    assert by_b[16]["status"] == "diverged" and by_b[16]["diverged_at_step"] == 1
    assert by_b[16]["final_train_loss"] is None and data["notes"]
    analysis = data["analysis"]["cpu"]
    assert analysis["recommendation"]["batch_size"] == 8  # never the diverged size
    assert "diverged" in out
