"""The measured device peak (matmul FLOP/s, copy bandwidth) and the vendor figures."""

from __future__ import annotations

import pytest

from batchscope.errors import DeviceError, UsageError
from batchscope.hardware.peak import (
    PeakResult,
    canonical_device,
    check_dtype,
    fingerprint,
    measure_peak,
)
from batchscope.hardware.vendor_peaks import vendor_figures, vendor_peak

#: small and short: the library's logic, not a real peak (that is the CLI test's)
QUICK = {"sizes": (64, 128), "min_run_time_s": 0.02, "copy_bytes": 1 << 20}


def test_a_cpu_peak_is_positive_inside_its_interval_and_round_trips() -> None:
    result = measure_peak("cpu", "fp32", threads=1, **QUICK)
    assert result.device == "cpu" and result.dtype == "fp32" and result.threads == 1
    assert result.tf32 is None and result.vendor_name is None and result.vendor_flops_per_s is None
    assert 0 < result.flops_per_s_low <= result.flops_per_s <= result.flops_per_s_high
    assert [s["n"] for s in result.sizes] == [64, 128]
    for s in result.sizes:
        assert 0 < s["low"] <= s["flops_per_s"] <= s["high"]
    assert result.flops_per_s == max(s["flops_per_s"] for s in result.sizes)
    assert result.best_n in (64, 128)
    assert 0 < result.copy_bytes_per_s_low <= result.copy_bytes_per_s
    assert result.copy_bytes_per_s <= result.copy_bytes_per_s_high
    assert result.fingerprint == fingerprint("cpu") and result.measured_at
    assert PeakResult.from_dict(result.to_dict()) == result


def test_bad_dtype_device_and_threads_are_one_line_user_errors() -> None:
    with pytest.raises(UsageError, match="unknown dtype 'int8': use fp32, bf16, fp16"):
        measure_peak("cpu", "int8", **QUICK)
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        measure_peak("tpu", **QUICK)
    with pytest.raises(DeviceError, match="one device at a time"):
        measure_peak("cpu,cuda", **QUICK)
    with pytest.raises(UsageError, match="at least 1"):
        measure_peak("cpu", threads=0, **QUICK)
    with pytest.raises(DeviceError, match="not present"):
        measure_peak("cuda:99", **QUICK)


def test_names_are_canonical() -> None:
    assert canonical_device(" CUDA ") == "cuda:0" and canonical_device("cpu") == "cpu"
    assert check_dtype("bfloat16") == "bf16" and check_dtype("half") == "fp16"


def test_the_fingerprint_is_stable_and_tells_machines_and_devices_apart() -> None:
    assert fingerprint("cpu") == fingerprint("cpu")
    assert fingerprint("cpu") != fingerprint("cuda:0")
    facts = {"cpu_model": "X", "torch": "2.3", "gpus": []}
    assert fingerprint("cpu", facts) != fingerprint("cpu", {**facts, "torch": "2.4"})
    assert len(fingerprint("cpu")) == 16


def test_vendor_figures_for_known_gpus_and_none_for_the_unknown() -> None:
    assert vendor_peak("NVIDIA H200", "bf16") == ("NVIDIA H200 SXM datasheet, dense BF16 tensor",
                                                  989.4e12)  # fmt: skip
    assert vendor_peak("NVIDIA H200", "fp32") == ("NVIDIA H200 SXM datasheet, dense FP32", 67e12)
    assert vendor_peak("NVIDIA H200", "fp32", tf32=True)[1] == 494.7e12  # type: ignore[index]
    h100 = vendor_figures("NVIDIA H100 80GB HBM3")
    assert h100 is not None and h100.name == "NVIDIA H100 SXM"
    assert vendor_figures("NVIDIA H100 PCIe").name == "NVIDIA H100 PCIe"  # type: ignore[union-attr]
    assert vendor_figures("NVIDIA A100-SXM4-80GB").bf16 == 312e12  # type: ignore[union-attr]
    assert vendor_figures("Tesla V100-SXM2-16GB").fp16 == 125e12  # type: ignore[union-attr]
    assert vendor_figures("Tesla V100-PCIE-32GB").fp32 == 14e12  # type: ignore[union-attr]
    assert vendor_figures("Tesla T4").name == "NVIDIA T4"  # type: ignore[union-attr]
    assert vendor_figures("NVIDIA L4").tf32 == 60e12  # type: ignore[union-attr]
    assert vendor_peak("Tesla T4", "bf16") is None  # Turing has no BF16
    for unknown in ("NVIDIA H200 NVL", "NVIDIA H100 NVL", "NVIDIA L40S", "NVIDIA GeForce RTX 4090",
                    "NVIDIA A10", "", None):  # fmt: skip
        assert vendor_figures(unknown) is None, unknown


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_peak_records_tf32_and_the_vendor_figure() -> None:
    result = measure_peak("cuda", "bf16", sizes=(2048, 4096), min_run_time_s=0.1)
    assert result.device == "cuda:0" and isinstance(result.tf32, bool)
    assert 0 < result.flops_per_s_low <= result.flops_per_s <= result.flops_per_s_high
    assert result.copy_bytes_per_s > 0
    if result.vendor_flops_per_s is not None:  # measured below the datasheet, never far above
        assert result.flops_per_s < 1.2 * result.vendor_flops_per_s
