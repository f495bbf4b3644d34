"""Image data sets: the built-in photo crops and the user's class folders."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from batchscope.errors import DataError
from batchscope.workloads.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    image_folder_split,
    sample_photo_dataset,
    sample_photo_split,
)

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _stack(ds) -> tuple[torch.Tensor, list[int]]:
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([x for x, _ in items]), [y for _, y in items]


# --------------------------------------------------------------------------- built-in photos


def test_sample_split_sizes_shapes_and_classes() -> None:
    train, val, classes = sample_photo_split(20, 32, 0)
    assert classes == ["china", "flower"]
    assert (len(train), len(val)) == (16, 4)
    x, y = train[0]
    assert x.shape == (3, 32, 32)
    assert x.dtype == torch.float32
    assert isinstance(y, int)
    _, train_labels = _stack(train)
    _, val_labels = _stack(val)
    assert sorted(set(train_labels)) == [0, 1]
    assert sorted(set(val_labels)) == [0, 1]
    assert train_labels.count(0) == train_labels.count(1) == 8  # balanced
    assert val_labels.count(0) == val_labels.count(1) == 2


def test_sample_dataset_balanced_and_varied() -> None:
    ds = sample_photo_dataset(10, size=24, seed=3)
    assert ds.images.dtype == torch.uint8
    assert ds.images.shape == (10, 3, 24, 24)
    assert ds.labels.tolist().count(0) == 5
    # random crops: no two images of a class are identical
    flat = ds.images.flatten(1)
    assert len({tuple(row.tolist()) for row in flat}) == 10


def test_sample_split_is_deterministic_per_seed() -> None:
    a_train, a_val, _ = sample_photo_split(12, 32, 7)
    b_train, b_val, _ = sample_photo_split(12, 32, 7)
    c_train, _, _ = sample_photo_split(12, 32, 8)
    assert torch.equal(a_train.images, b_train.images)
    assert torch.equal(a_val.images, b_val.images)
    assert torch.equal(a_train.labels, b_train.labels)
    assert not torch.equal(a_train.images, c_train.images)


def test_sample_split_does_not_touch_global_rng() -> None:
    state = torch.random.get_rng_state()
    sample_photo_split(8, 32, 1)
    assert torch.equal(state, torch.random.get_rng_state())


def test_sample_values_are_imagenet_normalised() -> None:
    train, _, _ = sample_photo_split(16, 32, 0)
    xs, _ = _stack(train)
    pixels = xs * STD + MEAN  # undo normalisation: must be a [0, 1] image
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    assert xs.min() < -0.5  # normalised, not raw [0, 1]
    # and it matches the stored uint8 exactly
    assert torch.allclose(pixels[0] * 255, train.images[0].float(), atol=1e-3)


def test_sample_datasets_pickle_for_workers() -> None:
    train, val, _ = sample_photo_split(8, 32, 0)
    clone = pickle.loads(pickle.dumps(train))
    assert torch.equal(clone[3][0], train[3][0])
    assert clone[3][1] == train[3][1]
    assert len(pickle.loads(pickle.dumps(val))) == len(val)


@pytest.mark.parametrize("n", [0, 3, True, 4.0])
def test_sample_split_rejects_too_few_images(n) -> None:
    with pytest.raises(ValueError, match="n_images"):
        sample_photo_split(n, 32, 0)


# --------------------------------------------------------------------------- user folders

RED = (220, 30, 30)
BLUE = (30, 30, 220)


def _save(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".gif": "GIF"}[
        path.suffix.lower()
    ]
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two classes of 5 images each, mixed formats, odd sizes, plus files to skip."""
    root = tmp_path / "data"
    for i, ext in enumerate([".png", ".jpg", ".JPG", ".jpeg", ".bmp"]):
        _save(root / "red" / f"r{i}{ext}", RED, size=(40 + i, 30))
    for i, ext in enumerate([".png", ".jpg", ".gif", ".png", ".png"]):
        _save(root / "blue" / f"b{i}{ext}", BLUE, size=(30, 50 + i))
    (root / "red" / ".DS_Store").write_bytes(b"\x00\x01junk")
    (root / ".hidden_class").mkdir()
    (root / ".hidden_class" / "x.txt").write_text("ignored")
    (root / "README.txt").write_text("loose files in the root are ignored")
    return root


def test_folder_happy_path(folder: Path) -> None:
    train, val, classes = image_folder_split(folder, size=24, seed=0)
    assert classes == ["blue", "red"]  # sorted, hidden folder skipped
    assert (len(train), len(val)) == (8, 2)
    for ds in (train, val):
        xs, labels = _stack(ds)
        assert xs.shape == (len(ds), 3, 24, 24)
        assert xs.dtype == torch.float32
        pixels = xs * STD + MEAN
        for img, label in zip(pixels, labels, strict=True):
            red, blue = img[0].mean(), img[2].mean()
            assert (red > blue) if classes[label] == "red" else (blue > red)
    _, val_labels = _stack(val)
    assert sorted(val_labels) == [0, 1]  # stratified: one of each class
    train_paths = {p for p, _ in train.samples}
    val_paths = {p for p, _ in val.samples}
    assert not train_paths & val_paths
    assert len(train_paths | val_paths) == 10
    assert not any(".DS_Store" in p for p in train_paths | val_paths)


def test_folder_split_is_deterministic(folder: Path) -> None:
    a_train, a_val, _ = image_folder_split(folder, size=16, seed=5)
    b_train, b_val, _ = image_folder_split(folder, size=16, seed=5)
    assert a_train.samples == b_train.samples
    assert a_val.samples == b_val.samples


def test_folder_dataset_pickles(folder: Path) -> None:
    train, _, _ = image_folder_split(folder, size=16)
    clone = pickle.loads(pickle.dumps(train))
    assert torch.equal(clone[0][0], train[0][0])


def test_folder_tiny_split_has_both_sides(tmp_path: Path) -> None:
    _save(tmp_path / "a" / "1.png", RED)
    _save(tmp_path / "b" / "1.png", BLUE)
    train, val, _ = image_folder_split(tmp_path, size=16)
    assert len(train) == 1 and len(val) == 1


def _error(root: Path) -> str:
    with pytest.raises(DataError) as info:
        image_folder_split(root, size=16)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_folder_missing(tmp_path: Path) -> None:
    message = _error(tmp_path / "nope")
    assert "nope" in message and "does not exist" in message


def test_folder_is_a_file(tmp_path: Path) -> None:
    path = _save(tmp_path / "x.png", RED)
    message = _error(path)
    assert str(path) in message and "not a folder" in message


def test_folder_empty(tmp_path: Path) -> None:
    (tmp_path / ".DS_Store").write_text("hidden files do not count")
    message = _error(tmp_path)
    assert str(tmp_path) in message and "empty" in message


def test_folder_class_dirs_without_images(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / ".DS_Store").write_text("hidden")
    message = _error(tmp_path)
    assert str(tmp_path) in message and "empty" in message


def test_folder_images_without_class_folders(tmp_path: Path) -> None:
    _save(tmp_path / "1.png", RED)
    message = _error(tmp_path)
    assert str(tmp_path) in message and "sub-folder per class" in message


def test_folder_one_empty_class(tmp_path: Path) -> None:
    _save(tmp_path / "a" / "1.png", RED)
    (tmp_path / "b").mkdir()
    message = _error(tmp_path)
    assert str(tmp_path / "b") in message and "no images" in message


def test_folder_only_one_class(tmp_path: Path) -> None:
    _save(tmp_path / "cats" / "1.png", RED)
    _save(tmp_path / "cats" / "2.png", RED)
    message = _error(tmp_path)
    assert str(tmp_path) in message and "needs at least two classes" in message


def test_folder_wrong_extension(folder: Path) -> None:
    bad = folder / "blue" / "notes.txt"
    bad.write_text("not an image")
    message = _error(folder)
    assert str(bad) in message
    assert ".jpg" in message and ".png" in message  # says what is accepted


def test_folder_file_without_extension(folder: Path) -> None:
    bad = folder / "red" / "LICENSE"
    bad.write_text("not an image")
    message = _error(folder)
    assert str(bad) in message and "accepted" in message


def test_folder_garbage_with_image_extension(folder: Path) -> None:
    bad = folder / "red" / "fake.jpg"
    bad.write_bytes(b"this is text, not a JPEG" * 10)
    message = _error(folder)
    assert str(bad) in message and "cannot be decoded" in message


def test_folder_truncated_image(folder: Path) -> None:
    bad = folder / "blue" / "cut.jpg"
    Image.effect_noise((64, 64), 50).convert("RGB").save(bad, format="JPEG")
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    message = _error(folder)
    assert str(bad) in message and "cannot be decoded" in message


def test_folder_truncated_png(folder: Path) -> None:
    bad = folder / "blue" / "cut.png"
    Image.effect_noise((64, 64), 50).convert("RGB").save(bad, format="PNG")
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    message = _error(folder)
    assert str(bad) in message


def test_sample_photos_are_scikit_learns_pixels_read_without_importing_it() -> None:
    import subprocess
    import sys

    from sklearn.datasets import load_sample_images

    from batchscope.workloads.images import _sample_photos

    bunch = load_sample_images()
    expected = sorted(zip((Path(f).stem for f in bunch.filenames), bunch.images, strict=True))
    got = _sample_photos()
    assert [name for name, _ in got] == [name for name, _ in expected] == ["china", "flower"]
    for (_, mine), (_, theirs) in zip(got, expected, strict=True):
        assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs)
    # a fresh process reading them never imports scikit-learn (1.6 s in every trial)
    code = (
        "import sys; from batchscope.workloads.images import _sample_photos; "
        "_sample_photos(); print('sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
