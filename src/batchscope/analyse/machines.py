"""Which machines a run's trials ran on, and which comparisons cross machines.

With ``--executor ray`` on a cluster, one series may run partly on one machine and
partly on another, or two series on two machines: a speedup between them then compares
hardware too. Each trial records ``hostname`` and ``machine_fingerprint``
(:mod:`batchscope.hardware.machine`); results older than that record neither and are
taken as one machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchscope.core.results import RunResult


@dataclass(frozen=True)
class Machine:
    """One machine of a run: its name, fingerprint, and what ran there."""

    hostname: str
    fingerprint: str
    trials: int
    series: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.hostname} ({self.fingerprint[:8]})"


def machines(run: RunResult) -> list[Machine]:
    """The machines the run's trials recorded, in the order they first appear."""
    found: dict[str, tuple[str, list[str], int]] = {}
    for t in run.trials:
        if not t.machine_fingerprint:
            continue
        host, series, n = found.get(t.machine_fingerprint, (t.hostname or "?", [], 0))
        if t.device not in series:
            series.append(t.device)
        found[t.machine_fingerprint] = (host, series, n + 1)
    return [Machine(h, fp, n, tuple(s)) for fp, (h, s, n) in found.items()]


def machines_of(run: RunResult, *series: str) -> list[Machine]:
    """The machines on which any trial of ``series`` (device names as the run has them) ran."""
    return [m for m in machines(run) if set(m.series) & set(series)]


def crosses_machines(run: RunResult, *series: str) -> bool:
    """Whether the trials of ``series`` together ran on more than one machine."""
    return len(machines_of(run, *series)) > 1


def split_series(run: RunResult) -> list[tuple[str, list[Machine]]]:
    """Each series whose own trials ran on more than one machine, with those machines."""
    out = []
    for device in run.devices:
        on = machines_of(run, device)
        if len(on) > 1:
            out.append((device, on))
    return out
