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
    "CurveFit": "batchscope.analyse.curves",
    "detect_u_shape": "batchscope.analyse.ushape",
    "fit_throughput_model": "batchscope.analyse.curves",
    "fit_time_model": "batchscope.analyse.curves",
    "RunAnalysis": "batchscope.analyse.explain",
    "analyse_run": "batchscope.analyse.explain",
    "Plan": "batchscope.core.plan",
    "TrialSpec": "batchscope.core.plan",
    "parse_batch_sizes": "batchscope.core.plan",
    "RunResult": "batchscope.core.results",
    "StepStats": "batchscope.core.results",
    "TrialResult": "batchscope.core.results",
    "Store": "batchscope.run.store",
    "Workload": "batchscope.workloads",
    "WorkloadOptions": "batchscope.workloads",
    "accuracy": "batchscope.workloads",
    "load_workload": "batchscope.workloads",
    "run_sweep": "batchscope.run.sweep",
    "sweep": "batchscope.run.sweep",
    "MaxBatchResult": "batchscope.run.maxbs",
    "find_max_batch_size": "batchscope.run.maxbs",
    "ReportFiles": "batchscope.report.build",
    "write_report": "batchscope.report.build",
    "NoiseEstimate": "batchscope.run.noise_run",
    "estimate_noise_scale": "batchscope.run.noise_run",
    "goodput": "batchscope.run.noise_run",
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
