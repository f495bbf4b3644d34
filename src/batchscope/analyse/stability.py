"""Have the verdicts settled? The stopping rule of ``--repeats auto``.

A run's *verdicts* are, per series, the set of batch sizes that are fastest or tied
with the fastest, and the U-shape verdict. ``--repeats auto`` adds a round while the
last round changed them: the verdicts of all rounds are compared with those of all
rounds but the last. ``benchmarks/verdict_stability.py`` uses the same signature to
count how often repeated sweeps agree.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from batchscope.core.results import RunResult


def verdict_signature(run: RunResult) -> dict[str, dict[str, Any]]:
    """Per series: ``{"fastest_set": [..], "u_shape": "u" | "no_u" | "not_judged"}``."""
    from batchscope.analyse.explain import analyse_run

    out: dict[str, dict[str, Any]] = {}
    for d in analyse_run(run).devices:
        out[d.device] = {
            "fastest_set": d.ranking.fastest_set,
            "u_shape": d.u_shape.verdict if d.u_shape is not None else "not_judged",
        }
    return out


def without_last_round(run: RunResult) -> RunResult:
    """The run as it stood before its last round."""
    last = max((t.repeat for t in run.trials), default=0)
    return dataclasses.replace(run, trials=[t for t in run.trials if t.repeat < last])


def verdicts_settled(run: RunResult) -> bool:
    """True when the last round left every series' verdicts as they were before it."""
    if max((t.repeat for t in run.trials), default=0) < 1:
        return False
    return verdict_signature(run) == verdict_signature(without_last_round(run))
