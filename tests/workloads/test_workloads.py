"""Loading workloads from spec strings, and the small built-ins (linear, simplecnn, digits).

resnet18 and the image data sets have their own files (test_workload_resnet18.py,
test_images.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from batchscope.errors import WorkloadError
from batchscope.workloads import (
    BUILTINS,
    Workload,
    WorkloadOptions,
    accuracy,
    describe_builtins,
    load_workload,
)
from batchscope.workloads import linear as linear_module


def _one_line_error(spec: str, options: WorkloadOptions | None = None) -> str:
    with pytest.raises(WorkloadError) as info:
        load_workload(spec, options)
    message = str(info.value)
    assert message and "\n" not in message
    return message


# --------------------------------------------------------------------------- loader errors


def test_empty_spec() -> None:
    assert "empty" in _one_line_error("   ")


def test_unknown_name_lists_the_builtins() -> None:
    message = _one_line_error("nosuch")
    assert "'nosuch'" in message
    for name in BUILTINS:
        assert name in message


def test_module_that_does_not_import() -> None:
    message = _one_line_error("nomodule_xyz:make")
    assert "nomodule_xyz" in message


def test_module_without_the_function() -> None:
    message = _one_line_error("os:nothere")
    assert "'nothere'" in message and "'os'" in message


def test_attribute_that_is_not_callable() -> None:
    assert "'sep'" in _one_line_error("os:sep")


@pytest.mark.parametrize("spec", [":make", "os:"])
def test_spec_with_an_empty_side(spec: str) -> None:
    assert repr(spec) in _one_line_error(spec)


def test_file_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "missing.py"
    assert str(missing) in _one_line_error(f"{missing}:make")


def test_file_that_fails_to_import(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("import nomodule_xyz_inner\n", encoding="utf-8")
    message = _one_line_error(f"{path}:make")
    assert "broken.py" in message and "nomodule_xyz_inner" in message


def test_function_that_raises(workload_file: Path) -> None:
    message = _one_line_error(f"{workload_file}:boom")
    assert "RuntimeError" in message and "kaboom from user code" in message


def test_function_returning_a_non_workload(workload_file: Path) -> None:
    message = _one_line_error(f"{workload_file}:not_a_workload")
    assert "int" in message and "not_a_workload" in message


def test_module_function_that_raises() -> None:
    # math.floor needs an argument: calling it with none raises TypeError
    message = _one_line_error("math:floor")
    assert "'math:floor'" in message and "TypeError" in message


# --------------------------------------------------------------------------- loader success


def test_file_function(workload_file: Path) -> None:
    workload = load_workload(f"{workload_file}:make")
    assert isinstance(workload, Workload)
    assert workload.name == "userlinear"
    assert len(workload.train_dataset) == 64  # type: ignore[arg-type]


def test_relative_file_path(workload_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workload_file.parent)
    assert load_workload("user_workload.py:make").name == "userlinear"


@pytest.fixture
def importable_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workload_file: Path):
    """The user workload file, importable as module ``bs_user_mod_xyz``."""
    (tmp_path / "bs_user_mod_xyz.py").write_text(workload_file.read_text(), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "bs_user_mod_xyz"
    sys.modules.pop("bs_user_mod_xyz", None)


def test_module_colon_function(importable_module: str) -> None:
    workload = load_workload(f"{importable_module}:make")
    assert workload.name == "userlinear"


def test_user_function_receives_the_options(importable_module: str) -> None:
    workload = load_workload(
        f"{importable_module}:make_with_options", WorkloadOptions(images=7, seed=3)
    )
    assert workload.info == {"images_option": 7, "seed_option": 3}


def test_builtins_listed_without_torch_types() -> None:
    names = [name for name, _ in describe_builtins()]
    assert names == ["resnet18", "simplecnn", "linear", "digits", "gpt"]
    assert all(desc for _, desc in describe_builtins())


def test_workload_options_round_trip() -> None:
    options = WorkloadOptions(data="/d", weights="/w.pt", images=10, seed=2, extra={"a": 1})
    assert WorkloadOptions.from_dict(options.to_dict()) == options


# --------------------------------------------------------------------------- linear


def test_linear_data_reproducible_by_seed_and_follows_y_equals_xw() -> None:
    x1, y1, w1 = linear_module.make_data(500, seed=4)
    x2, y2, w2 = linear_module.make_data(500, seed=4)
    x3, _, _ = linear_module.make_data(500, seed=5)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and torch.equal(w1, w2)
    assert not torch.equal(x1, x3)
    assert x1.shape == (500, 10) and y1.shape == (500, 1) and w1.shape == (10, 1)
    residual = y1 - x1 @ w1
    assert residual.std().item() == pytest.approx(linear_module.NOISE_STD, rel=0.2)
    assert residual.abs().max().item() < 10 * linear_module.NOISE_STD
    # least squares recovers the true weights
    w_fit = torch.linalg.lstsq(x1, y1).solution
    assert torch.allclose(w_fit, w1, atol=0.05)


def test_linear_workload() -> None:
    workload = load_workload("linear", WorkloadOptions(images=100, seed=1))
    assert workload.name == "linear"
    assert len(workload.train_dataset) == 100  # type: ignore[arg-type]
    assert len(workload.val_dataset) == 20  # type: ignore[arg-type]
    model = workload.model()
    x, y = workload.train_dataset[0]
    assert model(x.unsqueeze(0)).shape == (1, 1)
    assert isinstance(workload.optimizer(model.parameters()), torch.optim.SGD)
    again = load_workload("linear", WorkloadOptions(images=100, seed=1))
    assert torch.equal(again.train_dataset[5][0], workload.train_dataset[5][0])


# --------------------------------------------------------------------------- simplecnn, digits


def test_simplecnn_forward_shape_and_data() -> None:
    workload = load_workload("simplecnn", WorkloadOptions(images=20))
    assert len(workload.train_dataset) == 20  # type: ignore[arg-type]
    x, y = workload.train_dataset[0]
    assert x.shape == (3, 32, 32)
    model = workload.model()
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10)
    assert workload.head is not None and workload.head(model) is model.fc
    loss = workload.loss(out, torch.tensor([0, 1, 2, 3]))
    assert loss.ndim == 0
    assert workload.notes  # users are told the data are random


def test_digits_split_and_forward() -> None:
    workload = load_workload("digits")
    assert len(workload.train_dataset) == 1438  # type: ignore[arg-type]
    assert len(workload.val_dataset) == 359  # type: ignore[arg-type]
    x, y = workload.train_dataset[0]
    assert x.shape == (1, 8, 8)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    labels = {int(workload.val_dataset[i][1]) for i in range(len(workload.val_dataset))}  # type: ignore[arg-type]
    assert labels == set(range(10))
    assert workload.model()(torch.zeros(5, 1, 8, 8)).shape == (5, 10)
    # the split is fixed by the seed
    same = load_workload("digits")
    other = load_workload("digits", WorkloadOptions(seed=1))
    first = [int(workload.train_dataset[i][1]) for i in range(50)]
    assert [int(same.train_dataset[i][1]) for i in range(50)] == first
    assert [int(other.train_dataset[i][1]) for i in range(50)] != first


def test_accuracy_metric() -> None:
    outputs = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([0, 1, 1, 1])
    result = accuracy(outputs, targets)
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["error_rate"] == pytest.approx(0.25)
