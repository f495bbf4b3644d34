"""Hardware readings as plain data: what a sampler records and reports and plots read.

:mod:`batchscope.hardware.monitor` takes the readings; the report's timeline and
``watch``'s CSV read them from here, without touching any hardware library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class GpuSample:
    index: int
    utilization_percent: float | None = None
    memory_used_bytes: int | None = None
    power_w: float | None = None
    energy_j: float | None = None  # cumulative since the sampler started
    sm_clock_mhz: float | None = None
    temperature_c: float | None = None


@dataclass
class Sample:
    """One reading of every source, ``t_s`` seconds after the sampler started."""

    t_s: float
    cpu_process_percent: float | None = None  # of one core: 200 = two cores busy
    cpu_system_percent: float | None = None  # of all cores: 0..100
    cpu_per_core_percent: list[float] = field(default_factory=list)
    rss_bytes: int | None = None
    cpu_energy_j: float | None = None  # cumulative RAPL package energy since start
    gpus: list[GpuSample] = field(default_factory=list)


def samples_to_rows(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    """Flat rows (one per sample) for CSV: GPU fields get a ``gpuN_`` prefix."""
    rows = []
    for s in samples:
        row: dict[str, Any] = {
            "t_s": round(s.t_s, 4),
            "cpu_process_percent": s.cpu_process_percent,
            "cpu_system_percent": s.cpu_system_percent,
            "rss_bytes": s.rss_bytes,
            "cpu_energy_j": s.cpu_energy_j,
        }
        for g in s.gpus:
            for key in (
                "utilization_percent",
                "memory_used_bytes",
                "power_w",
                "energy_j",
                "sm_clock_mhz",
                "temperature_c",
            ):
                row[f"gpu{g.index}_{key}"] = getattr(g, key)
        rows.append(row)
    return rows
