"""The hardware samplers against processes whose load we know."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from batchscope.hardware.monitor import (
    CpuSource,
    NvmlSource,
    RaplSource,
    Sample,
    Sampler,
    samples_to_rows,
    summarise,
)

BUSY_THEN_IDLE = """
import sys, time
print("ready", flush=True)
sys.stdin.readline()
end = time.perf_counter() + 1.5
while time.perf_counter() < end:
    pass
print("idle", flush=True)
time.sleep(1.5)
"""


def test_cpu_sampler_sees_a_busy_loop_and_idle() -> None:
    """One busy core reads ~100 % while the loop runs and ~0 % while the process sleeps."""
    proc = subprocess.Popen(
        [sys.executable, "-c", BUSY_THEN_IDLE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "ready"
    sampler = Sampler([CpuSource(proc.pid)], interval_s=0.1)
    sampler.start()
    sampler.mark("busy")
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "idle"
    sampler.mark("idle")
    proc.wait()
    samples = sampler.stop()
    busy_start, idle_start = sampler.marks[0][0], sampler.marks[1][0]
    busy = [
        s.cpu_process_percent
        for s in samples
        if busy_start + 0.3 < s.t_s < idle_start - 0.05 and s.cpu_process_percent is not None
    ]
    idle = [
        s.cpu_process_percent
        for s in samples
        if idle_start + 0.3 < s.t_s and s.cpu_process_percent is not None and s.rss_bytes
    ]
    assert len(busy) >= 5 and len(idle) >= 5
    assert sum(busy) / len(busy) > 75, busy
    assert sum(idle) / len(idle) < 15, idle


def test_cpu_sampler_follows_children_and_memory() -> None:
    """A parent that only waits shows its child's load and memory in the tree's figures."""
    code = (
        "import subprocess, sys; subprocess.run([sys.executable, '-c', "
        "'import time\\nx = bytearray(200 * 2**20)\\nend = time.perf_counter() + 1.2\\n"
        "while time.perf_counter() < end: x[0] = 1'])"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    with Sampler([CpuSource(proc.pid)], interval_s=0.1) as sampler:
        proc.wait()
    summary = summarise(sampler.samples)
    assert summary.peak_rss_bytes is not None and summary.peak_rss_bytes > 200 * 2**20
    assert summary.cpu_process_percent_max is not None and summary.cpu_process_percent_max > 50


def test_rapl_reads_energy_and_handles_wraparound(tmp_path) -> None:  # type: ignore[no-untyped-def]
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "max_energy_range_uj").write_text("1000000\n")
    (zone / "energy_uj").write_text("999000\n")
    (tmp_path / "intel-rapl:0:0").mkdir()  # a sub-zone: counted inside the package
    source = RaplSource(str(tmp_path))
    assert source.available and len(source.domains) == 1
    sample = Sample(t_s=0.0)
    (zone / "energy_uj").write_text("500\n")  # wrapped: 1000 + 500 µJ since
    source.read(sample)
    assert sample.cpu_energy_j == pytest.approx(1500e-6)


def test_rapl_absent_is_not_available(tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = RaplSource(str(tmp_path / "nothing"))
    sample = Sample(t_s=0.0)
    source.read(sample)
    assert not source.available
    assert sample.cpu_energy_j is None
    assert "cpu_energy" in source.unavailable


class _NotSupported(Exception):
    pass


def _fake_nvml(energy_supported: bool) -> types.SimpleNamespace:
    """An NVML stand-in whose GPU lacks some metrics, as consumer cards and MIG slices do."""
    state = {"energy_mj": 5_000_000, "calls": 0}

    def unsupported(*args: object) -> None:
        raise _NotSupported("Not Supported")

    def energy(handle: object) -> int:
        state["energy_mj"] += 2000  # 2 J per reading
        return state["energy_mj"]

    return types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
        nvmlDeviceGetHandleByUUID=lambda u: u,
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=87, memory=40),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=3 * 2**30, total=8 * 2**30),
        nvmlDeviceGetPowerUsage=lambda h: 150_000,  # mW
        nvmlDeviceGetClockInfo=unsupported,
        nvmlDeviceGetTemperature=lambda h, kind: 61,
        nvmlDeviceGetTotalEnergyConsumption=energy if energy_supported else unsupported,
        NVML_CLOCK_SM=1,
        NVML_TEMPERATURE_GPU=0,
    )


def test_nvml_unsupported_metrics_are_not_available(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(energy_supported=True))
    source = NvmlSource()
    assert source.available
    first, second = Sample(t_s=0.0), Sample(t_s=0.1)
    source.read(first)
    source.read(second)
    gpu = second.gpus[0]
    assert gpu.utilization_percent == 87 and gpu.power_w == 150 and gpu.temperature_c == 61
    assert gpu.memory_used_bytes == 3 * 2**30
    assert gpu.sm_clock_mhz is None and "gpu0_sm_clock" in source.unavailable
    assert second.gpus[0].energy_j - first.gpus[0].energy_j == pytest.approx(2.0)


def test_nvml_integrates_power_without_an_energy_counter(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(energy_supported=False))
    source = NvmlSource()
    samples = [Sample(t_s=t) for t in (0.0, 0.5, 1.0)]
    for s in samples:
        source.read(s)
    assert samples[-1].gpus[0].energy_j == pytest.approx(150.0)  # 150 W for 1 s
    summary = summarise(samples)
    assert summary.gpu_energy_j == pytest.approx(150.0)
    assert summary.gpu_utilization_percent_mean == 87


def test_nvml_without_a_driver_is_not_available(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def no_driver() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    monkeypatch.setitem(sys.modules, "pynvml", types.SimpleNamespace(nvmlInit=no_driver))
    source = NvmlSource()
    sample = Sample(t_s=0.0)
    source.read(sample)
    assert not source.available and sample.gpus == []
    assert "NVML" in source.unavailable["gpu"]


def test_summarise_window_and_rows() -> None:
    samples = [
        Sample(
            t_s=i * 0.1, cpu_process_percent=float(i * 10), rss_bytes=i * 100, cpu_energy_j=i * 1.0
        )
        for i in range(10)
    ]
    s = summarise(samples, start_s=0.25, end_s=0.75)
    assert s.n_samples == 5  # t = 0.3 … 0.7
    assert s.peak_rss_bytes == 700
    assert s.cpu_energy_j == pytest.approx(4.0) and s.energy_j == pytest.approx(4.0)
    assert s.cpu_process_percent_mean == pytest.approx(55.0)  # first reading of window skipped
    rows = samples_to_rows(samples)
    assert rows[3]["cpu_process_percent"] == 30.0 and rows[3]["t_s"] == 0.3


@pytest.mark.gpu
def test_nvml_on_a_real_gpu() -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        pytest.skip(f"no NVIDIA GPU/driver here: {exc}")
    source = NvmlSource()
    sample = Sample(t_s=0.0)
    source.read(sample)
    source.close()
    assert sample.gpus and sample.gpus[0].memory_used_bytes is not None
