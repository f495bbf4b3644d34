"""The ``resnet18`` built-in: torchvision ResNet-18 with a new head, as seeds 000/003 train it.

The seeds fine-tune an ImageNet ResNet-18 with fastai (Adam, lr 1e-3, a new 2-class
head) on ~600 scraped photos at 192×192. Nothing may be downloaded here, so the body is
randomly initialised unless ``--weights`` names a local state dict, and the built-in data
are crops of two real photos that ship with scikit-learn (``--data DIR`` for your own).
Timing per step does not depend on the weights' values; accuracy does, and a note says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torch.utils.data import Dataset

from batchscope.errors import DataError, WorkloadError
from batchscope.workloads.base import Workload, accuracy
from batchscope.workloads.images import image_folder_split, sample_photo_split
from batchscope.workloads.loader import BUILTINS, WorkloadOptions

NAME = "resnet18"
DEFAULT_IMAGES = 600
DEFAULT_IMAGE_SIZE = 192
#: ResNet-18 downsamples 32×; smaller inputs reach a 1×1 map before the last stage.
MIN_IMAGE_SIZE = 32
LEARNING_RATE = 1e-3  # fastai's default for Adam

_HEAD_PREFIX = "fc."
#: BatchNorm counters: absent from very old checkpoints and not weights, so optional.
_OPTIONAL_SUFFIX = "num_batches_tracked"


def head(model: nn.Module) -> nn.Module:
    """The new classifier: what ``--freeze-epochs`` trains while the body is frozen."""
    return model.fc  # type: ignore[return-value]


def adam(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """fastai's default optimizer and learning rate for fine-tuning."""
    return torch.optim.Adam(params, lr=LEARNING_RATE)


class ResNet18Factory:
    """Builds a fresh ResNet-18 per call: optional body weights, then a new ``n_classes`` head.

    A class rather than a closure so the workload's factory stays picklable. The random
    initialisation draws from torch's global generator, which the engine seeds first.
    """

    def __init__(self, n_classes: int, state_dict: Mapping[str, torch.Tensor] | None) -> None:
        self.n_classes = n_classes
        self.state_dict = state_dict

    def __call__(self) -> nn.Module:
        model = torchvision.models.resnet18(weights=None)
        if self.state_dict is not None:
            # validated in build(): only fc.* and BatchNorm counters may be absent
            model.load_state_dict(self.state_dict, strict=False)
        model.fc = nn.Linear(model.fc.in_features, self.n_classes)
        return model


def _shape(t: torch.Tensor) -> str:
    return "(" + ",".join(str(d) for d in t.shape) + ")"


def _examples(keys: list[str]) -> str:
    shown = ", ".join(keys[:3])
    return shown + (f", … {len(keys) - 3} more" if len(keys) > 3 else "")


def load_weights(path_str: str) -> dict[str, torch.Tensor]:
    """Load and check a ResNet-18 state dict; return it without its ``fc.*`` entries.

    The head is replaced anyway, so ``fc.*`` entries of any shape (or none) are accepted;
    everything else must match torchvision's ResNet-18 exactly.
    Raises :class:`DataError` when the file is absent, :class:`WorkloadError` when it is
    not a matching state dict.
    """
    path = Path(path_str).expanduser()
    expected = "a ResNet-18 state dict saved with torch.save(model.state_dict(), path)"
    if not path.exists():
        raise DataError(f"weights file {str(path)!r} does not exist: expected {expected}")
    if not path.is_file():
        raise DataError(f"weights path {str(path)!r} is not a file: expected {expected}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling raises many types; all mean "not a state dict"
        reason = " ".join(str(exc).split())[:200]
        raise WorkloadError(
            f"weights file {str(path)!r} cannot be loaded as {expected} "
            f"({type(exc).__name__}: {reason})"
        ) from exc
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise WorkloadError(
            f"weights file {str(path)!r} holds a {type(loaded).__name__}, not {expected}"
        )
    body = {k: v for k, v in loaded.items() if not k.startswith(_HEAD_PREFIX)}
    with torch.device("meta"):  # shapes only: no memory, no draw from torch's generator
        reference_model = torchvision.models.resnet18(weights=None)
    reference = {
        k: v for k, v in reference_model.state_dict().items() if not k.startswith(_HEAD_PREFIX)
    }
    missing = [k for k in reference if k not in body and not k.endswith(_OPTIONAL_SUFFIX)]
    unexpected = [k for k in body if k not in reference]
    mismatched = [
        f"{k} {_shape(body[k])} vs {_shape(v)}"
        for k, v in reference.items()
        if k in body and body[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s) ({_examples(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) ({_examples(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es) ({_examples(mismatched)})")
    if problems:
        raise WorkloadError(
            f"weights file {str(path)!r} does not match torchvision's ResNet-18: "
            + "; ".join(problems)
        )
    return body


def _positive_int(value: Any, what: str, minimum: int) -> int:
    """An int option (JSON or CLI text) of at least ``minimum``, else a one-line error."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise WorkloadError(f"resnet18: {what} must be an integer >= {minimum}, got {value!r}")
    return value


def build(options: WorkloadOptions) -> Workload:
    """The ``resnet18`` workload; data and weights are checked here, before any trial."""
    size = _positive_int(
        options.extra.get("image_size", DEFAULT_IMAGE_SIZE), "image_size", MIN_IMAGE_SIZE
    )
    state_dict = load_weights(options.weights) if options.weights else None
    notes: list[str] = []
    train: Dataset[tuple[torch.Tensor, int]]
    val: Dataset[tuple[torch.Tensor, int]]
    if options.data:
        train, val, classes = image_folder_split(options.data, size=size, seed=options.seed)
        source = f"folder {options.data}"
    else:
        n_images = DEFAULT_IMAGES if options.images is None else options.images
        n_images = _positive_int(n_images, "--images", 4)
        train, val, classes = sample_photo_split(n_images, size, options.seed)
        source = "scikit-learn sample photos (china.jpg, flower.jpg)"
        notes.append(
            f"data: {n_images} random {size}×{size} crops of two scikit-learn sample photos "
            f"(classes {', '.join(classes)}), not the write-ups' scraped images; "
            "--data DIR uses your own"
        )
    if state_dict is None:
        notes.append(
            "ResNet-18 body is randomly initialised (no --weights): timings are valid, "
            "but accuracy is not that of a pretrained model"
        )
    if options.data is None and size == DEFAULT_IMAGE_SIZE:
        description = BUILTINS[NAME][1]
    else:
        description = (
            f"torchvision ResNet-18, new {len(classes)}-class head, {size}×{size} photos ({source})"
        )
    return Workload(
        name=NAME,
        model=ResNet18Factory(len(classes), state_dict),
        train_dataset=train,
        val_dataset=val,
        loss=nn.CrossEntropyLoss(),
        optimizer=adam,
        metric=accuracy,
        head=head,
        description=description,
        notes=notes,
        info={
            "image_size": size,
            "n_train": len(train),
            "n_val": len(val),
            "classes": list(classes),
            "data": source,
            "weights": options.weights,
        },
    )
