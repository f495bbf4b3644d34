"""Seed 002's example: ``nn.Linear(10, 1)`` regression with SGD(lr=0.01) and MSE.

The data are synthetic, ``y = X·w + noise`` with a fixed seed, so the task has a
known answer (the true ``w``) and the network's speed is all overhead: this
workload shows what a batch size costs when compute is nearly free.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from batchscope.workloads.base import Workload
from batchscope.workloads.loader import WorkloadOptions

N_FEATURES = 10
NOISE_STD = 0.1


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(X, y, w)`` with ``X ~ N(0, I)``, ``y = X·w + N(0, 0.1²)``."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(N_FEATURES, 1, generator=gen)
    x = torch.randn(n, N_FEATURES, generator=gen)
    y = x @ w + NOISE_STD * torch.randn(n, 1, generator=gen)
    return x, y, w


def _model() -> nn.Module:
    return nn.Linear(N_FEATURES, 1)


def _optimizer(params: object) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.01)  # type: ignore[arg-type]


def build(options: WorkloadOptions) -> Workload:
    n = options.images or 10_000
    n_val = max(1, n // 5)
    x, y, w = make_data(n + n_val, seed=options.seed)
    return Workload(
        name="linear",
        model=_model,
        train_dataset=TensorDataset(x[:n], y[:n]),
        val_dataset=TensorDataset(x[n:], y[n:]),
        loss=nn.MSELoss(),
        optimizer=_optimizer,
        description="the SGD write-up's nn.Linear(10, 1) regression, SGD(lr=0.01), MSE",
        info={"n_train": n, "n_val": n_val, "features": N_FEATURES, "noise_std": NOISE_STD},
    )
