"""The hardware samplers against processes whose load we know."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
import types

import psutil
import pytest

from batchscope.core.samples import Sample, samples_to_rows
from batchscope.hardware.monitor import (
    CpuSource,
    NvmlSource,
    RaplSource,
    Sampler,
    lower_thread_priority,
    summarise,
)

#: the suite's trial zygote is a descendant of this process: these tests count ours
pytestmark = pytest.mark.usefixtures("no_zygote")


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


class _CostlyWalks(CpuSource):
    """As on a busy machine where one walk for children costs far more than its share."""

    CHILD_SCAN_SHARE = 1e-12


def test_cpu_sampler_follows_children_and_memory() -> None:
    """A parent that only waits shows its child's load and memory in the tree's figures,
    even where the walks for children cost so much that only MAX_SCAN_EVERY_S forces them."""
    code = (
        "import subprocess, sys; subprocess.run([sys.executable, '-c', "
        "'import time\\nx = bytearray(200 * 2**20)\\nend = time.perf_counter() + 1.2\\n"
        "while time.perf_counter() < end: x[0] = 1'])"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    assert _CostlyWalks.MAX_SCAN_EVERY_S < 1.2  # shorter than the child lives
    with Sampler([_CostlyWalks(proc.pid)], interval_s=0.1) as sampler:
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


# ------------------------------------------------- the cheap CPU reading against psutil

WAIT_FOR_STDIN = (
    "import sys\nx = bytearray({mb} * 2**20)\nx[::4096] = b'1' * len(x[::4096])\n"
    "print('ready', flush=True)\nsys.stdin.readline()\n"
)


def _child(mb: int = 0) -> subprocess.Popen[str]:
    """A child that holds ``mb`` MiB resident and waits for a line on stdin."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WAIT_FOR_STDIN.format(mb=mb)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    proc.wait()


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


@pytest.mark.parametrize("direct", [True, False], ids=["procfs", "psutil"])
def test_a_cpu_reading_agrees_with_psutil_on_this_process(direct: bool) -> None:
    """CPU seconds, RSS and start time as psutil reads them, by procfs or by psutil itself."""
    source = CpuSource(os.getpid(), procfs="/proc" if direct else "/no/procfs")
    if direct and not source.direct:
        pytest.skip("no procfs here")
    assert source.direct is direct
    me = psutil.Process()
    before, rss_before = _cpu_s(me), me.memory_info().rss
    probe = source._probe(os.getpid())
    after, rss_after = _cpu_s(me), me.memory_info().rss
    assert probe is not None
    start, used, rss = probe
    assert before - 1e-9 <= used <= after + 1e-9  # the same counter, read in between
    assert min(rss_before, rss_after) - 4 * 2**20 <= rss <= max(rss_before, rss_after) + 4 * 2**20
    if not direct:
        assert start == me.create_time()
    else:  # ticks since boot: psutil adds the boot time, known to a second
        assert abs(psutil.boot_time() + start - me.create_time()) < 1.5


def test_a_reading_includes_the_children_and_their_memory() -> None:
    child = _child(mb=64)
    try:
        source = CpuSource(os.getpid())
        sample = Sample(t_s=0.0)
        source.read(sample)
        assert child.pid in source._children
        expected = psutil.Process().memory_info().rss + psutil.Process(child.pid).memory_info().rss
        assert sample.rss_bytes is not None and sample.rss_bytes > 64 * 2**20
        assert abs(sample.rss_bytes - expected) < 16 * 2**20
        assert sample.cpu_process_percent is not None and sample.cpu_process_percent >= 0
        assert sample.cpu_per_core_percent and sample.cpu_system_percent is not None
    finally:
        _release(child)
    sample = Sample(t_s=1.0)
    source.read(sample)  # the child has exited: dropped, not an error
    assert child.pid not in source._children
    assert sample.rss_bytes is not None and sample.rss_bytes < expected - 32 * 2**20


BUSY_CHILD_OF_A_WAITING_PARENT = """
import subprocess, sys
sys.stdin.readline()
child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
print(child.pid, flush=True)
sys.stdin.readline()
child.kill()
child.wait()
"""


def test_a_child_found_late_counts_with_its_load_since_it_started() -> None:
    """A child born between two walks of the process tree does not read as idle."""
    parent = subprocess.Popen(
        [sys.executable, "-c", BUSY_CHILD_OF_A_WAITING_PARENT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdin is not None and parent.stdout is not None
    try:
        source = CpuSource(parent.pid)  # walks the tree now: no child yet
        if not source.direct:
            pytest.skip("the estimate needs procfs start times")
        assert source._children == []
        parent.stdin.write("go\n")
        parent.stdin.flush()
        child = psutil.Process(int(parent.stdout.readline()))
        deadline = time.monotonic() + 30
        while _cpu_s(child) < 0.05 and time.monotonic() < deadline:
            time.sleep(0.01)
        used_before = _cpu_s(child)
        assert used_before > 0
        source._next_scan = -math.inf  # the next reading walks the tree again
        sample = Sample(t_s=1.0)
        source.read(sample)
        assert child.pid in source._children
        probe = source._probe(child.pid)
        assert probe is not None
        age_after = time.clock_gettime(time.CLOCK_BOOTTIME) - probe[0]
        # its CPU time since its start over its age, at least what was used before the read
        assert sample.cpu_process_percent is not None
        assert sample.cpu_process_percent >= 100 * used_before / age_after - 1e-6
    finally:
        parent.stdin.write("\n")
        parent.stdin.flush()
        parent.wait()


def test_the_tree_walk_is_rationed() -> None:
    """Readings between walks reuse the children list; a walk is due after the period."""
    source = CpuSource(os.getpid(), children_every_s=3600.0)
    child = _child()
    try:
        source.read(Sample(t_s=0.0))
        assert child.pid not in source._children  # no walk since the child started
        source._next_scan = -math.inf
        source.read(Sample(t_s=0.1))
        assert child.pid in source._children
        assert source._next_scan > time.monotonic() + 3000
    finally:
        _release(child)


def _priority_in_a_thread(lower: bool) -> tuple[bool, int | None]:
    got: list[tuple[bool, int | None]] = []

    def body() -> None:
        ok = lower_thread_priority() if lower else False
        nice = None
        if hasattr(os, "getpriority") and sys.platform.startswith("linux"):
            nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        got.append((ok, nice))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return got[0]


def test_lowering_the_sampler_thread_priority_leaves_the_process_alone() -> None:
    main_nice = os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else None
    ok, nice = _priority_in_a_thread(lower=True)
    if sys.platform.startswith("linux"):
        assert ok and nice == 19
    else:
        assert not ok
    if main_nice is not None:  # the training threads keep their priority
        assert os.getpriority(os.PRIO_PROCESS, 0) == main_nice
    with Sampler([CpuSource()], interval_s=0.05) as sampler:
        sampler.sample_once()
    assert sampler.lowered_priority is sys.platform.startswith("linux")
    with Sampler([CpuSource()], interval_s=0.05, low_priority=False) as plain:
        plain.sample_once()
    assert plain.lowered_priority is False
