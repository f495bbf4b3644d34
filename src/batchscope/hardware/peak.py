"""The device's measured peak: matmul FLOP/s and copy bandwidth, with 95 % intervals.

The model FLOPs utilisation (MFU) of a batch size is its achieved FLOP/s divided by a
peak. batchscope divides by a peak *measured here*, on this device, in this dtype, with
these threads and this torch, not by a datasheet figure that assumes boost clocks and
kernels nobody's training loop runs. The vendor figure
(:mod:`batchscope.hardware.vendor_peaks`) is kept beside it for comparison only.

How: square matmuls ``a @ b`` of several sizes n, each timed with
``torch.utils.benchmark.Timer(...).blocked_autorange`` (which synchronises CUDA and
warms up), topped up with blocks timed the same way (device synchronised around each)
until there are at least :data:`MIN_BLOCKS` blocks. A matmul is 2·n³ FLOPs. Per size,
the figure is the rate of the median block time and its 95 % interval is the
Maritz–Jarrett interval of that median
(:func:`batchscope.core.precision.median_precision`: distribution-free, from the order
statistics, the rule the engine's step clock uses). The peak is the size with the
highest median rate. The copy bandwidth is timed the same way on ``dst.copy_(src)`` of a
buffer larger than the caches: bytes read plus bytes written per second.

``python -m batchscope.hardware.peak --device cpu --dtype fp32 --json`` measures in a
fresh process and prints the :class:`PeakResult` as JSON: how a sweep's parent, which
never imports torch, gets a peak (:mod:`batchscope.run.peak_cache` caches it).

Importing this module does not import torch.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from batchscope.core.precision import median_precision
from batchscope.core.results import now_iso
from batchscope.errors import BatchscopeError, DeviceError, UsageError

#: the dtypes a peak is measured in
DTYPES = ("fp32", "bf16", "fp16")
#: matmul sizes per device type: the default takes ~3–6 s on a 2-core CPU
CPU_SIZES = (256, 512, 1024, 2048)
GPU_SIZES = (2048, 4096, 8192)
MPS_SIZES = (1024, 2048, 4096)
#: the copy buffer: well beyond a CPU's last-level cache, and a GPU's L2
CPU_COPY_BYTES = 128 * 2**20
GPU_COPY_BYTES = 1024 * 2**20
#: blocks per size at least, so that the median has a 95 % interval (6 is the minimum)
MIN_BLOCKS = 8
#: the default minimum run time of each size's ``blocked_autorange``
DEFAULT_MIN_RUN_TIME_S = 0.4


@dataclass
class PeakResult:
    """A device's measured matmul peak and copy bandwidth (plain data, JSON-ready)."""

    device: str
    dtype: str
    #: torch threads the CPU measurement used (None: not a CPU measurement and none given)
    threads: int | None
    #: CUDA's float32 matmul TF32 setting during the measurement; None off CUDA
    tf32: bool | None
    flops_per_s: float
    flops_per_s_low: float
    flops_per_s_high: float
    #: per matmul size: {"n", "flops_per_s", "low", "high"}
    sizes: list[dict[str, float]] = field(default_factory=list)
    #: bytes read + written per second by ``dst.copy_(src)`` of a large buffer
    copy_bytes_per_s: float = 0.0
    copy_bytes_per_s_low: float = 0.0
    copy_bytes_per_s_high: float = 0.0
    #: the datasheet figure beside it (for comparison only; None on a CPU or unknown GPU)
    vendor_name: str | None = None
    vendor_flops_per_s: float | None = None
    #: :func:`fingerprint` of the machine and software the figure belongs to
    fingerprint: str = ""
    measured_at: str = ""

    @property
    def best_n(self) -> int | None:
        """The matmul size that gave the peak."""
        for s in self.sizes:
            if s["flops_per_s"] == self.flops_per_s:
                return int(s["n"])
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PeakResult:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        values["sizes"] = [dict(s) for s in values.get("sizes", [])]
        return cls(**values)


# -- names (torch-free) ---------------------------------------------------------------


def check_dtype(dtype: str) -> str:
    """``fp32``, ``bf16`` or ``fp16`` (also ``float32``, ``bfloat16``, ``float16``, ``half``)."""
    aliases = {"float32": "fp32", "float": "fp32", "bfloat16": "bf16", "float16": "fp16"}
    aliases["half"] = "fp16"
    name = (dtype or "").strip().lower()
    name = aliases.get(name, name)
    if name not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}: use {', '.join(DTYPES)}")
    return name


def canonical_device(name: str) -> str:
    """``cpu``, ``cuda:N``, ``mps`` or ``xpu:N`` (``cuda`` is ``cuda:0``), torch-free.

    Only the spelling is checked here; whether the device is present is checked where
    torch is imported (:func:`batchscope.hardware.envinfo.check_device`).
    """
    from batchscope.core.plan import check_device_names

    text = (name or "").strip().lower()
    if not text:
        raise UsageError("--device is empty: use cpu, cuda, cuda:N or mps")
    if "," in text or text in ("auto", "best"):
        raise DeviceError(f"one device at a time: got {name!r}; use cpu, cuda, cuda:N or mps")
    try:
        check_device_names(text)
    except DeviceError as exc:
        raise DeviceError(f"unknown device {name!r}: use cpu, cuda, cuda:N or mps") from exc
    return f"{text}:0" if text in ("cuda", "xpu") else text


def identity() -> dict[str, Any]:
    """What the machine and its software are, for :func:`fingerprint` (torch-free).

    The facts of :func:`batchscope.hardware.envinfo.collect` that decide a peak (CPU
    model, cores, GPU names, torch version), read without importing torch, so the parent
    of a sweep can look a cached peak up: torch's version from its package metadata,
    GPU names from NVML (with ``CUDA_VISIBLE_DEVICES``, which maps cuda:N to a GPU).
    """
    from importlib import metadata

    from batchscope.hardware.envinfo import host_info

    host = host_info()
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = None
    return {
        "cpu_model": host["cpu_model"],
        "cpu_cores_logical": host["cpu_cores_logical"],
        "cpu_affinity": host["cpu_affinity"],
        "machine": host["machine"],
        "torch": torch_version,
        "gpus": nvml_gpu_names(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def nvml_gpu_names() -> list[str]:
    """Every NVIDIA GPU's name through NVML, in NVML's order; [] without a driver."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver, no library: every NVML error class
        return []
    try:
        names = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(name.decode() if isinstance(name, bytes) else str(name))
        return names
    except Exception:
        return []
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def fingerprint(device: str, facts: dict[str, Any] | None = None) -> str:
    """A short stable hash of the machine + software identity (:func:`identity`) + device.

    A cached peak is reused only under the same fingerprint: another CPU, GPU, core count
    or torch version measures again.
    """
    payload = {"identity": identity() if facts is None else facts, "device": device}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- measuring (imports torch) --------------------------------------------------------


def _torch_dtype(dtype: str) -> Any:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]


def tf32_setting(device_type: str) -> bool | None:
    """Whether CUDA float32 matmuls may use TF32 now; None off CUDA."""
    if device_type != "cuda":
        return None
    import warnings

    import torch

    precision = getattr(torch.backends.cuda.matmul, "fp32_precision", None)
    if precision == "tf32":
        return True
    if precision == "ieee":
        return False
    with warnings.catch_warnings():  # the old flag is deprecated in newer torch
        warnings.simplefilter("ignore")
        return bool(torch.backends.cuda.matmul.allow_tf32)


def _timed_blocks(
    timer: Any, run: Callable[[], Any], sync: Callable[[], Any], min_run_time_s: float
) -> list[float]:
    """Seconds per run of at least :data:`MIN_BLOCKS` blocks of ``timer``'s statement.

    ``blocked_autorange`` warms up and times the first blocks; it sizes blocks in powers
    of ten, which can leave 2 or 3 of them, so more blocks of about
    ``min_run_time_s / MIN_BLOCKS`` each are timed here the same way (``run`` is the
    statement, ``sync`` waits for the device before each clock reading). Not with
    ``Timer.timeit``, which runs two warm-up calls before every block.
    """
    measurement = timer.blocked_autorange(min_run_time=min_run_time_s)
    times = [float(t) for t in measurement.times]
    number = max(1, round(min_run_time_s / MIN_BLOCKS / max(measurement.median, 1e-9)))
    while len(times) < MIN_BLOCKS:
        sync()
        start = time.perf_counter()
        for _ in range(number):
            run()
        sync()
        times.append((time.perf_counter() - start) / number)
    return times


def _rate(work: float, times: Sequence[float]) -> tuple[float, float, float]:
    """(rate, low, high) of ``work`` per median block time, with its 95 % interval."""
    precision = median_precision(times)
    rate = work / precision.median
    interval = precision.interval()
    if interval is None:  # cannot happen with MIN_BLOCKS >= 6; widest honest answer
        return rate, work / max(times), work / min(times)
    return rate, work / interval[1], work / interval[0]


def _check_supported(torch: Any, dev: Any, tdtype: Any, dtype: str, device: str) -> None:
    try:
        a = torch.ones(8, 8, device=dev, dtype=tdtype)
        torch.mm(a, a)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
    except (RuntimeError, TypeError, NotImplementedError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DeviceError(f"{dtype} matmul is not supported on {device} here: {first}") from exc


def _sync(torch: Any, dev: Any) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


def measure_peak(
    device: str = "cpu",
    dtype: str = "fp32",
    threads: int | None = None,
    *,
    min_run_time_s: float = DEFAULT_MIN_RUN_TIME_S,
    sizes: Sequence[int] | None = None,
    copy_bytes: int | None = None,
) -> PeakResult:
    """Measure ``device``'s matmul peak in ``dtype`` and its copy bandwidth, in this process.

    ``threads`` sets ``torch.set_num_threads`` first (None: torch's default). ``sizes``
    (default :data:`CPU_SIZES` / :data:`GPU_SIZES` / :data:`MPS_SIZES`) and ``copy_bytes``
    (default :data:`CPU_COPY_BYTES` / :data:`GPU_COPY_BYTES`) are for tests and quick
    looks. Each figure is the rate of the median block time with the Maritz–Jarrett 95 %
    interval of that median (see the module docstring). An unknown or absent device, or
    a dtype the device cannot multiply in, raises a :class:`~batchscope.errors.DeviceError`;
    a bad ``dtype``/``threads`` value a :class:`~batchscope.errors.UsageError`.
    """
    dtype = check_dtype(dtype)
    name = canonical_device(device)
    if threads is not None and threads < 1:
        raise UsageError(f"--threads {threads}: give at least 1")
    if min_run_time_s <= 0:
        raise UsageError(f"min_run_time_s {min_run_time_s:g} must be more than 0")

    import torch
    from torch.utils.benchmark import Timer

    from batchscope.hardware.envinfo import check_device
    from batchscope.hardware.vendor_peaks import vendor_peak

    dev = check_device(name)
    if threads is not None:
        torch.set_num_threads(threads)
    tdtype = _torch_dtype(dtype)
    _check_supported(torch, dev, tdtype, dtype, name)
    kind = dev.type
    if sizes is None:
        sizes = CPU_SIZES if kind == "cpu" else MPS_SIZES if kind == "mps" else GPU_SIZES
    if not sizes or any(int(n) < 1 for n in sizes):
        raise UsageError(f"matmul sizes must be positive, got {list(sizes)}")
    num_threads = torch.get_num_threads()
    tf32 = tf32_setting(kind)

    def sync() -> None:
        _sync(torch, dev)

    rows: list[dict[str, float]] = []
    for n in sizes:
        n = int(n)
        a = torch.randn(n, n, device=dev, dtype=torch.float32).to(tdtype)
        b = torch.randn(n, n, device=dev, dtype=torch.float32).to(tdtype)
        sync()
        timer = Timer(
            "torch.mm(a, b)",
            globals={"torch": torch, "a": a, "b": b},
            num_threads=num_threads,
        )
        blocks = _timed_blocks(timer, functools.partial(torch.mm, a, b), sync, min_run_time_s)
        rate, low, high = _rate(2.0 * n**3, blocks)
        rows.append({"n": n, "flops_per_s": rate, "low": low, "high": high})
        del a, b, timer
        if kind == "cuda":
            torch.cuda.empty_cache()
    best = max(rows, key=lambda r: r["flops_per_s"])

    nbytes = copy_bytes or (CPU_COPY_BYTES if kind == "cpu" else GPU_COPY_BYTES)
    src = torch.ones(max(1, nbytes // 4), device=dev, dtype=torch.float32)
    dst = torch.empty_like(src)
    moved = 2.0 * src.numel() * src.element_size()  # read src + write dst
    copy_timer = Timer("dst.copy_(src)", globals={"src": src, "dst": dst}, num_threads=num_threads)
    blocks = _timed_blocks(copy_timer, functools.partial(dst.copy_, src), sync, min_run_time_s)
    copy_rate, copy_low, copy_high = _rate(moved, blocks)
    del src, dst, copy_timer
    if kind == "cuda":
        torch.cuda.empty_cache()

    vendor = None
    if kind == "cuda":
        vendor = vendor_peak(torch.cuda.get_device_name(dev), dtype, tf32)
    return PeakResult(
        device=name,
        dtype=dtype,
        threads=num_threads if kind == "cpu" else threads,
        tf32=tf32,
        flops_per_s=best["flops_per_s"],
        flops_per_s_low=best["low"],
        flops_per_s_high=best["high"],
        sizes=rows,
        copy_bytes_per_s=copy_rate,
        copy_bytes_per_s_low=copy_low,
        copy_bytes_per_s_high=copy_high,
        vendor_name=vendor[0] if vendor else None,
        vendor_flops_per_s=vendor[1] if vendor else None,
        fingerprint=fingerprint(name),
        measured_at=now_iso(),
    )


# -- python -m batchscope.hardware.peak -----------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Measure in this (fresh) process; ``--json`` prints the PeakResult as JSON.

    A user error is one line on stderr and exit status 2; with ``--json`` stdout then
    holds ``{"error": message, "type": class name}`` for the parent to re-raise.
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m batchscope.hardware.peak",
        description="Measure the device's matmul peak and copy bandwidth.",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--min-run-time", type=float, default=DEFAULT_MIN_RUN_TIME_S)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        result = measure_peak(
            args.device, args.dtype, args.threads, min_run_time_s=args.min_run_time
        )
    except BatchscopeError as exc:
        message = " ".join(str(exc).split())
        sys.stderr.write(f"batchscope: error: {message}\n")
        if args.json:
            sys.stdout.write(json.dumps({"error": message, "type": type(exc).__name__}) + "\n")
        return exc.exit_code
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    else:
        sys.stdout.write(
            f"{result.device} {result.dtype} matmul peak: {result.flops_per_s / 1e9:.1f} "
            f"GFLOP/s [{result.flops_per_s_low / 1e9:.1f}–{result.flops_per_s_high / 1e9:.1f}]\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
