"""The device's measured peak, measured once per machine and cached in the results store.

A peak (:mod:`batchscope.hardware.peak`) takes a few seconds to measure; every sweep
needs one per device and dtype to give each batch size its MFU. It is measured in a
fresh child process (``python -m batchscope.hardware.peak --json``: this process never
imports torch, and a fresh process has no other work's threads, allocator state or
warm caches) and kept in the store's ``meta`` table under

    peak/<fingerprint>/<device>/<dtype>/<threads>/<tf32>

where the fingerprint is :func:`batchscope.hardware.peak.fingerprint` (CPU model, cores,
GPU names, torch version, device): on another machine or torch the key differs and the
peak is measured again. A read-only store is read but not written; no store (None)
always measures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from batchscope import errors
from batchscope.errors import BatchscopeError
from batchscope.hardware.peak import (
    DEFAULT_MIN_RUN_TIME_S,
    PeakResult,
    canonical_device,
    check_dtype,
    fingerprint,
)
from batchscope.run.store import Store

#: how long the measuring child may take (torch import + ~5 s of measuring, on a busy box)
PEAK_TIMEOUT_S = 300.0


def expected_tf32(device: str) -> bool | None:
    """The TF32 setting a fresh child measures with: torch's default, off unless
    ``TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1``; None off CUDA. (Read torch-free.)"""
    if not device.startswith("cuda"):
        return None
    return os.environ.get("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE") == "1"


def cache_key(device: str, dtype: str = "fp32", threads: int | None = None) -> str:
    """The ``meta`` key of a peak measured on this machine, e.g.
    ``peak/3f2a…/cpu/fp32/2/none`` or ``peak/9c1e…/cuda:0/bf16/any/ieee``."""
    device = canonical_device(device)
    dtype = check_dtype(dtype)
    tf32 = expected_tf32(device)
    tf32_text = "none" if tf32 is None else ("tf32" if tf32 else "ieee")
    # torch threads decide a CPU's peak only; an accelerator's key ignores them
    if not device.startswith("cpu"):
        threads_text = "any"
    else:
        threads_text = "default" if threads is None else str(int(threads))
    return f"peak/{fingerprint(device)}/{device}/{dtype}/{threads_text}/{tf32_text}"


def cached_peak(
    store: Store | None, device: str, dtype: str = "fp32", threads: int | None = None
) -> PeakResult | None:
    """The peak cached for this machine, device, dtype and threads, or None."""
    if store is None:
        return None
    text = store.get_meta(cache_key(device, dtype, threads))
    if text is None:
        return None
    try:
        return PeakResult.from_dict(json.loads(text))
    except (ValueError, TypeError, KeyError):  # a damaged entry is measured again
        return None


def measure_in_child(
    device: str,
    dtype: str = "fp32",
    threads: int | None = None,
    *,
    min_run_time_s: float = DEFAULT_MIN_RUN_TIME_S,
    timeout_s: float = PEAK_TIMEOUT_S,
) -> PeakResult:
    """Measure the peak in a fresh ``python -m batchscope.hardware.peak --json`` process.

    Its user errors (absent device, unsupported dtype) come back as the same
    :class:`~batchscope.errors.BatchscopeError`; a crash or a timeout is a
    :class:`~batchscope.errors.DeviceError` with one line.
    """
    cmd = [
        sys.executable, "-m", "batchscope.hardware.peak", "--device", device,
        "--dtype", dtype, "--min-run-time", repr(float(min_run_time_s)), "--json",
    ]  # fmt: skip
    if threads is not None:
        cmd += ["--threads", str(int(threads))]
    env = dict(os.environ)
    # the child must import the same batchscope as we are, installed or not
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise errors.DeviceError(
            f"measuring the {device} {dtype} peak took over {timeout_s:g} s and was stopped"
        ) from exc
    payload = _last_json(proc.stdout)
    if proc.returncode == 0 and payload is not None and "error" not in payload:
        return PeakResult.from_dict(payload)
    if payload is not None and "error" in payload:
        cls = getattr(errors, str(payload.get("type")), None)
        if not (isinstance(cls, type) and issubclass(cls, BatchscopeError)):
            cls = errors.DeviceError
        raise cls(str(payload["error"]))
    lines = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
    last = lines[-1] if lines else "no output"
    raise errors.DeviceError(
        f"measuring the {device} {dtype} peak failed (exit status {proc.returncode}): {last}"
    )


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed((text or "").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def peak_for(
    store: Store | None,
    device: str,
    dtype: str = "fp32",
    threads: int | None = None,
    *,
    refresh: bool = False,
) -> PeakResult:
    """This machine's measured peak for ``device``/``dtype``/``threads``: from the store's
    cache when the key matches (and not ``refresh``), else measured in a fresh child and
    cached (unless the store is None or read-only).
    """
    device = canonical_device(device)
    dtype = check_dtype(dtype)
    if not refresh:
        found = cached_peak(store, device, dtype, threads)
        if found is not None:
            return found
    result = measure_in_child(device, dtype, threads)
    save_peak(store, result, threads)
    return result


def save_peak(store: Store | None, result: PeakResult, threads: int | None = None) -> bool:
    """Cache ``result`` (measured with ``threads`` as asked) in ``store``; False where
    there is nothing to write to (no store, or a read-only one)."""
    if store is None or store.readonly:
        return False
    key = cache_key(result.device, result.dtype, threads)
    store.put_meta(key, json.dumps(result.to_dict()))
    return True
