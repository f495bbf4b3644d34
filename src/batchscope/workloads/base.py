"""The Workload: everything batchscope needs to train one network at any batch size.

A workload is data plus factories, not a training loop: the engine owns the loop,
so that every workload is timed the same way. Torch types appear only in type
hints, so importing this module stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import Dataset

#: ``metric(outputs, targets) -> {"accuracy": 0.9, ...}`` over one validation batch;
#: the engine averages it over the validation set, weighted by batch length.
MetricFn = Callable[["torch.Tensor", "torch.Tensor"], dict[str, float]]


@dataclass(kw_only=True)
class Workload:
    """A trainable task: a model factory, data sets, a loss and an optimizer factory.

    The factories are called once per trial, so every batch size starts from the
    same freshly built (and seeded) model and optimizer state.

    Attributes:
        name: short name shown in tables and stored with results.
        model: ``() -> nn.Module``; builds a fresh model on the CPU.
        train_dataset: a map-style ``Dataset`` of ``(input, target)`` pairs.
        loss: ``(outputs, targets) -> scalar tensor``.
        optimizer: ``(parameters) -> torch.optim.Optimizer``.
        val_dataset: optional; evaluated after every epoch of an ``--epochs`` run.
        metric: optional ``(outputs, targets) -> dict`` (e.g. accuracy).
        head: optional ``(model) -> nn.Module``: the part trained during
            ``--freeze-epochs`` (normalisation layers train too, as in fastai).
            Without it, the model's last child module with parameters is used.
        description: one line for ``batchscope workloads`` and reports.
        notes: facts the user must see with the results (e.g. "random weights").
        info: free-form facts recorded with the run (image size, classes, ...).
        seq_len: tokens per sample for a sequence workload (a language model), else
            None; with it every trial also counts tokens (tokens_per_step, tokens_per_s).
            ``--seq-lens`` passes each trial's length as ``options.extra["seq_len"]``;
            a workload that builds another length is refused for that trial.
    """

    name: str
    model: Callable[[], nn.Module]
    train_dataset: Dataset[Any]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
    val_dataset: Dataset[Any] | None = None
    metric: MetricFn | None = None
    head: Callable[[nn.Module], nn.Module] | None = None
    description: str = ""
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    seq_len: int | None = None


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Classification accuracy and error rate (fastai's ``error_rate``) of one batch."""
    correct = (outputs.argmax(dim=1) == targets).float().mean().item()
    return {"accuracy": correct, "error_rate": 1.0 - correct}
