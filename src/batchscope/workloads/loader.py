"""Resolve a workload spec into a :class:`Workload`, with one clear error per failure."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchscope.errors import WorkloadError
from batchscope.workloads.base import Workload

#: name -> (module that builds it, one-line description). Modules are imported only
#: when the workload is used, so listing them does not import torch.
BUILTINS: dict[str, tuple[str, str]] = {
    "resnet18": (
        "batchscope.workloads.resnet18",
        "torchvision ResNet-18, new 2-class head, 192×192 photos (seeds 000/003); "
        "--data DIR for your own",
    ),
    "simplecnn": (
        "batchscope.workloads.simplecnn",
        "the step-timing write-up's SimpleCNN: one conv layer on 32×32×3 inputs, 10 classes, Adam",
    ),
    "linear": (
        "batchscope.workloads.linear",
        "the SGD write-up's nn.Linear(10, 1) regression, SGD(lr=0.01), MSE, "
        "synthetic y = Xw + noise",
    ),
    "digits": (
        "batchscope.workloads.digits",
        "small CNN on scikit-learn's 1,797 real 8×8 handwritten digits, 10 classes",
    ),
    "gpt": (
        "batchscope.workloads.gpt",
        "byte-level GPT (2 layers, width 128, 4 heads; --layers/--width/--heads) on the "
        "Python standard library's own source; --seq-lens 128,256 sweeps the sequence",
    ),
}


@dataclass(kw_only=True)
class WorkloadOptions:
    """Options a workload may use; each built-in reads the ones that apply to it.

    They travel to the child process of each trial as JSON, so they stay plain.
    """

    data: str | None = None
    weights: str | None = None
    images: int | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "weights": self.weights,
            "images": self.images,
            "seed": self.seed,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkloadOptions:
        return cls(**data)


def describe_builtins() -> list[tuple[str, str]]:
    """(name, description) of every built-in workload, without importing torch."""
    return [(name, desc) for name, (_, desc) in BUILTINS.items()]


def _import_from_path(path: Path) -> Any:
    if not path.is_file():
        raise WorkloadError(f"workload file {str(path)!r} does not exist")
    module_name = f"batchscope_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise WorkloadError(f"cannot import {str(path)!r} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: report, don't crash
        raise WorkloadError(f"importing {str(path)!r} failed: {type(exc).__name__}: {exc}") from exc
    return module


def resolve_callable(spec: str, what: str | None = None) -> Callable[..., Any]:
    """Import ``module:function`` or ``path/to/file.py:function`` and return the function.

    ``what`` names the option in the error for a spec without a colon (e.g.
    ``--fastai``); without it the spec was a workload name.
    """
    target, _, func_name = spec.rpartition(":")
    if not target or not func_name:
        if what is not None:
            raise WorkloadError(
                f"{what} {spec!r}: use 'module:function' or 'path/to/file.py:function'"
            )
        raise WorkloadError(
            f"unknown workload {spec!r}: use a built-in ({', '.join(BUILTINS)}), "
            "'module:function' or 'path/to/file.py:function'"
        )
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _import_from_path(Path(target))
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise WorkloadError(
                f"cannot import module {target!r} for workload {spec!r}: {exc}"
            ) from exc
        except Exception as exc:
            raise WorkloadError(
                f"importing module {target!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
    func = getattr(module, func_name, None)
    if func is None or not callable(func):
        raise WorkloadError(f"{target!r} has no function {func_name!r}")
    return func  # type: ignore[no-any-return,unused-ignore]


def _call_user_function(func: Callable[..., Any], spec: str, options: WorkloadOptions) -> Any:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    try:
        if "options" in params:
            return func(options=options)
        return func()
    except WorkloadError:
        raise
    except Exception as exc:
        raise WorkloadError(f"workload {spec!r} raised {type(exc).__name__}: {exc}") from exc


def load_workload(spec: str, options: WorkloadOptions | None = None) -> Workload:
    """Build the workload named by ``spec``.

    Raises :class:`WorkloadError` (or its :class:`DataError`) with one line that
    says what is wrong and what is accepted.
    """
    options = options or WorkloadOptions()
    spec = spec.strip()
    if not spec:
        raise WorkloadError("empty workload name: run 'batchscope workloads' to see the built-ins")
    if spec in BUILTINS:
        module = importlib.import_module(BUILTINS[spec][0])
        workload = module.build(options)
    elif ":" in spec:
        workload = _call_user_function(resolve_callable(spec), spec, options)
    else:
        raise WorkloadError(
            f"unknown workload {spec!r}: use a built-in ({', '.join(BUILTINS)}), "
            "'module:function' or 'path/to/file.py:function'"
        )
    if not isinstance(workload, Workload):
        raise WorkloadError(
            f"workload {spec!r} returned {type(workload).__name__}, not a batchscope.Workload"
        )
    return workload
