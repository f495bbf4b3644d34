"""The trial's instruments: device-synchronised clocks and the peak-memory probe.

GPU work is asynchronous: a clock read right after ``loss.backward()`` measures
the launch, not the work. Every step boundary therefore waits for the device
before the clock is read (:func:`synchronizer`; on the CPU a no-op). Peak memory
has one definition for every trainer (:class:`MemoryProbe`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from batchscope.core.plan import TrialSpec
    from batchscope.core.results import TrialResult
    from batchscope.core.samples import Sample
    from batchscope.hardware.monitor import Sampler

#: ``progress(event, payload)``, as the engine reports a trial's events
Progress = Callable[[str, dict[str, Any]], None]


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A zero-argument function that blocks until ``device`` has finished its queued work."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()

        def sync_cuda() -> None:
            torch.cuda.synchronize(index)

        return sync_cuda
    if device.type == "mps":
        return torch.mps.synchronize
    if device.type == "xpu":  # pragma: no cover - needs an Intel GPU
        return torch.xpu.synchronize  # type: ignore[no-any-return,unused-ignore]
    return _no_sync


def _no_sync() -> None:
    """CPU kernels run synchronously: nothing to wait for."""


# ---------------------------------------------------------------- peak memory


def current_rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def peak_rss() -> int:
    """Peak resident memory: VmHWM (resettable, Linux) or the process-lifetime ru_maxrss."""
    import resource
    import sys

    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def release_free_memory() -> None:
    """Hand the C allocator's free blocks back to the system (glibc ``malloc_trim``).

    After warm-up, glibc keeps what the warm-up and its restore freed; without this the
    measured protocol's peak would count memory that the same protocol without warm-up
    never held. A no-op where glibc is not the allocator.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> None:
    """Start a fresh peak-RSS count (Linux: VmHWM via /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


#: what ``peak_memory_bytes`` holds on each kind of device (recorded as ``peak_memory_kind``)
PEAK_KINDS = {
    "cpu": "cpu_rss_growth",
    "cuda": "cuda_reserved",
    "mps": "mps_sampled_allocated",
}


class MemoryProbe:
    """The peak memory of a measured protocol: one definition for every trainer.

    ``peak_memory_bytes`` is the figure tables show and ``--memory-limit`` and
    ``maxbs`` judge:

    * CPU: the growth of the process's peak resident memory over its resident memory
      after set-up (weights, data and the torch import are in the baseline);
    * CUDA: the caching allocator's peak *reserved* memory, absolute — what the GPU
      must hold, what an out-of-memory error is about;
    * MPS: the largest allocated memory read after every step (MPS has no peak
      counter, so this is a sampled lower bound, and the trial's notes say so).

    Every device also records ``peak_over_baseline_bytes`` (the growth over its
    post-set-up baseline: allocated memory on CUDA and MPS, resident memory on the
    CPU), and CUDA the absolute ``peak_allocated_bytes`` and ``peak_reserved_bytes``.
    :meth:`restart` after warm-up drops everything the warm-up and its restore held
    transiently (batchscope's snapshot of the initial weights never counts).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rss_baseline = 0
        self.allocated_baseline = 0
        self.mps_peak = 0

    def _allocated(self) -> int:
        import torch

        if self.device.type == "cuda":
            return int(torch.cuda.memory_allocated(self.device))
        if self.device.type == "mps":
            return int(torch.mps.current_allocated_memory())
        return 0

    def start(self) -> int:
        """At the end of set-up: take the baselines and start the peaks; the RSS baseline."""
        self.allocated_baseline = self._allocated()
        self.rss_baseline = current_rss()
        self.restart()
        return self.rss_baseline

    def restart(self) -> None:
        """Start the peaks afresh (after warm-up), keeping the baselines."""
        import gc

        gc.collect()
        release_free_memory()
        if self.device.type == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        self.mps_peak = self._allocated() if self.device.type == "mps" else 0
        reset_peak_rss()

    def sample(self) -> None:
        """At a step's end: MPS's only way to see a peak (a no-op elsewhere)."""
        if self.device.type == "mps":
            self.mps_peak = max(self.mps_peak, self._allocated())

    def record(self, result: TrialResult) -> None:
        import torch

        result.peak_rss_bytes = peak_rss()
        rss_growth = max(0, result.peak_rss_bytes - self.rss_baseline)
        kind = self.device.type
        result.peak_memory_kind = PEAK_KINDS.get(kind, "cpu_rss_growth")
        if kind == "cuda":
            allocated = int(torch.cuda.max_memory_allocated(self.device))
            result.peak_allocated_bytes = allocated
            result.peak_reserved_bytes = int(torch.cuda.max_memory_reserved(self.device))
            result.peak_over_baseline_bytes = max(0, allocated - self.allocated_baseline)
            result.peak_memory_bytes = result.peak_reserved_bytes
        elif kind == "mps":
            self.sample()
            result.peak_allocated_bytes = self.mps_peak
            result.peak_over_baseline_bytes = max(0, self.mps_peak - self.allocated_baseline)
            result.peak_memory_bytes = self.mps_peak
            result.notes.append(
                "MPS has no peak-memory counter: peak memory is the largest allocated "
                "memory read after each step, a lower bound of the true peak"
            )
        else:
            result.peak_over_baseline_bytes = rss_growth
            result.peak_memory_bytes = rss_growth


# ---------------------------------------------------------------- hardware sampling

#: at most this many sampler readings are kept in a trial's timeline
TIMELINE_POINTS = 600


def start_sampler(spec: TrialSpec, device: torch.device, notify: Progress) -> Sampler | None:
    """Sample this process (and its DataLoader workers) and the trial's GPU, if asked to.

    A compact reading goes to ``notify`` twice a second for the live display.
    """
    if not spec.sample_interval_s:
        return None
    import torch

    from batchscope.hardware.monitor import Sampler, default_sources

    uuids = None
    if device.type == "cuda":
        uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
        if uuid is not None:
            text = str(uuid)
            uuids = [text if text.startswith("GPU-") else f"GPU-{text}"]
    sources = default_sources(os.getpid(), gpu_uuids=uuids, gpus=device.type == "cuda")
    last = [-1.0]

    def live(sample: Sample) -> None:
        if sample.t_s - last[0] < 0.5:
            return
        last[0] = sample.t_s
        gpu = sample.gpus[0] if sample.gpus else None
        notify(
            "sample",
            {
                "cpu_percent": sample.cpu_process_percent,
                "rss_bytes": sample.rss_bytes,
                "gpu_percent": gpu.utilization_percent if gpu else None,
                "gpu_memory_bytes": gpu.memory_used_bytes if gpu else None,
                "power_w": gpu.power_w if gpu else None,
            },
        )

    return Sampler(sources, spec.sample_interval_s, on_sample=live).start()


def record_hardware(result: TrialResult, sampler: Sampler, samples: list[Sample]) -> None:
    """Utilisation, power and energy of the measured protocol (warm-up excluded)."""
    from batchscope.core.samples import samples_to_rows
    from batchscope.hardware.monitor import summarise

    summary = summarise(samples, unavailable=sampler.unavailable)
    result.hardware = summary.to_dict()
    result.utilization = {
        "cpu_process_percent_mean": summary.cpu_process_percent_mean,
        "cpu_process_percent_max": summary.cpu_process_percent_max,
        "gpu_percent_mean": summary.gpu_utilization_percent_mean,
        "gpu_percent_max": summary.gpu_utilization_percent_max,
    }
    result.power_w_mean = summary.gpu_power_w_mean
    result.energy_j = summary.energy_j
    trained = result.samples_trained
    if summary.energy_j is not None and trained:
        result.energy_per_sample_j = summary.energy_j / trained
        result.energy_per_1000_samples_j = 1000 * result.energy_per_sample_j
        if result.samples_per_epoch:
            result.energy_per_epoch_j = result.energy_per_sample_j * result.samples_per_epoch
    rows = samples_to_rows(samples)
    stride = max(1, math.ceil(len(rows) / TIMELINE_POINTS))
    result.timeline = rows[::stride]
    result.timeline_start_unix = time.time() - sampler.now()
    result.sampler_cpu_fraction = sampler.cpu_fraction()


def reset_and_read_rss() -> int:
    """Start a fresh peak-RSS count and return the RSS now (for the framework trainers)."""
    reset_peak_rss()
    return current_rss()


def record_memory(result: TrialResult, device: torch.device, rss_baseline: int) -> None:
    """The peak memory of a trial timed by a framework callback (see MemoryProbe)."""
    probe = MemoryProbe(device)
    probe.rss_baseline = rss_baseline
    probe.record(result)
