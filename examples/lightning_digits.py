r"""batchscope's ``digits`` workload written the Lightning way: a LightningModule and a DataModule.

The data are scikit-learn's 8×8 handwritten digits (1,797 images that ship inside
the scikit-learn wheel, nothing is downloaded), split 80/20 with a fixed seed; the
model is the built-in ``digits`` CNN with Adam(lr=1e-3), so the two can be compared
side by side on the same model and data:

    batchscope sweep digits -b 16..256 --steps 30 --warmup 3
    batchscope sweep --lightning examples/lightning_digits.py:make -b 16..256 --steps 30 --warmup 3
    batchscope maxbs --lightning examples/lightning_digits.py:make --memory-limit 256MiB

or from Python (this file's ``__main__``):

    python examples/lightning_digits.py

Needs ``pip install 'batchscope[lightning]'`` (``lightning`` or ``pytorch-lightning``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

try:
    import lightning.pytorch as pl
except ModuleNotFoundError:
    import pytorch_lightning as pl

from batchscope.workloads.digits import DigitsCNN, load_digits_split


class DigitsModule(pl.LightningModule):
    """The CNN, cross-entropy, Adam(1e-3); logs ``val_loss`` and ``val_accuracy``."""

    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.model = DigitsCNN()
        self.loss = nn.CrossEntropyLoss()
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return self.loss(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", self.loss(logits, y), prog_bar=False)
        self.log("val_accuracy", (logits.argmax(1) == y).float().mean(), prog_bar=False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class DigitsData(pl.LightningDataModule):
    """The 80/20 split of batchscope's ``digits`` workload, at one batch size."""

    def __init__(self, batch_size: int, seed: int = 0) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.seed = seed

    def setup(self, stage: str | None = None) -> None:
        self.train, self.val = load_digits_split(self.seed)

    def train_dataloader(self) -> DataLoader:
        shuffle = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True, generator=shuffle)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=self.batch_size)


def make(batch_size: int) -> tuple[DigitsModule, DigitsData]:
    """What batchscope calls in every trial (after seeding): module and data for one size."""
    return DigitsModule(), DigitsData(batch_size)


if __name__ == "__main__":
    from batchscope.integrations.lightning import sweep_module

    run = sweep_module(make, [16, 128], steps=20, warmup=3, peak=False)
    for trial in run.trials:
        if trial.ok and trial.samples_per_s is not None:
            print(
                f"batch {trial.batch_size:>4}: {trial.samples_per_s:>9,.0f} samples/s, "
                f"final loss {trial.final_train_loss:.3f}"
            )
        else:
            print(f"batch {trial.batch_size:>4}: {trial.status} ({trial.error})")
