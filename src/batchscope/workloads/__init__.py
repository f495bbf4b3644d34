"""Workloads: the protocol, the built-ins, and loading a workload from a spec string.

A spec is a built-in name (``resnet18``), ``module:function`` or
``path/to/file.py:function``; the function returns a :class:`Workload`.
"""

from __future__ import annotations

from batchscope.workloads.base import Workload, accuracy
from batchscope.workloads.loader import BUILTINS, WorkloadOptions, describe_builtins, load_workload

__all__ = [
    "BUILTINS",
    "Workload",
    "WorkloadOptions",
    "accuracy",
    "describe_builtins",
    "load_workload",
]
