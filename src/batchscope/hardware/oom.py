"""Out-of-memory classification and the child's memory cap.

An OOM must be told apart from a bug: it is a fact about the batch size, not a
failure of the tool. Allocators report it in different words, so we match the
exception type first and the known messages second.
"""

from __future__ import annotations

import resource

#: Lower-cased fragments of the messages allocators raise when memory runs out.
OOM_MESSAGES = (
    "out of memory",  # CUDA ("CUDA out of memory"), MPS, XPU, HIP
    "can't allocate memory",  # torch's DefaultCPUAllocator
    "cannot allocate memory",  # errno ENOMEM
    "could not create a primitive",  # oneDNN, when its scratchpad cannot be allocated
    "std::bad_alloc",
    "failed to allocate",
    "unable to allocate",  # NumPy
)


def is_oom_error(exc: BaseException) -> bool:
    """True when ``exc`` means the process ran out of (device or host) memory."""
    if isinstance(exc, MemoryError):
        return True
    if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError and its CUDA alias
        return True
    message = str(exc).lower()
    return any(fragment in message for fragment in OOM_MESSAGES)


def last_line(text: str) -> str:
    """The last non-empty line of an error text, shortened to fit a table cell."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= 300 else line[:297] + "..."


def cap_address_space(limit_bytes: int) -> None:
    """Set this process's address-space limit, a hard stop against exhausting the machine.

    The measured peak memory decides whether a trial is over its budget; this
    cap only keeps a runaway trial from taking the whole machine down. It sits
    above what the process already maps, since ``import torch`` alone maps ~3.7 GB.
    """
    import psutil

    mapped = psutil.Process().memory_info().vms
    cap = mapped + 2 * limit_bytes + 512 * 1024**2
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
