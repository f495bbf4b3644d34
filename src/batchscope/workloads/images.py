"""Image data sets for the image workloads: real photographs, never a download.

Two sources, both returning ``(train, val, class_names)`` whose items are
``(float32 tensor 3×size×size normalised with ImageNet statistics, int label)``:

* :func:`sample_photo_split`: random crops of the two photographs that ship inside
  scikit-learn's wheel, so the built-in workload runs offline on real pixels. The crops
  are made once, up front, and kept as uint8, so loading one is a cheap index and the
  timings measure the network rather than our data generation.
* :func:`image_folder_split`: the user's own folder, one sub-folder per class (like
  torchvision's ``ImageFolder``). Every file is checked and fully decoded up front so a
  bad file stops the run before any trial, with one line naming it; training then
  decodes lazily per item, as a real pipeline does (the engine times data waits apart).

The data set classes live at module level and hold only tensors, paths and ints, so
DataLoader workers can pickle them.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from batchscope.errors import DataError

#: ImageNet channel statistics: what torchvision's ResNet weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Extensions accepted inside a class folder (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

#: Crop side as a fraction of the photo's short side: small enough that crops differ,
#: large enough that each still shows recognisable content of its photo.
CROP_SCALE = (0.25, 0.9)

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (3,H,W) -> float32 normalised with ImageNet mean/std."""
    return (pixels.float().div_(255.0) - _MEAN) / _STD


class PhotoCropDataset(Dataset[tuple[torch.Tensor, int]]):
    """Pre-generated uint8 images held in memory; ``__getitem__`` only normalises."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images must be uint8 (N,3,H,W), got {images.dtype} {tuple(images.shape)}"
            )
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels
        self.classes = list(classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return _normalise(self.images[index]), int(self.labels[index])


class ImageFileDataset(Dataset[tuple[torch.Tensor, int]]):
    """Image files decoded on every access: resize the short side, centre-crop, normalise."""

    def __init__(
        self, samples: Sequence[tuple[str, int]], classes: Sequence[str], size: int
    ) -> None:
        self.samples = list(samples)
        self.classes = list(classes)
        self.size = size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        with Image.open(path) as img:
            rgb = _resize_centre_crop(img.convert("RGB"), self.size)
        pixels = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)
        return _normalise(pixels), label


def _resize_centre_crop(img: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size`` (bilinear, as torchvision's Resize), then a centre square."""
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return img.crop((left, top, left + size, top + size))


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")


# --------------------------------------------------------------------------- built-in photos


def sample_photo_folder() -> Path:
    """The folder of scikit-learn's sample JPEGs, found without importing scikit-learn.

    ``import sklearn`` costs about 1.6 s, paid again in every trial's fresh child; the
    two photos are plain files in its wheel, read here with PIL exactly as
    ``sklearn.datasets.load_sample_images`` reads them.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("scikit-learn is not installed: its sample photos are the built-in data")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "images"


@functools.cache
def _sample_photos() -> tuple[tuple[str, np.ndarray], ...]:
    """(class name, HxWx3 uint8 array) of scikit-learn's sample photos, sorted by name."""
    named = []
    for path in sorted(sample_photo_folder().glob("*.jpg")):
        with path.open("rb") as handle:
            image = np.ascontiguousarray(np.asarray(Image.open(handle)))
        image.setflags(write=False)  # cached and shared: nobody may edit it
        named.append((path.stem, image))
    if not named:
        raise ImportError(f"no sample photos in {sample_photo_folder()}")
    return tuple(named)


def sample_photo_dataset(n_images: int, *, size: int = 192, seed: int = 0) -> PhotoCropDataset:
    """``n_images`` random crops of two real photos, class = which photo, made from ``seed``.

    Each crop is a random square (``CROP_SCALE`` of the short side, random position,
    random horizontal flip) resized to ``size``×``size``. Classes alternate, so they are
    balanced to within one image. The same arguments always give the same pixels.
    """
    _check_size(size)
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 2:
        raise ValueError(f"n_images must be an int >= 2 (one per class), got {n_images!r}")
    photos = [Image.fromarray(array) for _, array in _sample_photos()]
    classes = [name for name, _ in _sample_photos()]
    rng = np.random.default_rng(seed)
    images = np.empty((n_images, size, size, 3), dtype=np.uint8)
    labels = np.arange(n_images) % len(photos)
    for i, label in enumerate(labels):
        photo = photos[label]
        w, h = photo.size
        side = max(1, round(rng.uniform(*CROP_SCALE) * min(w, h)))
        left = int(rng.integers(0, w - side + 1))
        top = int(rng.integers(0, h - side + 1))
        crop = photo.resize(
            (size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side)
        )
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        images[i] = np.asarray(crop)
    return PhotoCropDataset(
        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(labels),
        classes,
    )


def _stratified_split(
    labels: Sequence[int], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices (train, val): about ``val_fraction`` of each class in val, both non-empty.

    Each class keeps at least one training image when it has two or more; if rounding
    leaves val empty, one image of the largest class moves there. Order is shuffled.
    """
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    train: list[int] = []
    val: list[int] = []
    largest: list[int] = []
    for label in sorted(by_class):
        members = [by_class[label][i] for i in rng.permutation(len(by_class[label]))]
        n_val = min(len(members) - 1, round(len(members) * val_fraction))
        val += members[:n_val]
        train += members[n_val:]
        if len(members) > len(largest):
            largest = members
    if not val:
        moved = largest[-1]
        train.remove(moved)
        val.append(moved)
    if not train:
        raise ValueError("need at least two images to split into train and validation")
    train = [train[i] for i in rng.permutation(len(train))]
    val = [val[i] for i in rng.permutation(len(val))]
    return train, val


def sample_photo_split(
    n_images: int = 600, size: int = 192, seed: int = 0
) -> tuple[PhotoCropDataset, PhotoCropDataset, list[str]]:
    """:func:`sample_photo_dataset` split 80/20 per class (from ``seed``): train, val, classes.

    ``n_images`` must be at least 4, so that both classes appear in both splits.
    """
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 4:
        raise ValueError(
            f"n_images must be an int >= 4 (two per class, one each for train and val), "
            f"got {n_images!r}"
        )
    full = sample_photo_dataset(n_images, size=size, seed=seed)
    train_idx, val_idx = _stratified_split(full.labels.tolist(), 0.2, seed)

    def subset(indices: list[int]) -> PhotoCropDataset:
        index = torch.tensor(indices, dtype=torch.long)
        return PhotoCropDataset(full.images[index], full.labels[index], full.classes)

    return subset(train_idx), subset(val_idx), list(full.classes)


# --------------------------------------------------------------------------- user folders


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _accepted() -> str:
    return ", ".join(IMAGE_EXTENSIONS)


def _class_files(class_dir: Path) -> list[Path]:
    """Every non-hidden file under ``class_dir`` (recursively, sorted); hidden dirs skipped."""
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [Path(dirpath, f) for f in sorted(filenames) if not f.startswith(".")]
    return files


def _check_image(path: Path) -> None:
    """Raise :class:`DataError` unless ``path`` has an image extension and decodes fully."""
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise DataError(
            f"{str(path)!r} is not an image file: accepted extensions are {_accepted()} "
            "(remove it or move it out of the class folder)"
        )
    try:
        with Image.open(path) as img:
            img.convert("RGB").load()
    except Exception as exc:  # PIL raises many types for bad files; all mean "unusable"
        raise DataError(
            f"image {str(path)!r} cannot be decoded (corrupt or truncated?): {_one_line(exc)}"
        ) from exc


def scan_image_folder(root: str | os.PathLike[str]) -> tuple[list[tuple[str, int]], list[str]]:
    """Check ``root`` (one sub-folder per class) and return ``(samples, class_names)``.

    Every file is opened and fully decoded here, so any bad file is reported before
    training starts. Hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``)
    are skipped; loose files directly in ``root`` are ignored, as ImageFolder does.
    """
    root_path = Path(root).expanduser()
    layout = f"expected one sub-folder per class holding images ({_accepted()})"
    if not root_path.exists():
        raise DataError(f"data folder {str(root_path)!r} does not exist: {layout}")
    if not root_path.is_dir():
        raise DataError(f"data path {str(root_path)!r} is not a folder: {layout}")
    try:
        entries = sorted(e for e in root_path.iterdir() if not e.name.startswith("."))
    except OSError as exc:
        raise DataError(f"cannot read data folder {str(root_path)!r}: {_one_line(exc)}") from exc
    class_dirs = [e for e in entries if e.is_dir()]
    if not class_dirs:
        loose = [e for e in entries if e.suffix.lower() in IMAGE_EXTENSIONS]
        if loose:
            raise DataError(
                f"data folder {str(root_path)!r} has images but no class sub-folders: "
                f"{layout}, e.g. {root_path / 'cats'}/ and {root_path / 'dogs'}/"
            )
        raise DataError(f"data folder {str(root_path)!r} is empty: {layout}")
    files_per_class = [_class_files(d) for d in class_dirs]
    if not any(files_per_class):
        raise DataError(f"data folder {str(root_path)!r} is empty (no images): {layout}")
    for class_dir, files in zip(class_dirs, files_per_class, strict=True):
        if not files:
            raise DataError(
                f"class folder {str(class_dir)!r} has no images: put images in it "
                f"({_accepted()}) or remove it"
            )
    if len(class_dirs) < 2:
        raise DataError(
            f"data folder {str(root_path)!r} has only one class ({class_dirs[0].name!r}): "
            "needs at least two classes, one sub-folder each"
        )
    samples: list[tuple[str, int]] = []
    for label, files in enumerate(files_per_class):
        for path in files:
            _check_image(path)
            samples.append((str(path), label))
    return samples, [d.name for d in class_dirs]


def image_folder_split(
    root: str | os.PathLike[str], *, size: int = 192, seed: int = 0, val_fraction: float = 0.2
) -> tuple[ImageFileDataset, ImageFileDataset, list[str]]:
    """The user's folder split per class into train/val (from ``seed``): train, val, classes.

    Raises :class:`DataError` with one line naming the offending path for a missing or
    empty folder, a single class, or a file that is not a decodable image.
    """
    _check_size(size)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction!r}")
    samples, classes = scan_image_folder(root)
    train_idx, val_idx = _stratified_split([label for _, label in samples], val_fraction, seed)
    return (
        ImageFileDataset([samples[i] for i in train_idx], classes, size),
        ImageFileDataset([samples[i] for i in val_idx], classes, size),
        classes,
    )
