"""Where users already train: fastai Learners, Keras models, LightningModules, their own loops.

Each framework module offers ``probe(entry, options) -> dict`` (the workload
description a run records, loaded once before any trial) and
``run_trial(spec, progress) -> TrialResult`` (one trial, run in the trial's
child process like every other); the runner finds them by name
(:mod:`batchscope.engine.frameworks`). :mod:`batchscope.integrations.measure` is the
context manager for hand-written PyTorch loops.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from batchscope.errors import UsageError


def importable_entry(obj: str | Callable[..., Any], what: str = "function") -> str:
    """The ``module:function`` (or ``/path/file.py:function``) a trial's child imports.

    A string is taken as already such an entry. A function must be defined at
    module level; one of the running script (``__main__``), of a file loaded by
    path, or of a top-level module is named by its file, which needs nothing on
    the child's ``sys.path``.
    """
    if isinstance(obj, str):
        return obj
    if not callable(obj):
        raise UsageError(f"{what} must be a function or a 'module:function' string, got {obj!r}")
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    module_name = getattr(obj, "__module__", None)
    if not qualname or not module_name or "<" in qualname or "." in qualname:
        raise UsageError(
            f"{what} {qualname or obj!r} must be a function defined at module level, which "
            f"the trials' child processes can import: define {what} at the top level of a "
            "module or script (not a lambda, nested function or method)"
        )
    module = sys.modules.get(module_name)
    spec = getattr(module, "__spec__", None)
    by_file = (
        module_name == "__main__"
        or module_name.startswith("batchscope_user_")
        or spec is None
        or not getattr(spec, "parent", "")
    )
    if module_name != "__main__" and getattr(module, qualname, None) is not obj:
        raise UsageError(
            f"{what} {module_name}.{qualname} cannot be imported by that name: define it at "
            "the top level of a module"
        )
    if by_file:
        path = getattr(module, "__file__", None)
        if not path:
            raise UsageError(
                f"{what} {qualname!r} was defined interactively: put it in a .py file "
                "so the trials' child processes can import it"
            )
        return f"{os.path.abspath(path)}:{qualname}"
    return f"{module_name}:{qualname}"
