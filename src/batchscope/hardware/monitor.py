"""Background hardware samplers: CPU (psutil), CPU package energy (RAPL), GPUs (NVML).

Seeds 000 and 003 read GPU utilisation off an ``nvtop`` screenshot; this records
it, with the process's CPU load, memory, power and energy, on a timeline. A metric
that the hardware or OS does not offer is "not available" (``None`` plus a reason
in ``unavailable``), never a crash.

The sampler is a daemon thread that wakes every ``interval_s``. It shares the
cores (and the GIL) with the training it measures, so a wake-up must be cheap: a
CPU reading parses procfs itself (tens of µs; psutil's walk of every process for
the children, a millisecond or more, happens rarely) and the thread runs at the
lowest priority on Linux. ``benchmarks/overhead.py`` measures what it costs.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchscope.core.samples import GpuSample, Sample

DEFAULT_INTERVAL_S = 0.1


# ---------------------------------------------------------------- sources


class CpuSource:
    """CPU load and resident memory of a process tree (the process and its children).

    A reading must cost next to nothing next to the training it watches, so on
    Linux it parses ``/proc/<pid>/stat`` and ``statm`` of each known process
    itself (tens of µs, the same figures psutil reports). Finding the children
    means walking every process on the machine (about 15 µs each, a millisecond
    or more per walk), so the children list is refreshed at most every
    ``children_every_s`` and never more often than keeps the walks under
    ``CHILD_SCAN_SHARE`` of one core, but at least every ``MAX_SCAN_EVERY_S`` (on a
    busy machine with many processes the share rule alone spaced the walks so far
    apart that a child living a second was never seen). A child that a refresh finds counts with its
    mean load since it started, so a late discovery does not read as idle time.
    Elsewhere psutil reads the same figures (one ``oneshot()`` per process).
    """

    name = "cpu"
    #: the most of one core the walks for new children may take
    CHILD_SCAN_SHARE = 0.002
    #: the longest wait between two walks, whatever a walk costs
    MAX_SCAN_EVERY_S = 1.0

    def __init__(
        self,
        pid: int | None = None,
        *,
        include_children: bool = True,
        children_every_s: float = 0.5,
        procfs: str = "/proc",
    ) -> None:
        import psutil

        self._psutil = psutil
        self.root = psutil.Process(pid or os.getpid())
        self.pid = self.root.pid
        self.include_children = include_children
        self.children_every_s = children_every_s
        self.unavailable: dict[str, str] = {}
        self._procfs = procfs
        #: whether readings parse procfs directly (Linux) rather than going through psutil
        self.direct = sys.platform.startswith("linux") and os.path.exists(
            f"{procfs}/{self.pid}/statm"
        )
        self._tick = os.sysconf("SC_CLK_TCK") if self.direct else 1
        self._page = os.sysconf("SC_PAGE_SIZE") if self.direct else 1
        self._procs: dict[int, Any] = {self.pid: self.root}  # psutil handles (fallback)
        self._children: list[int] = []
        self._next_scan = -math.inf
        self._last_scan = -math.inf
        #: pid -> (start time, CPU seconds, monotonic time) at its last reading
        self._last: dict[int, tuple[float, float, float]] = {}
        self.read(Sample(t_s=0.0))  # prime: a first reading has no interval to cover
        psutil.cpu_percent(percpu=True)

    def _probe(self, pid: int) -> tuple[float, float, int] | None:
        """(start time, CPU seconds used, RSS bytes) of ``pid``; None once it is gone."""
        if self.direct:
            try:
                with open(f"{self._procfs}/{pid}/stat", "rb") as f:
                    stat = f.read()
                with open(f"{self._procfs}/{pid}/statm", "rb") as f:
                    statm = f.read()
                # the name, in parentheses, may hold spaces: fields start after the last ")"
                fields = stat[stat.rindex(b")") + 2 :].split()
                return (
                    int(fields[19]) / self._tick,  # starttime: ticks since boot
                    (int(fields[11]) + int(fields[12])) / self._tick,  # utime + stime
                    int(statm.split()[1]) * self._page,  # resident pages
                )
            except (OSError, ValueError, IndexError):
                return None
        psutil = self._psutil
        try:
            proc = self._procs.get(pid) or self._procs.setdefault(pid, psutil.Process(pid))
            with proc.oneshot():
                times = proc.cpu_times()
                rss = int(proc.memory_info().rss)
            return proc.create_time(), times.user + times.system, rss
        except psutil.Error:
            return None

    def _started_now(self) -> float:
        """The clock a probe's start time is on: boot time (procfs) or the epoch (psutil)."""
        if self.direct:
            return time.clock_gettime(time.CLOCK_BOOTTIME)
        return time.time()

    def _scan_children(self, now: float) -> None:
        if not self.include_children:
            return
        before = time.thread_time()
        with contextlib.suppress(self._psutil.Error):
            found = self.root.children(recursive=True)
            self._children = [p.pid for p in found]
            if not self.direct:  # fresh handles: a reused pid shows as a new start time
                self._procs.update((p.pid, p) for p in found)
        cost = time.thread_time() - before
        self._last_scan = now
        wait = max(self.children_every_s, cost / self.CHILD_SCAN_SHARE)
        self._next_scan = now + min(wait, max(self.children_every_s, self.MAX_SCAN_EVERY_S))

    def read(self, sample: Sample) -> None:
        now = time.monotonic()
        previous_scan = self._last_scan
        if self.include_children and now >= self._next_scan:
            self._scan_children(now)
        cpu = 0.0
        rss = 0
        alive = []
        for pid in (self.pid, *self._children):
            probe = self._probe(pid)
            last = self._last.get(pid)
            if probe is None or (last is not None and last[0] != probe[0]):
                self._last.pop(pid, None)  # gone, or its pid now belongs to another process
                self._procs.pop(pid, None)
                continue
            start, used, resident = probe
            if last is not None:
                if now > last[2]:
                    cpu += 100.0 * (used - last[1]) / (now - last[2])
            elif pid != self.pid:
                age = self._started_now() - start
                if 0 < age <= now - previous_scan + 0.05:  # born since the last scan
                    cpu += 100.0 * used / age
            self._last[pid] = (start, used, now)
            rss += resident
            if pid != self.pid:
                alive.append(pid)
        self._children = alive
        per_core = self._psutil.cpu_percent(percpu=True)
        sample.cpu_process_percent = cpu
        sample.rss_bytes = rss
        sample.cpu_per_core_percent = list(per_core)
        sample.cpu_system_percent = sum(per_core) / len(per_core) if per_core else None


class RaplSource:
    """CPU package energy from Linux RAPL (``/sys/class/powercap/intel-rapl:N``).

    Counters are microjoules that wrap at ``max_energy_range_uj``; reading them
    usually needs root on recent kernels.
    """

    name = "rapl"

    def __init__(self, root: str = "/sys/class/powercap") -> None:
        self.domains: list[tuple[str, int]] = []  # (energy_uj path, wrap range)
        self.unavailable: dict[str, str] = {}
        for zone in sorted(glob.glob(os.path.join(root, "intel-rapl:*"))):
            if os.path.basename(zone).count(":") != 1:
                continue  # sub-zones (core, uncore) are inside the package figure
            try:
                with open(os.path.join(zone, "energy_uj")) as f:
                    int(f.read())
                with open(os.path.join(zone, "max_energy_range_uj")) as f:
                    wrap = int(f.read())
            except (OSError, ValueError) as exc:
                self.unavailable["cpu_energy"] = f"RAPL counter not readable: {exc}"
                self.domains = []
                return
            self.domains.append((os.path.join(zone, "energy_uj"), wrap))
        if not self.domains and "cpu_energy" not in self.unavailable:
            self.unavailable["cpu_energy"] = "no RAPL counters on this machine"
        self._last = [self._raw(path) for path, _ in self.domains]
        self._total_uj = 0

    @staticmethod
    def _raw(path: str) -> int:
        with open(path) as f:
            return int(f.read())

    @property
    def available(self) -> bool:
        return bool(self.domains)

    def read(self, sample: Sample) -> None:
        if not self.domains:
            return
        for i, (path, wrap) in enumerate(self.domains):
            try:
                now = self._raw(path)
            except (OSError, ValueError):
                continue
            delta = now - self._last[i]
            if delta < 0:  # the counter wrapped
                delta += wrap
            self._total_uj += delta
            self._last[i] = now
        sample.cpu_energy_j = self._total_uj / 1e6


class NvmlSource:
    """GPU utilisation, memory, power, energy, SM clock and temperature through NVML.

    Each metric a GPU does not support is marked unavailable once and not asked
    again. Energy comes from the GPU's total-energy counter where it has one
    (Volta and later), otherwise from integrating power over time.
    """

    name = "nvml"

    def __init__(
        self, indices: Sequence[int] | None = None, uuids: Sequence[str] | None = None
    ) -> None:
        self.unavailable: dict[str, str] = {}
        self.handles: list[tuple[int, Any]] = []
        self._unsupported: set[tuple[int, str]] = set()
        self._energy0: dict[int, float] = {}
        self._integrated: dict[int, float] = {}
        self._last_power: dict[int, tuple[float, float]] = {}
        try:
            import pynvml
        except ImportError:
            self.unavailable["gpu"] = "nvidia-ml-py is not installed"
            return
        self.nvml = pynvml
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # no driver, no library: every NVML error class
            self.unavailable["gpu"] = f"NVML not available: {exc}"
            return
        try:
            if uuids:
                for i, uuid in enumerate(uuids):
                    self.handles.append((i, pynvml.nvmlDeviceGetHandleByUUID(uuid)))
            else:
                count = pynvml.nvmlDeviceGetCount()
                for i in indices if indices is not None else range(count):
                    self.handles.append((i, pynvml.nvmlDeviceGetHandleByIndex(i)))
        except Exception as exc:
            self.unavailable["gpu"] = f"NVML could not open the GPU: {exc}"
            self.handles = []
        for index, handle in self.handles:
            energy = self._metric(
                index, "energy", pynvml.nvmlDeviceGetTotalEnergyConsumption, handle
            )
            if energy is not None:
                self._energy0[index] = energy / 1000.0

    @property
    def available(self) -> bool:
        return bool(self.handles)

    def _metric(self, index: int, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        if (index, name) in self._unsupported:
            return None
        try:
            return fn(*args)
        except Exception as exc:  # NVMLError_NotSupported and friends
            self._unsupported.add((index, name))
            self.unavailable[f"gpu{index}_{name}"] = f"not available: {exc}"
            return None

    def read(self, sample: Sample) -> None:
        nvml = getattr(self, "nvml", None)
        if nvml is None:
            return
        for index, handle in self.handles:
            g = GpuSample(index=index)
            util = self._metric(index, "utilization", nvml.nvmlDeviceGetUtilizationRates, handle)
            if util is not None:
                g.utilization_percent = float(util.gpu)
            mem = self._metric(index, "memory", nvml.nvmlDeviceGetMemoryInfo, handle)
            if mem is not None:
                g.memory_used_bytes = int(mem.used)
            power = self._metric(index, "power", nvml.nvmlDeviceGetPowerUsage, handle)
            if power is not None:
                g.power_w = power / 1000.0
            clock = self._metric(
                index,
                "sm_clock",
                nvml.nvmlDeviceGetClockInfo,
                handle,
                getattr(nvml, "NVML_CLOCK_SM", 1),
            )
            if clock is not None:
                g.sm_clock_mhz = float(clock)
            temp = self._metric(
                index,
                "temperature",
                nvml.nvmlDeviceGetTemperature,
                handle,
                getattr(nvml, "NVML_TEMPERATURE_GPU", 0),
            )
            if temp is not None:
                g.temperature_c = float(temp)
            if index in self._energy0:
                energy = self._metric(
                    index, "energy", nvml.nvmlDeviceGetTotalEnergyConsumption, handle
                )
                if energy is not None:
                    g.energy_j = energy / 1000.0 - self._energy0[index]
            elif g.power_w is not None:  # integrate power (trapezoid rule)
                last = self._last_power.get(index)
                total = self._integrated.get(index, 0.0)
                if last is not None:
                    total += 0.5 * (last[1] + g.power_w) * (sample.t_s - last[0])
                self._integrated[index] = total
                self._last_power[index] = (sample.t_s, g.power_w)
                g.energy_j = total
            sample.gpus.append(g)

    def close(self) -> None:
        nvml = getattr(self, "nvml", None)
        if nvml is not None and self.handles:
            with contextlib.suppress(Exception):
                nvml.nvmlShutdown()


# ---------------------------------------------------------------- the sampler


def lower_thread_priority(niceness: int = 19) -> bool:
    """Give the calling thread the lowest CPU priority; True if it took effect.

    With as many torch threads as cores, a sampler that wakes at normal priority
    pre-empts one of the threads a parallel kernel waits for; at nice 19 it runs
    in the gaps instead. Linux keeps a nice value per thread; elsewhere
    ``setpriority`` would re-nice the whole process, so this does nothing there.
    """
    if not sys.platform.startswith("linux") or not hasattr(os, "setpriority"):
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except OSError:
        return False
    return True


class Sampler:
    """Reads every source every ``interval_s`` seconds on a daemon thread.

    Use as a context manager or ``start()``/``stop()``; ``samples`` holds the
    timeline, ``marks`` the labelled instants (e.g. trial boundaries).
    """

    def __init__(
        self,
        sources: Sequence[Any],
        interval_s: float = DEFAULT_INTERVAL_S,
        on_sample: Callable[[Sample], None] | None = None,
        *,
        low_priority: bool = True,
    ) -> None:
        if not interval_s > 0:
            raise ValueError("interval_s must be positive")
        self.sources = list(sources)
        self.interval_s = interval_s
        self.on_sample = on_sample
        self.low_priority = low_priority
        #: whether the sampling thread runs at the lowest CPU priority (known once started)
        self.lowered_priority = False
        self.samples: list[Sample] = []
        self.marks: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()
        #: CPU seconds the sampling thread itself spent reading sources: its own cost
        self.cpu_time_s = 0.0

    @property
    def unavailable(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for source in self.sources:
            merged.update(getattr(source, "unavailable", {}))
        return merged

    def now(self) -> float:
        return time.monotonic() - self._t0

    def cpu_fraction(self) -> float | None:
        """The sampler's own CPU time as a fraction of one core over its run so far."""
        elapsed = self.now()
        return self.cpu_time_s / elapsed if elapsed > 0 else None

    def mark(self, label: str) -> None:
        self.marks.append((self.now(), label))

    def sample_once(self) -> Sample:
        sample = Sample(t_s=self.now())
        for source in self.sources:
            source.read(sample)
        self.samples.append(sample)
        if self.on_sample is not None:
            self.on_sample(sample)
        return sample

    def _loop(self) -> None:
        if self.low_priority:
            self.lowered_priority = lower_thread_priority()
        next_t = time.monotonic()
        while not self._stop.is_set():
            before = time.thread_time()
            self.sample_once()
            self.cpu_time_s += time.thread_time() - before
            next_t += self.interval_s
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def start(self) -> Sampler:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="batchscope-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sample_once()  # the closing reading, so energy covers the whole interval
        for source in self.sources:
            close = getattr(source, "close", None)
            if close is not None:
                close()
        return self.samples

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def default_sources(
    pid: int | None = None,
    *,
    gpu_indices: Sequence[int] | None = None,
    gpu_uuids: Sequence[str] | None = None,
    gpus: bool = True,
) -> list[Any]:
    """CPU (+RAPL) always; NVML when ``gpus`` (it reports unavailable where there is none)."""
    sources: list[Any] = [CpuSource(pid), RaplSource()]
    if gpus:
        sources.append(NvmlSource(gpu_indices, gpu_uuids))
    return sources


# ---------------------------------------------------------------- summaries


@dataclass
class HardwareSummary:
    """What a stretch of the timeline amounts to; ``None`` where not measured."""

    duration_s: float
    n_samples: int
    cpu_process_percent_mean: float | None = None
    cpu_process_percent_max: float | None = None
    cpu_system_percent_mean: float | None = None
    peak_rss_bytes: int | None = None
    gpu_utilization_percent_mean: float | None = None
    gpu_utilization_percent_max: float | None = None
    gpu_memory_used_bytes_max: int | None = None
    gpu_power_w_mean: float | None = None
    cpu_energy_j: float | None = None
    gpu_energy_j: float | None = None
    energy_j: float | None = None
    unavailable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(
    samples: Sequence[Sample],
    start_s: float | None = None,
    end_s: float | None = None,
    unavailable: dict[str, str] | None = None,
) -> HardwareSummary:
    """Means, maxima and energy over ``[start_s, end_s]`` of a timeline."""
    window = [
        s
        for s in samples
        if (start_s is None or s.t_s >= start_s) and (end_s is None or s.t_s <= end_s)
    ]
    if not window:
        return HardwareSummary(duration_s=0.0, n_samples=0, unavailable=dict(unavailable or {}))
    # the first reading of cpu_percent covers the time before the window: skip it
    loads = [s.cpu_process_percent for s in window[1:] if s.cpu_process_percent is not None]
    system = [s.cpu_system_percent for s in window[1:] if s.cpu_system_percent is not None]
    rss = [s.rss_bytes for s in window if s.rss_bytes is not None]
    gpu_util = [
        g.utilization_percent for s in window for g in s.gpus if g.utilization_percent is not None
    ]
    gpu_mem = [
        g.memory_used_bytes for s in window for g in s.gpus if g.memory_used_bytes is not None
    ]
    gpu_power = [g.power_w for s in window for g in s.gpus if g.power_w is not None]

    def energy_delta(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return known[-1] - known[0] if len(known) >= 2 else None

    cpu_energy = energy_delta([s.cpu_energy_j for s in window])
    gpu_energy: float | None = None
    indices = sorted({g.index for s in window for g in s.gpus})
    for index in indices:
        delta = energy_delta([g.energy_j for s in window for g in s.gpus if g.index == index])
        if delta is not None:
            gpu_energy = (gpu_energy or 0.0) + delta
    total = None
    if cpu_energy is not None or gpu_energy is not None:
        total = (cpu_energy or 0.0) + (gpu_energy or 0.0)
    return HardwareSummary(
        duration_s=window[-1].t_s - window[0].t_s,
        n_samples=len(window),
        cpu_process_percent_mean=_mean(loads),
        cpu_process_percent_max=max(loads) if loads else None,
        cpu_system_percent_mean=_mean(system),
        peak_rss_bytes=max(rss) if rss else None,
        gpu_utilization_percent_mean=_mean(gpu_util),
        gpu_utilization_percent_max=max(gpu_util) if gpu_util else None,
        gpu_memory_used_bytes_max=max(gpu_mem) if gpu_mem else None,
        gpu_power_w_mean=_mean(gpu_power),
        cpu_energy_j=cpu_energy,
        gpu_energy_j=gpu_energy,
        energy_j=total,
        unavailable=dict(unavailable or {}),
    )


def is_finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
