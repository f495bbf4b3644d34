"""A small CNN on scikit-learn's real 8×8 handwritten digits (1,797 images, 10 classes).

Real data that ships inside the scikit-learn wheel: quick enough to train to a
meaningful accuracy on a laptop CPU at every batch size.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from batchscope.workloads.base import Workload, accuracy
from batchscope.workloads.loader import WorkloadOptions


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _optimizer(params: object) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=0.001)  # type: ignore[arg-type]


def _head(model: nn.Module) -> nn.Module:
    return model.head  # type: ignore[return-value]


def load_digits_split(seed: int) -> tuple[TensorDataset, TensorDataset]:
    """80/20 split of the digits, pixel values scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    n_train = int(round(len(y) * 0.8))
    return TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:], y[n_train:])


def build(options: WorkloadOptions) -> Workload:
    train, val = load_digits_split(options.seed)
    return Workload(
        name="digits",
        model=DigitsCNN,
        train_dataset=train,
        val_dataset=val,
        loss=nn.CrossEntropyLoss(),
        optimizer=_optimizer,
        metric=accuracy,
        head=_head,
        description="small CNN on scikit-learn's 1,797 real 8×8 digits, 10 classes, Adam",
        info={
            "n_train": len(train),
            "n_val": len(val),
            "input_shape": [1, 8, 8],
            "classes": 10,
            "data": "sklearn.datasets.load_digits",
        },
    )
