"""Every bad input: exactly one line on stderr naming the bad value, exit status 2,
no traceback, and nothing run or stored.

Each case is a real ``python -m batchscope`` process (and, for what only a loaded
workload reveals, its probe child process). A torch import costs seconds on a
small CPU, so the module starts every case at once on a few worker threads and
each test then checks its own outcome.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import CliResult, run_cli

HAS_CUDA = torch.cuda.is_available()

#: a user's workload file that goes wrong before it needs torch
BAD_WORKLOADS = """\
def not_a_workload():
    return 42


def boom():
    raise RuntimeError("kaboom from user code")


def boom_lines():
    raise ValueError("first line of the trouble\\nsecond line of the trouble")
"""


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    named: tuple[str, ...]
    #: files (relative to the case's folder) that must not exist afterwards
    absent: tuple[str, ...] = ("batchscope-results",)


def flags(*args: str, named: tuple[str, ...]) -> Case:
    """A sweep refused while its flags are read: before any store or process exists."""
    return Case(("sweep", "linear", *args), named)


def probe(*args: str, named: tuple[str, ...]) -> Case:
    """A sweep refused after loading the workload in the probe child."""
    return Case(("sweep", *args, "-b", "2", "--steps", "1", "--no-store"), named)


CASES: dict[str, Case] = {
    # batch sizes
    "batch 0": flags("-b", "0", named=("batch size 0",)),
    "batch -4": flags("-b", "-4", named=("-4",)),
    "batch 1.5": flags("-b", "1.5", named=("'1.5'",)),
    "batch abc": flags("-b", "abc", named=("'abc'",)),
    "batch empty": flags("-b", "", named=("--batch-sizes", "empty")),
    "batch empty item": flags("-b", "16,,32", named=("'16,,32'",)),
    "batch backwards": flags("-b", "256..16", named=("'256..16'",)),
    # the protocol
    "steps 0": flags("--steps", "0", named=("--steps 0",)),
    "steps abc": flags("--steps", "abc", named=("--steps", "'abc'")),  # typer's parser
    "steps=abc": flags("--steps=abc", named=("--steps", "'abc'")),
    "threads 0": flags("--threads", "0", named=("--threads 0",)),
    "steps and epochs": flags("--steps", "3", "--epochs", "2", named=("--steps", "--epochs")),
    "freeze without epochs": flags("--freeze-epochs", "1", named=("--freeze-epochs",)),
    "memory limit": flags("--memory-limit", "lots", named=("--memory-limit", "'lots'")),
    "isolation": flags("--isolation", "sideways", named=("'sideways'",)),
    "unknown flag": flags("--no-such-flag", named=("--no-such-flag",)),
    # adaptive measuring and rounds
    "max-error 200%": flags("--max-error", "200%", named=("--max-error", "'200%'")),
    "max-error abc": flags("--max-error", "abc", named=("--max-error", "'abc'")),
    "max-time 0s": flags("--max-time", "0s", named=("--max-time", "'0s'")),
    "max-time soon": flags("--max-time", "soon", named=("--max-time", "'soon'")),
    "min-steps 0": flags("--min-steps", "0", named=("--min-steps 0",)),
    "steps with max-error": flags(
        "--steps", "3", "--max-error", "1%", named=("--max-error", "--steps")
    ),
    "repeats many": flags("--repeats", "many", named=("--repeats", "'many'", "auto")),
    "image-size for linear": flags("--image-size", "64", named=("--image-size", "resnet18")),
    "image-size too small": Case(
        ("sweep", "resnet18", "--image-size", "8"), ("--image-size", "32")
    ),
    "image-size abc": Case(("sweep", "resnet18", "--image-size", "abc"), ("--image-size",)),
    # the gpt workload's sequence and size
    "seq-lens for linear": flags("--seq-lens", "128", named=("--seq-lens", "'linear'")),
    "layers for linear": flags("--layers", "2", named=("--layers", "'linear'")),
    "seq-lens 0": Case(("sweep", "gpt", "--seq-lens", "0,128"), ("'0'", "--seq-lens")),
    "seq-lens abc": Case(("sweep", "gpt", "--seq-lens", "128,abc"), ("'abc'", "--seq-lens")),
    "seq-lens with keras": Case(
        ("sweep", "--keras", "m:f", "--seq-lens", "128"), ("--seq-lens", "keras")
    ),
    "width not divisible by heads": probe(
        "gpt", "--width", "130", "--heads", "4", named=("--width 130", "--heads 4")
    ),
    "time-budget without auto": flags("--time-budget", "5m", named=("--time-budget", "auto")),
    # exports: refused before a store is opened or a trial runs
    "json folder missing": Case(
        ("sweep", "linear", "--json", "/nonexistent_dir/r.json", "--store", "results.db"),
        ("--json", "/nonexistent_dir"),
        absent=("results.db", "batchscope-results"),
    ),
    "csv is a folder": flags("--csv", "{root}", named=("--csv", "is a folder")),
    # other commands
    "no workload": Case(("sweep",), ("workload",)),
    "unknown command": Case(("sweeep",), ("sweeep",)),
    "no store": Case(("show", "abc"), ("batchscope-results",)),
    "store missing": Case(("runs", "--store", "nothere.db"), ("'nothere.db'",)),
    # fastai and Keras entries: refused with the flags, before any child starts
    "workload and --fastai": Case(
        ("sweep", "linear", "--fastai", "m:make_learner"), ("WORKLOAD", "--fastai")
    ),
    "--fastai with --steps": Case(
        ("sweep", "--fastai", "m:make_learner", "--steps", "3"), ("--fastai", "--steps")
    ),
    "--fit without --fastai": flags("--fit", "fine_tune(1)", named=("--fit", "--fastai")),
    "--keras with --precision": Case(
        ("sweep", "--keras", "m:make_model", "--precision", "bf16"), ("--precision", "keras")
    ),
    "--fit not a fit method": Case(
        ("sweep", "--fastai", "m:make_learner", "--fit", "delete_all(1)"), ("--fit", "delete_all")
    ),
    "--fastai module missing": Case(
        ("sweep", "--fastai", "nomodule_xyz:make_learner", "-b", "2", "--no-store"),
        ("nomodule_xyz",),
    ),
    "--keras with --data": Case(
        ("sweep", "--keras", "m:make_model", "--data", "{root}"), ("--data", "module")
    ),
    # workloads, loaded by the probe child
    "unknown workload": probe("nosuch", named=("'nosuch'", "resnet18")),
    "module not importable": probe("nomodule_xyz:make", named=("nomodule_xyz",)),
    "not a workload": probe("{root}/bad.py:not_a_workload", named=("not_a_workload", "int")),
    "workload raises": probe("{root}/bad.py:boom", named=("kaboom from user code",)),
    "multi-line error": probe(
        "{root}/bad.py:boom_lines", named=("first line of the trouble second line",)
    ),
    "no such function": probe("{root}/bad.py:nothere", named=("'nothere'",)),
    "no such file": probe("{root}/missing.py:make", named=("missing.py",)),
    # a workload that fails to load leaves no store and no results folder behind
    "workload fails, default store": Case(
        ("sweep", "{root}/bad.py:boom", "-b", "2", "--steps", "1"), ("kaboom from user code",)
    ),
    # data folders, checked by the probe child
    "data missing": probe("resnet18", "--data", "/does/not/exist", named=("/does/not/exist",)),
    "data empty": probe("resnet18", "--data", "{root}/empty", named=("empty", "is empty")),
    "data one class": probe("resnet18", "--data", "{root}/single", named=("single", "one class")),
    "data corrupt image": probe("resnet18", "--data", "{root}/corrupt", named=("bad.jpg",)),
    # devices: a name no machine has is refused at once, an absent one after the probe
    "device tpu": flags("--devices", "cpu,tpu", named=("'tpu'",)),
    "devices empty": flags("--devices", "", named=("--devices", "empty")),
    "device cuda absent": probe("linear", "--devices", "cuda", named=("'cuda'", "not present")),
}

SKIPPED = {"device cuda absent"} if HAS_CUDA else set()


def _make_inputs(root: Path) -> None:
    (root / "bad.py").write_text(BAD_WORKLOADS, encoding="utf-8")
    (root / "empty").mkdir()
    (root / "single" / "wren").mkdir(parents=True)
    Image.new("RGB", (16, 16), "red").save(root / "single" / "wren" / "a.png")
    for name in ("wren", "woods"):
        (root / "corrupt" / name).mkdir(parents=True)
        Image.new("RGB", (16, 16), "blue").save(root / "corrupt" / name / "ok.png")
    (root / "corrupt" / "wren" / "bad.jpg").write_bytes(b"these bytes are not a JPEG")


Outcomes = dict[str, tuple[Path, "Future[CliResult]"]]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcomes]:
    """Every case started in its own empty folder, four at a time."""
    root = tmp_path_factory.mktemp("bad_inputs")
    _make_inputs(root)
    started: Outcomes = {}
    # the cases that load torch in the probe child go first, so the quick ones fill the gaps
    order = sorted(enumerate(CASES.items()), key=lambda item: "--no-store" not in item[1][1].args)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, (name, case) in order:
            if name in SKIPPED:
                continue
            cwd = root / f"case{i:02d}"
            cwd.mkdir()
            args = [a.replace("{root}", str(root)) for a in case.args]
            started[name] = (cwd, pool.submit(run_cli, *args, cwd=cwd))
        yield started


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_naming_it(outcomes: Outcomes, name: str) -> None:
    if name in SKIPPED:
        pytest.skip("this machine has a CUDA GPU")
    case = CASES[name]
    cwd, future = outcomes[name]
    code, out, err = future.result()
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("batchscope: error: ")
    for value in case.named:
        assert value in lines[0], (value, lines[0])
    for path in case.absent:  # nothing was stored: the input was refused up front
        assert not (cwd / path).exists(), path
