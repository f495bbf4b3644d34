"""Which machine a trial ran on: its hostname and a short fingerprint of its hardware.

A sweep fanned out over a cluster (``--executor ray``) may run one trial here and the
next elsewhere; a speedup between two machines compares hardware, not only batch sizes
or devices. Each trial records where it ran so the report can say so. Torch-free.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
from typing import Any


def machine_identity() -> dict[str, Any]:
    """The facts that make two machines different for timing (no GPU pinning, no torch)."""
    from batchscope.hardware.envinfo import host_info
    from batchscope.hardware.peak import nvml_gpu_names

    host = host_info()
    return {
        "hostname": platform.node(),
        "cpu_model": host["cpu_model"],
        "cpu_cores_logical": host["cpu_cores_logical"],
        "machine": host["machine"],
        "memory_bytes": host["memory_bytes"],
        "gpus": nvml_gpu_names(),
    }


def fingerprint_of(identity: dict[str, Any]) -> str:
    """A short stable hash of :func:`machine_identity`'s facts."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def this_machine() -> tuple[str, str]:
    """(hostname, fingerprint) of the machine this process runs on, read once."""
    identity = machine_identity()
    return str(identity["hostname"]), fingerprint_of(identity)
