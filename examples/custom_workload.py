"""Your own PyTorch model as a batchscope workload.

A workload is data plus factories; batchscope owns the training loop, so every
batch size is timed the same way. Run it from the command line:

    batchscope sweep examples/custom_workload.py:make_workload --batch-sizes 16..256 --steps 30

or from Python (this file's ``__main__``):

    python examples/custom_workload.py

The data set here is scikit-learn's breast-cancer table (569 real samples, 30
features), which ships inside the scikit-learn wheel: nothing is downloaded.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

import batchscope


def _model() -> nn.Module:
    """Called once per trial: every batch size starts from the same seeded weights."""
    return nn.Sequential(
        nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)
    )


def _optimizer(params):  # type: ignore[no-untyped-def]
    return torch.optim.AdamW(params, lr=3e-3)


def make_workload() -> batchscope.Workload:
    """Return the Workload; batchscope calls this in each trial's own process."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = torch.tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    n_train = int(0.8 * len(y))
    return batchscope.Workload(
        name="breast-cancer-mlp",
        model=_model,
        train_dataset=TensorDataset(x[:n_train], y[:n_train]),
        val_dataset=TensorDataset(x[n_train:], y[n_train:]),
        loss=nn.CrossEntropyLoss(),
        optimizer=_optimizer,
        metric=batchscope.accuracy,
        head=lambda model: model[-1],  # trained alone during --freeze-epochs
        description="3-layer MLP on scikit-learn's breast-cancer table (569 samples)",
    )


if __name__ == "__main__":
    run = batchscope.sweep(
        f"{__file__}:make_workload", [16, 64, 256], epochs=3, warmup=2, store=None
    )
    for trial in run.trials:
        accuracy = trial.epochs[-1].metrics.get("accuracy") if trial.epochs else None
        print(
            f"batch {trial.batch_size:4d}: {trial.samples_per_s:10.0f} samples/s, "
            f"{trial.total_time_s:.2f} s for 3 epochs, validation accuracy {accuracy:.3f}"
        )
