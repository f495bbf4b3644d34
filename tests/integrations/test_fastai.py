"""The fastai integration: a real Learner, swept in child processes, measured per step.

Kept small for a 2-core CPU: 40 photos of 64×64 (32 train / 8 validation after
fastai's RandomSplitter), no DataLoader workers, one warm-up step.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastai")

from batchscope.core.plan import TrialSpec  # noqa: E402
from batchscope.errors import UsageError, WorkloadError  # noqa: E402
from batchscope.integrations import fastai as bf  # noqa: E402
from conftest import run_python  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastai_pets.py"
ENTRY = f"{EXAMPLE}:make_learner"
N_IMAGES, SIZE = 40, 64
N_TRAIN = 32  # RandomSplitter(valid_pct=0.2) of 40

#: user code with plain (single parameter group) learners and broken entries
USER_FILE = """\
import torch
from torch import nn
from torch.utils.data import TensorDataset
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy


def _dls(bs):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(48, 4, generator=gen)
    y = (x.sum(dim=1) > 0).long()
    train = TensorDataset(x[:40], y[:40])
    valid = TensorDataset(x[40:], y[40:])
    return DataLoaders(
        DataLoader(train, bs=bs, shuffle=True, drop_last=True), DataLoader(valid, bs=bs)
    )


def plain(bs):
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    return Learner(_dls(bs), model, loss_func=CrossEntropyLossFlat(), metrics=accuracy)


def fixed_bs(bs):
    return plain(4)


def not_a_learner(bs):
    return 42


def boom(bs):
    raise RuntimeError("kaboom from make_learner")


def no_bs():
    return None


def one_fit(learn):
    learn.fit(1, lr=1e-2)


def frozen_fit(learn):
    learn.freeze()
    learn.fit(1, lr=1e-2)
"""


def top_level_protocol(learn: Any) -> None:
    """A protocol function importable as ``tests.test_fastai:top_level_protocol``."""


def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location("fastai_pets_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fastai") / "photos"
    return Path(_load_example().write_photo_folder(root, N_IMAGES, SIZE))


@pytest.fixture
def small_example(photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example reads this tiny folder (children inherit the environment)."""
    monkeypatch.setenv("BATCHSCOPE_FASTAI_DATA", str(photos))
    monkeypatch.setenv("BATCHSCOPE_FASTAI_SIZE", str(SIZE))
    monkeypatch.setenv("BATCHSCOPE_FASTAI_WORKERS", "0")


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "user_learners.py"
    path.write_text(USER_FILE, encoding="utf-8")
    return path


def _spec(entry: str, batch_size: int, fit: str | None = "fine_tune(1)") -> TrialSpec:
    return TrialSpec(
        workload=entry,
        workload_options={},
        device="cpu",
        batch_size=batch_size,
        warmup=1,
        threads=2,
        framework="fastai",
        fit=fit,
    )


def test_photo_folder_has_two_classes_of_jpegs(photos: Path) -> None:
    classes = sorted(p.name for p in photos.iterdir())
    files = list(photos.glob("*/*.jpg"))
    assert len(classes) == 2
    assert len(files) == N_IMAGES


def test_trial_times_every_step_and_records_fastai_metrics(
    small_example: None, restore_torch_threads: None
) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    result = bf.run_trial(_spec(ENTRY, 8), progress=lambda e, p: events.append((e, p)))

    assert result.status == "ok"
    assert result.steps_per_epoch == 4 and result.samples_per_epoch == N_TRAIN
    # fine_tune(1): one frozen epoch, one unfrozen, 4 full steps each; the statistics are
    # the unfrozen steps' (the frozen ones skip most of the backward), less 1 warm-up
    assert [e.frozen for e in result.epochs] == [True, False]
    assert [e.samples for e in result.epochs] == [N_TRAIN, N_TRAIN]
    assert result.samples_trained == 2 * N_TRAIN
    assert result.measured_steps == 4 - 1
    assert any("frozen-body steps" in n for n in result.notes)
    assert result.step_time_s is not None and result.step_time_s.n == result.measured_steps
    assert result.data_wait_s is not None and result.data_wait_s.median >= 0
    assert len(result.step_times_s) == result.measured_steps
    assert result.total_time_s is not None and result.total_time_s > 0
    assert result.total_time_s >= sum(result.step_times_s)
    assert len(result.epoch_time_s) == 2 and all(t > 0 for t in result.epoch_time_s)
    for epoch in result.epochs:
        assert 0.0 <= epoch.metrics["error_rate"] <= 1.0
        assert epoch.train_loss is not None and epoch.val_loss is not None
    assert result.final_train_loss == result.epochs[-1].train_loss
    assert result.peak_memory_bytes is not None and result.peak_rss_bytes
    assert result.threads == 2 and result.drop_last is True
    # a resnet has several parameter groups: no single-group note; 32 = 4 × 8: no drop note
    assert not any("single parameter group" in n or "drops" in n for n in result.notes)
    assert [p["epoch"] for e, p in events if e == "epoch"] == [1, 2]
    assert events[0][0] == "setup" and events[-1] == ("done", {"status": "ok"})


def test_trial_shows_fastai_dropping_the_last_partial_batch(
    small_example: None, restore_torch_threads: None
) -> None:
    result = bf.run_trial(_spec(ENTRY, 24))

    assert result.status == "ok"
    assert result.samples_per_epoch == 24  # 32 training images, one batch of 24 per epoch
    assert result.steps_per_epoch == 1
    assert result.measured_steps == 2 - 1
    assert "fastai drops the last partial training batch: an epoch trains 24 of 32 images" in (
        result.notes
    )


def test_sweep_learner_runs_each_size_in_a_child_and_the_json_carries_it(
    small_example: None,
) -> None:
    example = _load_example()
    run = bf.sweep_learner(
        ENTRY, [16, 24], fit="fine_tune(1)", warmup=1, threads=2, sample_interval_s=0.2
    )
    data = json.loads(json.dumps(run.to_dict()))

    assert example.make_learner is not None  # the example module imports cleanly
    assert data["workload"]["framework"] == "fastai"
    assert data["workload"]["fit"] == "fine_tune(1)"
    assert data["workload"]["n_train"] == N_TRAIN and data["workload"]["n_val"] == 8
    assert data["workload"]["info"]["model"] == "resnet18"
    assert data["settings"]["framework"] == "fastai" and data["settings"]["fit"] == "fine_tune(1)"
    trials = data["trials"]
    assert [t["status"] for t in trials] == ["ok", "ok"], [t["error"] for t in trials]
    assert [t["batch_size"] for t in trials] == [16, 24]
    assert [t["samples_per_epoch"] for t in trials] == [32, 24]
    for trial in trials:
        assert len(trial["epochs"]) == 2
        assert all(0.0 <= e["metrics"]["error_rate"] <= 1.0 for e in trial["epochs"])
        assert trial["step_time_s"]["median"] > 0
        assert trial["peak_memory_bytes"] is not None


@pytest.mark.parametrize(
    ("text", "method", "epochs"),
    [
        ("fine_tune(1)", "fine_tune", 2),
        ("fine_tune(2, base_lr=1e-3, freeze_epochs=1)", "fine_tune", 3),
        ("learn.fine_tune(3, freeze_epochs=0)", "fine_tune", 3),
        ("fit_one_cycle(3)", "fit_one_cycle", 3),
        ("fit_one_cycle(3, lr_max=slice(1e-5, 1e-3))", "fit_one_cycle", 3),
        ("fit(2, lr=1e-3)", "fit", 2),
        ("fit_flat_cos(1)", "fit_flat_cos", 1),
        ("fit_sgdr(3, 1)", "fit_sgdr", 7),
        (None, "fine_tune", 2),
    ],
)
def test_parse_fit_accepts_fit_methods_with_literals(
    text: str | None, method: str, epochs: int
) -> None:
    protocol = bf.parse_fit(text)
    assert protocol.method == method
    assert protocol.epochs == epochs
    assert protocol.function is None


def test_parse_fit_keeps_literal_arguments() -> None:
    protocol = bf.parse_fit("fit_one_cycle(3, lr_max=slice(1e-5, 1e-3), wd=0.1)")
    assert protocol.args == (3,)
    assert protocol.kwargs == {"lr_max": slice(1e-5, 1e-3), "wd": 0.1}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("train(3)", "not one of the Learner's fit methods"),
        ("fit_one_cycle(n)", "not a literal"),
        ("fine_tune(__import__('os').getpid())", "not a literal"),
        ("fine_tune(1", "not a method call"),
        ("fine_tune", "not a method call"),
        ("fine_tune()", "missing a required argument"),
        ("fine_tune(1, foo=2)", "unexpected keyword"),
        ("fit(0)", "trains no epoch"),
        ("fit_one_cycle(-1)", "whole number"),
        ("fit(1.5)", "whole number"),
        ("fit(*[1])", "*args"),
        ("fit_sgdr(2, 1, cycle_mult='x')", "how many epochs"),
        ("fine_tune(1, 2e-3, 1, 100, 0.3, 5.0, 1e5)", "too many positional"),
    ],
)
def test_parse_fit_rejects_other_text_in_one_line(text: str, says: str) -> None:
    with pytest.raises(UsageError) as info:
        bf.parse_fit(text)
    message = str(info.value)
    assert says in message
    assert "\n" not in message


def test_parse_fit_functions_must_be_importable() -> None:
    protocol = bf.parse_fit(top_level_protocol)
    assert protocol.function is not None and protocol.function.endswith(":top_level_protocol")
    assert bf.parse_fit("pkg.mod:train").function == "pkg.mod:train"
    with pytest.raises(UsageError, match="top level"):
        bf.parse_fit(lambda learn: None)

    def nested(learn: Any) -> None:
        """Not importable by a child process."""

    with pytest.raises(UsageError, match="top level"):
        bf.importable_entry(nested, "make_learner")


def test_functions_of_the_running_script_are_imported_from_its_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def make_learner(bs: int) -> None:
        """Stands for a top-level function of ``python my_script.py``."""

    make_learner.__qualname__ = "make_learner"
    monkeypatch.setattr(make_learner, "__module__", "__main__")
    main_file = getattr(sys.modules["__main__"], "__file__", None)
    if main_file is None:
        with pytest.raises(UsageError, match="interactively"):
            bf.importable_entry(make_learner)
    else:
        assert bf.importable_entry(make_learner) == f"{os.path.abspath(main_file)}:make_learner"


@pytest.mark.parametrize(
    ("function", "error", "says"),
    [
        ("not_a_learner", WorkloadError, "must return a fastai Learner, got int"),
        ("boom", WorkloadError, "RuntimeError: kaboom from make_learner"),
        ("no_bs", WorkloadError, "must take the batch size"),
        ("missing", WorkloadError, "has no function 'missing'"),
        ("fixed_bs", UsageError, "make_learner(2)"),
    ],
)
def test_bad_entries_are_one_clear_line(
    user_file: Path, function: str, error: type[Exception], says: str
) -> None:
    with pytest.raises(error) as info:
        bf.probe(f"{user_file}:{function}", {})
    assert says in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_module_and_missing_fastai_are_workload_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(WorkloadError, match="cannot import module 'no_such_module_xyz'"):
        bf.probe("no_such_module_xyz:make_learner", {})
    with pytest.raises(WorkloadError, match="--fastai 'make_learner'"):
        bf.probe("make_learner", {})
    monkeypatch.setitem(sys.modules, "fastai", None)
    with pytest.raises(WorkloadError, match=r"fastai is not installed: pip install"):
        bf.probe("anything:make_learner", {})


def test_single_parameter_group_is_said_in_probe_and_trial(
    user_file: Path, restore_torch_threads: None
) -> None:
    entry = f"{user_file}:plain"
    described = bf.probe(entry, {"extra": {"fit": "fit(1)"}})
    assert described["info"]["parameter_groups"] == 1
    assert any("single parameter group" in note for note in described["notes"])
    assert described["fit"] == "fit(1)" and described["metrics"] == ["accuracy"]
    assert described["parameters"] == 4 * 16 + 16 + 16 * 2 + 2
    assert described["has_batchnorm"] is False

    result = bf.run_trial(_spec(entry, 8))
    assert result.status == "ok"
    assert bf.SINGLE_GROUP_NOTE in result.notes
    # nothing could be frozen: fine_tune's first epoch trained the whole model
    assert [e.frozen for e in result.epochs] == [False, False]
    assert [e.samples for e in result.epochs] == [40, 40]
    assert all("accuracy" in e.metrics for e in result.epochs)
    assert result.measured_steps == 2 * 5 - 1


def test_protocol_function_and_batch_size_checks(
    user_file: Path, restore_torch_threads: None
) -> None:
    result = bf.run_trial(_spec(f"{user_file}:plain", 10, fit=f"{user_file}:one_fit"))
    assert result.status == "ok"
    assert len(result.epochs) == 1 and result.epochs[0].samples == 40
    assert not any("single parameter group" in note for note in result.notes)  # no freeze()
    frozen = bf.run_trial(_spec(f"{user_file}:plain", 10, fit=f"{user_file}:frozen_fit"))
    assert frozen.notes == [bf.SINGLE_GROUP_FREEZE_NOTE]

    with pytest.raises(UsageError, match=r"make_learner\(8\) .* returned DataLoaders with bs=4"):
        bf.run_trial(_spec(f"{user_file}:fixed_bs", 8))
    with pytest.raises(UsageError, match="larger than the 40 training items"):
        bf.run_trial(_spec(f"{user_file}:plain", 64))


def test_importing_the_integration_imports_neither_fastai_nor_torch() -> None:
    code, out, err = run_python(
        "import sys, batchscope.integrations.fastai as f; "
        "print('fastai' in sys.modules, 'torch' in sys.modules, f.DEFAULT_FIT)"
    )
    assert code == 0, err
    assert out.split() == ["False", "False", "fine_tune(1)"]
