"""Preflight: machine states that would make a sweep's numbers wrong, said before it runs.

A sweep's step times are only as honest as the machine is quiet. Too many torch
threads for the cores we may use, a machine already loaded, a CPU held at a low
clock, or a GPU shared with another process all make the numbers slower (and
noisier) than the hardware is, and nothing in the table would show why. This
module names each such state once, up front, with its figure and its consequence.

It is pure and safe to call anywhere: it never raises and never prints, and every
reading of the machine is a small function that tests (or callers) replace. A
reading that fails, or a machine that does not offer it (no Linux ``/proc``, no
cpufreq, no GPU, no NVML), gives no warning, never an error.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from batchscope.units import format_bytes

#: where Linux exposes each CPU's frequency governor and driver (cpuN/cpufreq/...)
CPU_SYSFS = "/sys/devices/system/cpu"

#: cpufreq drivers whose "powersave" is dynamic (it still scales up under load)
_DYNAMIC_POWERSAVE_DRIVERS = ("intel_pstate", "amd-pstate", "amd_pstate", "amd-pstate-epp")


@dataclass(frozen=True)
class GpuProcess:
    """A process with a compute context on a GPU, as NVML reports it."""

    pid: int
    used_memory_bytes: int | None = None


@dataclass(frozen=True)
class GpuUse:
    """Who computes on one GPU: its name and its processes (ours excluded later)."""

    name: str
    processes: list[GpuProcess]


# ---------------------------------------------------------------- readings of the machine


def available_cpus() -> set[int] | None:
    """The CPUs this process may run on (``sched_getaffinity``); None where unknown."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    try:
        return set(os.sched_getaffinity(0))
    except OSError:
        return None


def _read(path: str) -> str | None:
    """A small text file's stripped content; None when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def cpu_quota(
    cgroup_root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup"
) -> float | None:
    """The cgroup CPU quota in cores (a container's ``--cpus``); None when unlimited.

    Affinity alone misses it: a container limited to 2 CPUs still sees every core.
    """
    relative = "/"
    for line in (_read(proc_cgroup) or "").splitlines():
        if line.startswith("0::"):  # cgroup v2: this process's group
            relative = line[3:].strip() or "/"
    v2 = _read(os.path.join(cgroup_root, relative.lstrip("/"), "cpu.max"))
    if v2 is None and relative != "/":
        v2 = _read(os.path.join(cgroup_root, "cpu.max"))
    try:
        if v2 is not None:
            quota, _, period = v2.partition(" ")
            return None if quota == "max" else int(quota) / int(period or "100000")
        quota_us = _read(os.path.join(cgroup_root, "cpu", "cpu.cfs_quota_us"))  # cgroup v1
        period_us = _read(os.path.join(cgroup_root, "cpu", "cpu.cfs_period_us"))
        if quota_us is None or period_us is None or int(quota_us) <= 0:
            return None
        return int(quota_us) / int(period_us)
    except (ValueError, ZeroDivisionError):
        return None


def total_cpus() -> int | None:
    """Logical CPUs of the whole machine: what the load average is measured against."""
    return os.cpu_count()


def load_average() -> float | None:
    """The 1-minute load average; None where the system has none."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def cpu_governors(root: str = CPU_SYSFS) -> dict[int, tuple[str, str | None]]:
    """``{cpu: (governor, driver)}`` for every CPU whose cpufreq governor is readable."""
    out: dict[int, tuple[str, str | None]] = {}
    for path in glob.glob(os.path.join(glob.escape(root), "cpu[0-9]*", "cpufreq")):
        match = re.fullmatch(r"cpu(\d+)", os.path.basename(os.path.dirname(path)))
        governor = _read(os.path.join(path, "scaling_governor"))
        if match is None or not governor:
            continue
        driver = _read(os.path.join(path, "scaling_driver")) or None
        out[int(match.group(1))] = (governor, driver)
    return out


def cuda_use(cuda_index: int) -> GpuUse | None:
    """The processes computing on ``cuda:N`` (NVML); None without NVML or that GPU.

    CUDA numbers the GPUs ``CUDA_VISIBLE_DEVICES`` leaves visible; NVML numbers all of
    them, so ``cuda:N`` is the N-th entry of that variable when it is set (an index or
    a ``GPU-`` UUID). NVML's order is the PCI bus order, which is CUDA's too when
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` or the GPUs are all of one model.
    """
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver, no library: every NVML error class
        return None
    try:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            entries = [e.strip() for e in visible.split(",") if e.strip()]
            if cuda_index >= len(entries):
                return None
            entry = entries[cuda_index]
            if entry.startswith("GPU-"):
                handle = pynvml.nvmlDeviceGetHandleByUUID(entry)
            elif entry.isdigit():
                handle = pynvml.nvmlDeviceGetHandleByIndex(int(entry))
            else:  # MIG-... or something NVML cannot map: do not guess
                return None
        else:
            handle = pynvml.nvmlDeviceGetHandleByIndex(cuda_index)
        name = pynvml.nvmlDeviceGetName(handle)
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        processes = [
            GpuProcess(int(p.pid), _memory(getattr(p, "usedGpuMemory", None)))
            for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
        ]
        return GpuUse(str(name), processes)
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _memory(value: object) -> int | None:
    """NVML's used memory: None where it is not available (a large sentinel or None)."""
    if not isinstance(value, int) or value < 0 or value >= 2**63:
        return None
    return value


def own_pids() -> set[int]:
    """This process and its descendants (a device probe may hold a GPU context)."""
    pids = {os.getpid()}
    with contextlib.suppress(Exception):
        import psutil

        pids.update(p.pid for p in psutil.Process().children(recursive=True))
    return pids


# ---------------------------------------------------------------- the checks


def _cores(cpus: set[int] | None, quota: float | None) -> int | None:
    counts = [len(cpus)] if cpus else []
    if quota is not None and quota > 0:
        counts.append(max(1, math.floor(quota)))
    return min(counts) if counts else None


def _cpu_list(cpus: Iterable[int]) -> str:
    """``cpu0-3,6``: a compact list of CPU numbers."""
    ordered = sorted(set(cpus))
    runs: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        runs.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return "cpu" + ",".join(runs)


def _threads_warning(threads: int | None, cores: int | None) -> str | None:
    if threads is None or cores is None or threads <= cores:
        return None
    return (
        f"--threads {threads} is more than the {cores} CPU core{'s' if cores != 1 else ''} "
        "available: threads will compete and step times will be slower than they need be"
    )


def _load_warning(load: float | None, total: int | None) -> str | None:
    if load is None or not total or not load > total:
        return None
    return (
        f"the 1-minute load average is {load:.2f}, more than the {total} CPU "
        f"core{'s' if total != 1 else ''} of this machine: other work is running, so step "
        "times will be slower and noisier than on a quiet machine"
    )


def _governor_warning(
    governors: dict[int, tuple[str, str | None]], cpus: set[int] | None
) -> str | None:
    relevant = {c: g for c, g in governors.items() if cpus is None or c in cpus}
    slow = {c: g for c, g in relevant.items() if g[0] == "powersave"}
    if not slow:
        return None
    where = (
        f"on all {len(relevant)} CPUs"
        if len(slow) == len(relevant)
        else f"on {len(slow)} of {len(relevant)} CPUs ({_cpu_list(slow)})"
    )
    drivers = {d for _, d in slow.values()}
    if drivers and all(d is not None and d in _DYNAMIC_POWERSAVE_DRIVERS for d in drivers):
        consequence = (
            "the clock ramps up late and less far under load, so step times will be "
            "slower and less steady than with 'performance'"
        )
    else:
        consequence = (
            "the clock is held at its lowest, so step times will be slower than this "
            "CPU can run them"
        )
    return (
        f"CPU frequency governor is 'powersave' {where}: {consequence} "
        "(cpupower frequency-set -g performance)"
    )


def _cuda_index(device: str) -> int | None:
    match = re.fullmatch(r"cuda(?::(\d+))?", device.strip().lower())
    if match is None:
        return None
    return int(match.group(1) or 0)


def _gpu_warning(device: str, use: GpuUse | None, ours: set[int]) -> str | None:
    if use is None:
        return None
    others = [p for p in use.processes if p.pid not in ours]
    if not others:
        return None
    shown = ", ".join(
        f"pid {p.pid}"
        + (f" using {format_bytes(p.used_memory_bytes)}" if p.used_memory_bytes else "")
        for p in others[:5]
    )
    more = f" and {len(others) - 5} more" if len(others) > 5 else ""
    n = len(others)
    return (
        f"{device} ({use.name}) is already in use by {n} other process{'es' if n != 1 else ''} "
        f"({shown}{more}): they share its compute and memory, so step times will be slower "
        "and noisier, and the largest batch that fits smaller, than on an idle GPU"
    )


def _safe(check: Callable[[], str | None]) -> str | None:
    """One check's warning; a failing reading or check gives none (preflight never raises)."""
    try:
        return check()
    except Exception:
        return None


def preflight_warnings(
    devices: Sequence[str],
    threads: int | None,
    *,
    cpus: Callable[[], set[int] | None] = available_cpus,
    quota: Callable[[], float | None] = cpu_quota,
    machine_cpus: Callable[[], int | None] = total_cpus,
    load: Callable[[], float | None] = load_average,
    governors: Callable[[], dict[int, tuple[str, str | None]]] = cpu_governors,
    gpu: Callable[[int], GpuUse | None] = cuda_use,
    ours: Callable[[], set[int]] = own_pids,
) -> list[str]:
    """One line per machine state that would make a sweep's numbers wrong.

    ``devices`` are the sweep's canonical device names (``cpu``, ``cuda:0``, ...);
    ``threads`` is ``--threads`` (None: the default, every available core). The
    keyword arguments read the machine; tests pass fakes. Never raises, never prints.
    """
    warnings: list[str | None] = []
    try:
        available = cpus()
    except Exception:
        available = None
    warnings.append(_safe(lambda: _threads_warning(threads, _cores(available, quota()))))
    warnings.append(_safe(lambda: _load_warning(load(), machine_cpus())))
    warnings.append(_safe(lambda: _governor_warning(governors(), available)))
    cuda: list[tuple[str, int]] = []
    seen: set[int] = set()
    for device in devices:
        index = _safe_index(device)
        if index is not None and index not in seen:
            seen.add(index)
            cuda.append((f"cuda:{index}", index))
    if cuda:
        try:
            mine = ours()
        except Exception:
            mine = {os.getpid()}
        for device, index in cuda:
            warnings.append(_safe(functools.partial(_gpu_check, device, index, gpu, mine)))
    return [w for w in warnings if w]


def _gpu_check(
    device: str, index: int, gpu: Callable[[int], GpuUse | None], mine: set[int]
) -> str | None:
    """The reading and the check of one GPU, together under :func:`_safe`."""
    return _gpu_warning(device, gpu(index), mine)


def _safe_index(device: object) -> int | None:
    try:
        return _cuda_index(str(device))
    except Exception:
        return None
