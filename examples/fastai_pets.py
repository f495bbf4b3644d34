"""The seeds' fastai pipeline (seeds 000/003), swept over batch sizes with batchscope.

The seeds fine-tuned a ResNet-18 with fastai on 600 images of two classes::

    dls = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
                    splitter=RandomSplitter(valid_pct=0.2, seed=42),
                    get_y=parent_label, item_tfms=Resize(192)).dataloaders(path, bs=bs)
    learn = vision_learner(dls, resnet18, metrics=error_rate)
    learn.fine_tune(3)

``make_learner(bs)`` below is that pipeline, as a function of the batch size. From
the command line::

    batchscope sweep --fastai examples/fastai_pets.py:make_learner -b 16..256 --fit "fine_tune(3)"

or from Python (this file's ``__main__``, a quick two-size sweep)::

    python examples/fastai_pets.py

The images: an image folder (one sub-folder per class) named by the environment
variable ``BATCHSCOPE_FASTAI_DATA``, or by default two classes of real photographs
(random crops of the two photos inside scikit-learn's wheel) written once as JPEG
files into a cache folder. Nothing is downloaded: the ResNet-18 starts from random
weights (``pretrained=False``); with your own data and ``pretrained=True`` it is the
seeds' exact pipeline. The environment variables ``BATCHSCOPE_FASTAI_IMAGES``
(default 600), ``BATCHSCOPE_FASTAI_SIZE`` (default 192, the side of the images and
of ``Resize``) and ``BATCHSCOPE_FASTAI_WORKERS`` (DataLoader workers, default
fastai's) make it smaller or faster.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "batchscope"


def write_photo_folder(root: str | os.PathLike[str], n_images: int, size: int) -> Path:
    """Write ``n_images`` ``size``×``size`` JPEG crops of two real photos as ``root/<class>/``.

    Done once: an existing complete folder is reused. The folder appears whole or
    not at all (written next to it, then renamed), so concurrent trials are safe.
    """
    from PIL import Image

    from batchscope.workloads.images import sample_photo_dataset

    root = Path(root)
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    photos = sample_photo_dataset(n_images, size=size, seed=0)
    for i in range(len(photos)):
        label = photos.classes[int(photos.labels[i])]
        (staging / label).mkdir(exist_ok=True)
        pixels = photos.images[i].permute(1, 2, 0).numpy()
        Image.fromarray(pixels).save(staging / label / f"{i:04d}.jpg", quality=95)
    try:
        staging.rename(root)
    except OSError:  # another process finished first: use its folder
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return root


def data_folder() -> Path:
    """``$BATCHSCOPE_FASTAI_DATA``, or the built-in photos written once into the cache."""
    given = os.environ.get("BATCHSCOPE_FASTAI_DATA")
    if given:
        return Path(given)
    n_images = _env_int("BATCHSCOPE_FASTAI_IMAGES", 600)
    size = _env_int("BATCHSCOPE_FASTAI_SIZE", 192)
    return write_photo_folder(_cache_root() / f"fastai-photos-{n_images}-{size}", n_images, size)


def make_learner(bs: int) -> Any:
    """The seeds' Learner with DataLoaders of batch size ``bs`` (called once per trial)."""
    from fastai.vision.all import (
        CategoryBlock,
        DataBlock,
        ImageBlock,
        RandomSplitter,
        Resize,
        error_rate,
        get_image_files,
        parent_label,
        resnet18,
        vision_learner,
    )

    size = _env_int("BATCHSCOPE_FASTAI_SIZE", 192)
    workers = os.environ.get("BATCHSCOPE_FASTAI_WORKERS")
    loader_options = {"num_workers": int(workers)} if workers else {}
    dls = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=get_image_files,
        splitter=RandomSplitter(valid_pct=0.2, seed=42),
        get_y=parent_label,
        item_tfms=Resize(size),
    ).dataloaders(data_folder(), bs=bs, **loader_options)
    return vision_learner(dls, resnet18, metrics=error_rate, pretrained=False)


if __name__ == "__main__":
    from batchscope.integrations.fastai import sweep_learner

    run = sweep_learner(make_learner, [16, 32], fit="fine_tune(1)")
    print(f"run {run.run_id}: {run.workload['description']}")
    for trial in run.trials:
        if not trial.ok:
            print(f"bs={trial.batch_size:>4}  {trial.status}: {trial.error}")
            continue
        error = trial.epochs[-1].metrics.get("error_rate") if trial.epochs else None
        step = (
            f"step {trial.step_time_s.median * 1000:7.1f} ms  {trial.samples_per_s:7.1f} samples/s"
            if trial.step_time_s is not None and trial.samples_per_s is not None
            else "no step timed after warm-up"
        )
        print(
            f"bs={trial.batch_size:>4}  {step}  {trial.samples_per_epoch} samples/epoch  "
            f"total {trial.total_time_s or 0:6.1f} s  error_rate {error}"
        )
    for note in {note for trial in run.trials for note in trial.notes}:
        print(f"note: {note}")
