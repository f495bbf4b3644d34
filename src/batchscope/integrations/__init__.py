"""Where users already train: fastai Learners, Keras models, and their own loops.

Each framework module offers ``probe(entry, options) -> dict`` (the workload
description a run records, loaded once before any trial) and
``run_trial(spec, progress) -> TrialResult`` (one trial, run in the trial's
child process like every other). :mod:`batchscope.integrations.measure` is the
context manager for hand-written PyTorch loops.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import UsageError

#: framework name -> module under batchscope.integrations
FRAMEWORKS = {"fastai": "fastai", "keras": "keras"}


def framework_module(framework: str) -> Any:
    """The integration module that runs ``framework``'s trials."""
    name = FRAMEWORKS.get(framework)
    if name is None:
        raise UsageError(f"unknown framework {framework!r}: use one of {', '.join(FRAMEWORKS)}")
    return importlib.import_module(f"{__name__}.{name}")
