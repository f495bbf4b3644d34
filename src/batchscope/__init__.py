"""batchscope: measure how batch size and hardware change training, and pick the batch size.

``import batchscope`` is fast and does not import torch; torch is imported where
a trial runs. The names below are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "BatchscopeError",
    "Plan",
    "RunResult",
    "StepStats",
    "Store",
    "TrialResult",
    "TrialSpec",
    "Workload",
    "WorkloadOptions",
    "__version__",
    "accuracy",
    "load_workload",
    "parse_batch_sizes",
    "run_sweep",
    "sweep",
]

_LAZY = {
    "BatchscopeError": "batchscope.errors",
    "Plan": "batchscope.plan",
    "TrialSpec": "batchscope.plan",
    "parse_batch_sizes": "batchscope.plan",
    "RunResult": "batchscope.results",
    "StepStats": "batchscope.results",
    "TrialResult": "batchscope.results",
    "Store": "batchscope.store",
    "Workload": "batchscope.workloads",
    "WorkloadOptions": "batchscope.workloads",
    "accuracy": "batchscope.workloads",
    "load_workload": "batchscope.workloads",
    "run_sweep": "batchscope.sweep",
    "sweep": "batchscope.sweep",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'batchscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
