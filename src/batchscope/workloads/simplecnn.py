"""Seed 001's SimpleCNN: conv(3→16) → ReLU → max-pool → linear, 32×32×3 in, 10 classes.

Seed 001 times it on random tensors; so do we (a fixed-seed synthetic set), since
its point is the cost of a step, not what is learned.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from batchscope.workloads.base import Workload, accuracy
from batchscope.workloads.loader import WorkloadOptions


class SimpleCNN(nn.Module):
    """Exactly seed 001's network."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc = nn.Linear(16 * 16 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        return self.fc(x.reshape(x.shape[0], -1))


def _optimizer(params: object) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=0.001)  # type: ignore[arg-type]


def _head(model: nn.Module) -> nn.Module:
    return model.fc  # type: ignore[return-value]


def build(options: WorkloadOptions) -> Workload:
    n = options.images or 5_000
    n_val = max(1, n // 5)
    gen = torch.Generator().manual_seed(options.seed)
    x = torch.randn(n + n_val, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (n + n_val,), generator=gen)
    return Workload(
        name="simplecnn",
        model=SimpleCNN,
        train_dataset=TensorDataset(x[:n], y[:n]),
        val_dataset=TensorDataset(x[n:], y[n:]),
        loss=nn.CrossEntropyLoss(),
        optimizer=_optimizer,
        metric=accuracy,
        head=_head,
        description=(
            "the step-timing write-up's SimpleCNN on 32×32×3 inputs, 10 classes, Adam(lr=0.001)"
        ),
        notes=[
            "simplecnn trains on random tensors (as the step-timing write-up does): "
            "its accuracy means nothing"
        ],
        info={"n_train": n, "n_val": n_val, "input_shape": [3, 32, 32], "classes": 10},
    )
