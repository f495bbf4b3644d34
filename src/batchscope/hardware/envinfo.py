"""The machine and software fingerprint recorded with every run.

Numbers from two machines are only comparable when you know what each machine
was; this is what ``batchscope env`` prints and what reports show.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        import subprocess

        try:
            return (
                subprocess.run(
                    ["sysctl", "-n", "machdep.cpu.brand_string"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                    check=False,
                ).stdout.strip()
                or platform.processor()
            )
        except OSError:
            pass
    return platform.processor() or platform.machine()


def host_info() -> dict[str, Any]:
    """What the host is, without importing torch."""
    import psutil

    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_cores_logical": psutil.cpu_count(logical=True),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
    }


def torch_info() -> dict[str, Any]:
    """Torch, CUDA/cuDNN, and the accelerators torch can see (imports torch)."""
    import torch
    import torchvision

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torch_threads_default": torch.get_num_threads(),
        "cuda_build": torch.version.cuda,
        "cudnn": None,
        "gpus": [],
        "mps": bool(hasattr(torch.backends, "mps") and torch.backends.mps.is_available()),
        "devices": available_devices(),
    }
    if torch.cuda.is_available():
        info["cudnn"] = torch.backends.cudnn.version()
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            info["gpus"].append(
                {
                    "index": i,
                    "name": props.name,
                    "memory_bytes": props.total_memory,
                    "capability": f"{props.major}.{props.minor}",
                    "multiprocessors": props.multi_processor_count,
                }
            )
    return info


def available_devices() -> list[str]:
    """Canonical names of the devices a trial can use here: cpu, cuda:N, mps."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def collect() -> dict[str, Any]:
    """Host and torch facts together."""
    return {**host_info(), **torch_info()}


def check_device(name: str) -> Any:
    """The ``torch.device`` for ``name``, or a :class:`~batchscope.errors.DeviceError` if it
    is not usable here (imports torch).

    The one rule for every device check: it lives at the hardware layer so that a hardware
    measurement (``batchscope peak``) can use it without importing the engine, and
    :func:`batchscope.engine.trial.check_device` delegates to it.
    """
    import torch

    from batchscope.errors import DeviceError

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"unknown device {name!r}: use cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} is not present: torch sees no CUDA GPU")
        if (device.index or 0) >= torch.cuda.device_count():
            raise DeviceError(
                f"device {name!r} is not present: {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise DeviceError(f"device {name!r} is not present: MPS is not available")
    elif device.type != "cpu" and device.type != "xpu":
        raise DeviceError(f"unknown device {name!r}: use cpu, cuda, cuda:N or mps")
    return device
