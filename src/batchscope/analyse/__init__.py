"""From results to verdicts: statistics, curve fits, speedups, memory model; no torch import."""
