"""The resnet18 built-in: data, weights, head and the model it builds."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from batchscope.errors import DataError, WorkloadError
from batchscope.workloads import WorkloadOptions, load_workload
from batchscope.workloads.loader import BUILTINS
from batchscope.workloads.resnet18 import build

SMALL = {"image_size": 32}


def _options(**kwargs) -> WorkloadOptions:
    kwargs.setdefault("images", 8)
    kwargs.setdefault("extra", dict(SMALL))
    return WorkloadOptions(**kwargs)


@pytest.fixture(scope="module")
def small():
    return build(_options())


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(123)
    state = torchvision.models.resnet18().state_dict()
    path = tmp_path_factory.mktemp("w") / "r18.pt"
    torch.save(state, path)
    return path, state


def test_builtin_workload_shape(small) -> None:
    wl = small
    assert wl.name == "resnet18"
    assert "ResNet-18" in wl.description and "2-class head, 32×32" in wl.description
    assert wl.info["image_size"] == 32
    assert (wl.info["n_train"], wl.info["n_val"]) == (6, 2)
    assert wl.info["classes"] == ["china", "flower"]
    assert "scikit-learn" in wl.info["data"]
    assert len(wl.train_dataset) == 6 and len(wl.val_dataset) == 2
    random_notes = [n for n in wl.notes if "randomly initialised" in n]
    assert len(random_notes) == 1 and "--weights" in random_notes[0]
    assert any("8 random 32×32 crops" in n and "scikit-learn" in n for n in wl.notes)


def test_default_description_is_the_registry_line(monkeypatch) -> None:
    import batchscope.workloads.resnet18 as mod

    monkeypatch.setattr(mod, "DEFAULT_IMAGE_SIZE", 32)  # keep the test fast: tiny images
    wl = build(WorkloadOptions(images=4, extra={}))
    assert wl.description == BUILTINS["resnet18"][1]
    assert wl.info["image_size"] == 32


def test_forward_loss_metric_and_optimizer(small) -> None:
    wl = small
    torch.manual_seed(0)
    model = wl.model()
    xs = torch.stack([wl.train_dataset[i][0] for i in range(4)])
    ys = torch.tensor([wl.train_dataset[i][1] for i in range(4)])
    out = model(xs)
    assert out.shape == (4, 2)
    loss = wl.loss(out, ys)
    assert loss.ndim == 0 and torch.isfinite(loss)
    opt = wl.optimizer(model.parameters())
    assert isinstance(opt, torch.optim.Adam)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)
    before = model.fc.weight.detach().clone()
    loss.backward()
    opt.step()
    assert not torch.equal(before, model.fc.weight)
    assert set(wl.metric(out, ys)) == {"accuracy", "error_rate"}


def test_head_is_new_fc(small) -> None:
    model = small.model()
    head = small.head(model)
    assert head is model.fc
    assert isinstance(head, nn.Linear) and (head.in_features, head.out_features) == (512, 2)


def test_model_factory_is_deterministic_under_seed(small) -> None:
    torch.manual_seed(42)
    a = small.model()
    torch.manual_seed(42)
    b = small.model()
    torch.manual_seed(43)
    c = small.model()
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_factory_and_data_pickle(small) -> None:
    clone = pickle.loads(pickle.dumps(small.model))
    assert isinstance(clone(), torchvision.models.ResNet)
    assert pickle.loads(pickle.dumps(small.train_dataset))[0][1] == small.train_dataset[0][1]


def test_load_workload_resolves_builtin() -> None:
    wl = load_workload("resnet18", _options(images=4))
    assert wl.name == "resnet18" and wl.info["n_train"] + wl.info["n_val"] == 4


def test_image_folder_data(tmp_path: Path) -> None:
    colours = {"a": (255, 0, 0), "b": (0, 255, 0), "c": (0, 0, 255)}
    for name, colour in colours.items():
        for i in range(3):
            (tmp_path / name).mkdir(exist_ok=True)
            Image.new("RGB", (40, 36), colour).save(tmp_path / name / f"{i}.png")
    wl = build(WorkloadOptions(data=str(tmp_path), extra=dict(SMALL)))
    assert wl.info["classes"] == ["a", "b", "c"]
    assert wl.info["n_train"] + wl.info["n_val"] == 9
    assert str(tmp_path) in wl.info["data"]
    assert not any("scikit-learn" in n for n in wl.notes)  # no built-in data note
    model = wl.model()
    model.eval()
    xs = torch.stack([wl.val_dataset[i][0] for i in range(len(wl.val_dataset))])
    assert model(xs).shape == (len(wl.val_dataset), 3)


def test_bad_data_folder_is_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        build(WorkloadOptions(data=str(tmp_path / "missing"), extra=dict(SMALL)))


def test_weights_are_loaded(weights_file) -> None:
    path, state = weights_file
    wl = build(_options(weights=str(path)))
    assert not any("randomly initialised" in n for n in wl.notes)
    assert wl.info["weights"] == str(path)
    torch.manual_seed(0)
    model = wl.model()
    assert torch.equal(model.conv1.weight, state["conv1.weight"])
    assert torch.equal(model.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert model.fc.out_features == 2
    x = torch.stack([wl.train_dataset[i][0] for i in range(2)])
    assert model(x).shape == (2, 2)


def test_weights_with_other_head_shape_are_accepted(tmp_path: Path) -> None:
    torch.manual_seed(5)
    state = torchvision.models.resnet18(num_classes=10).state_dict()
    path = tmp_path / "ten.pt"
    torch.save(state, path)
    model = build(_options(weights=str(path))).model()
    assert torch.equal(model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    assert model.fc.weight.shape == (2, 512)


def _weights_error(path: Path, kind: type[Exception] = WorkloadError) -> str:
    with pytest.raises(kind) as info:
        build(_options(weights=str(path)))
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    return message


def test_missing_weights_is_data_error(tmp_path: Path) -> None:
    message = _weights_error(tmp_path / "nope.pt", DataError)
    assert "does not exist" in message


def test_garbage_weights_is_workload_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"definitely not a torch file" * 20)
    message = _weights_error(path)
    assert "state dict" in message


def test_pickled_model_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(nn.Linear(2, 2), path)  # a module, not a state dict: weights_only refuses it
    message = _weights_error(path)
    assert "state dict" in message


def test_non_mapping_weights_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    message = _weights_error(path)
    assert "list" in message and "state dict" in message


def test_other_architecture_weights_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "r34.pt"
    torch.save(torchvision.models.resnet34().state_dict(), path)
    message = _weights_error(path)
    assert "does not match" in message and "unexpected" in message


def test_wrong_shape_weights_are_rejected(tmp_path: Path, weights_file) -> None:
    _, state = weights_file
    bad = dict(state)
    bad["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    del bad["layer4.1.bn2.bias"]
    path = tmp_path / "gray.pt"
    torch.save(bad, path)
    message = _weights_error(path)
    assert "conv1.weight (64,1,7,7) vs (64,3,7,7)" in message
    assert "layer4.1.bn2.bias" in message and "missing" in message


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (WorkloadOptions(images=3, extra=dict(SMALL)), "--images"),
        (WorkloadOptions(images=8, extra={"image_size": 8}), "image_size"),
        (WorkloadOptions(images=8, extra={"image_size": "big"}), "image_size"),
    ],
)
def test_bad_options_are_workload_errors(options: WorkloadOptions, match: str) -> None:
    with pytest.raises(WorkloadError, match=match):
        build(options)
