"""Who trains a trial: batchscope's own engine, or a framework integration, by name.

A framework integration (fastai, Keras, Lightning) lives in :mod:`batchscope.integrations` and
offers ``probe(entry, options) -> dict`` and ``run_trial(spec, progress) ->
TrialResult``. The runner finds it here by name, imported when a trial needs it: a
plug-in point, so the stages that run trials do not depend on the integrations
that build on them.
"""

from __future__ import annotations

import importlib
from typing import Any

from batchscope.errors import UsageError

#: framework name -> the module that trains it
FRAMEWORKS = {
    "fastai": "batchscope.integrations.fastai",
    "keras": "batchscope.integrations.keras",
    "lightning": "batchscope.integrations.lightning",
}


def framework_module(framework: str) -> Any:
    """The integration module that runs ``framework``'s trials."""
    name = FRAMEWORKS.get(framework)
    if name is None:
        raise UsageError(f"unknown framework {framework!r}: use one of {', '.join(FRAMEWORKS)}")
    return importlib.import_module(name)
