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
    "CurveFit",
    "MaxBatchResult",
    "NoiseEstimate",
    "Plan",
    "ReportFiles",
    "RunAnalysis",
    "RunResult",
    "StepStats",
    "Store",
    "TrialResult",
    "TrialSpec",
    "Workload",
    "WorkloadOptions",
    "__version__",
    "accuracy",
    "analyse_run",
    "detect_u_shape",
    "estimate_noise_scale",
    "find_max_batch_size",
    "fit_throughput_model",
    "fit_time_model",
    "goodput",
    "load_workload",
    "measure",
    "parse_batch_sizes",
    "run_sweep",
    "sweep",
    "write_report",
]

_LAZY = {
    "BatchscopeError": "batchscope.errors",
    "CurveFit": "batchscope.fit",
    "detect_u_shape": "batchscope.fit",
    "fit_throughput_model": "batchscope.fit",
    "fit_time_model": "batchscope.fit",
    "RunAnalysis": "batchscope.explain",
    "analyse_run": "batchscope.explain",
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
    "run_sweep": "batchscope.sweeper",
    "sweep": "batchscope.sweeper",
    "MaxBatchResult": "batchscope.search",
    "find_max_batch_size": "batchscope.search",
    "ReportFiles": "batchscope.report.build",
    "write_report": "batchscope.report.build",
    "NoiseEstimate": "batchscope.noise",
    "estimate_noise_scale": "batchscope.noise",
    "goodput": "batchscope.noise",
    "measure": "batchscope.integrations.measure",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'batchscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
