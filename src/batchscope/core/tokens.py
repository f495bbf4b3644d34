"""Tokens as the unit of a sequence workload: one definition of each token figure.

A sequence workload (``Workload.seq_len``, e.g. the ``gpt`` built-in) trains on
``seq_len`` tokens per sample, so the batch that matters is tokens: ``tokens_per_step``
= effective batch × seq_len, ``tokens_per_s`` = tokens_per_step ÷ the median step time
(its 95 % interval from the median's, the slow end from the high median, as samples/s),
``flops_per_token`` = flops_per_step ÷ tokens_per_step, and ``val_perplexity`` =
exp(validation loss in nats per token). The engine stamps them on each trial here;
analysis and reports read these fields (or :class:`batchscope.analyse.points.Point`'s
token figures, built from ``tokens_per_step``) and never recompute them.
"""

from __future__ import annotations

import math
from typing import Any

#: a :class:`batchscope.core.results.TrialResult` (not imported: results imports this)
TrialResult = Any


def tokens_per_step(effective_batch_size: int, seq_len: int | None) -> int | None:
    """The tokens behind one optimizer step; None without a sequence."""
    return effective_batch_size * int(seq_len) if seq_len else None


def stamp_tokens(result: TrialResult, seq_len: int | None) -> None:
    """Record the trial's sequence length and tokens per optimizer step (None: no sequence)."""
    if not seq_len:
        return
    result.seq_len = int(seq_len)
    # a data-parallel trial's step holds every rank's batch: its global batch
    result.tokens_per_step = tokens_per_step(
        result.global_batch_size or result.effective_batch_size or result.batch_size, seq_len
    )


def stamp_token_rates(result: TrialResult) -> None:
    """tokens_per_s with its interval, and flops_per_token, from the step statistics."""
    tokens = result.tokens_per_step
    if not tokens:
        return
    if result.flops_per_step is not None:
        result.flops_per_token = result.flops_per_step / tokens
    s = result.step_time_s
    if s is None or s.median <= 0:
        return
    result.tokens_per_s = tokens / s.median
    result.tokens_per_s_low = tokens / s.median_high if s.median_high else None
    result.tokens_per_s_high = tokens / s.median_low if s.median_low else None


def perplexity(loss: float | None) -> float | None:
    """exp(mean cross-entropy per token in nats); None for a missing or non-finite loss."""
    if loss is None or not math.isfinite(loss):
        return None
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf
