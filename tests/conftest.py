"""Shared fixtures: running the CLI as a real user does, and small helpers.

Each CLI subprocess costs a Python start (and, where a trial or probe runs,
a torch import of ~2-3 s on a small CPU), so tests keep their number low.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# No sweep of the suite measures the device's matmul peak (a few seconds each, in a fresh
# store every time): as if every sweep said --no-peak. The tests of MFU unset it.
os.environ["BATCHSCOPE_NO_PEAK"] = "1"

#: What a CLI subprocess returns: (exit status, stdout, stderr).
CliResult = tuple[int, str, str]


def cli_env() -> dict[str, str]:
    """The environment of a CLI subprocess: this checkout's package, a fixed wide terminal."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env["COLUMNS"] = "160"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("FORCE_COLOR", None)
    env["NO_COLOR"] = "1"
    return env


def run_cli(*args: str, cwd: str | os.PathLike[str], timeout: float = 300) -> CliResult:
    """Run ``python -m batchscope ARGS`` in ``cwd``; return (returncode, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "batchscope", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


def run_python(code: str, *, cwd: str | os.PathLike[str] | None = None) -> CliResult:
    """Run ``python -c CODE`` with this checkout importable."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., CliResult]:
    """``cli(*args)`` runs the CLI in this test's ``tmp_path``."""

    def _run(*args: str, timeout: float = 300) -> CliResult:
        return run_cli(*args, cwd=tmp_path, timeout=timeout)

    return _run


@pytest.fixture
def restore_torch_threads() -> Iterator[None]:
    """In-process trials may call ``torch.set_num_threads``; give the count back afterwards."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


WORKLOAD_FILE = '''\
"""A user workload file, as a user would write one."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import batchscope


def make():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=gen)
    y = x.sum(dim=1, keepdim=True)
    return batchscope.Workload(
        name="userlinear",
        model=lambda: nn.Linear(4, 1),
        train_dataset=TensorDataset(x, y),
        loss=nn.MSELoss(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.05),
        description="a user's linear regression",
    )


def make_with_options(options):
    workload = make()
    workload.info["images_option"] = options.images
    workload.info["seed_option"] = options.seed
    return workload


def not_a_workload():
    return 42


def boom():
    raise RuntimeError("kaboom from user code")
'''


@pytest.fixture
def workload_file(tmp_path: Path) -> Path:
    """``tmp_path/user_workload.py`` with ``make``, ``make_with_options``,
    ``not_a_workload`` and ``boom``."""
    path = tmp_path / "user_workload.py"
    path.write_text(WORKLOAD_FILE, encoding="utf-8")
    return path


@pytest.fixture
def no_zygote() -> None:
    """End this process's trial zygotes first: a test that counts our descendant processes
    (or their memory) must not see the zygote an earlier test started
    (batchscope.run.forkserver keeps one per process until exit)."""
    from batchscope.run import forkserver

    forkserver.shutdown()
