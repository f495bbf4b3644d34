"""Preflight warnings: each machine state that would make the numbers wrong, simulated
through the injectable readings (no real load, governor or GPU needed)."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from batchscope.hardware.preflight import (
    GpuProcess,
    GpuUse,
    cpu_governors,
    cpu_quota,
    cuda_use,
    preflight_warnings,
)


def quiet(**overrides: Any) -> dict[str, Any]:
    """Readings of a quiet 2-core machine with no cpufreq and no GPU; override some."""
    readings: dict[str, Any] = {
        "cpus": lambda: {0, 1},
        "quota": lambda: None,
        "machine_cpus": lambda: 2,
        "load": lambda: 0.1,
        "governors": lambda: {},
        "gpu": lambda index: None,
        "ours": lambda: {os.getpid()},
    }
    readings.update(overrides)
    return readings


def one_line(warnings: list[str]) -> str:
    assert len(warnings) == 1, warnings
    assert "\n" not in warnings[0]
    return warnings[0]


def test_a_quiet_machine_has_no_warning() -> None:
    assert preflight_warnings(["cpu"], None, **quiet()) == []
    assert preflight_warnings(["cpu"], 2, **quiet()) == []
    assert preflight_warnings(["cpu", "cuda:0"], 1, **quiet()) == []


def test_more_threads_than_cores() -> None:
    assert one_line(preflight_warnings(["cpu"], 999, **quiet())) == (
        "--threads 999 is more than the 2 CPU cores available: threads will compete and "
        "step times will be slower than they need be"
    )


def test_the_container_quota_counts_as_the_cores_available() -> None:
    readings = quiet(cpus=lambda: set(range(16)), quota=lambda: 2.5, machine_cpus=lambda: 16)
    assert "--threads 4 is more than the 2 CPU cores" in one_line(
        preflight_warnings(["cpu"], 4, **readings)
    )
    assert preflight_warnings(["cpu"], 2, **readings) == []
    one = quiet(cpus=lambda: {3}, quota=lambda: 0.5)
    assert "the 1 CPU core available" in one_line(preflight_warnings(["cpu"], 2, **one))


def test_load_average_above_the_core_count() -> None:
    line = one_line(preflight_warnings(["cpu"], None, **quiet(load=lambda: 3.5)))
    assert line.startswith("the 1-minute load average is 3.50, more than the 2 CPU cores")
    assert "slower and noisier" in line
    assert preflight_warnings(["cpu"], None, **quiet(load=lambda: 2.0)) == []
    assert preflight_warnings(["cpu"], None, **quiet(load=lambda: None)) == []


def test_powersave_governor() -> None:
    governors = {0: ("powersave", "acpi-cpufreq"), 1: ("powersave", "acpi-cpufreq")}
    line = one_line(preflight_warnings(["cpu"], None, **quiet(governors=lambda: governors)))
    assert line.startswith("CPU frequency governor is 'powersave' on all 2 CPUs")
    assert "held at its lowest" in line and "slower" in line


def test_powersave_on_some_cpus_and_only_those_we_may_use() -> None:
    governors = {
        0: ("powersave", None),
        1: ("performance", None),
        2: ("powersave", None),
        3: ("powersave", None),
        7: ("powersave", None),  # not ours: not counted
    }
    readings = quiet(cpus=lambda: {0, 1, 2, 3}, governors=lambda: governors)
    line = one_line(preflight_warnings(["cpu"], None, **readings))
    assert "on 3 of 4 CPUs (cpu0,2-3)" in line
    all_fast = {0: ("performance", None), 1: ("schedutil", None)}
    assert preflight_warnings(["cpu"], None, **quiet(governors=lambda: all_fast)) == []


def test_powersave_of_intel_pstate_is_said_as_what_it_is() -> None:
    """intel_pstate's powersave still scales up: not 'held at its lowest'."""
    governors = {0: ("powersave", "intel_pstate"), 1: ("powersave", "intel_pstate")}
    line = one_line(preflight_warnings(["cpu"], None, **quiet(governors=lambda: governors)))
    assert "ramps up late" in line and "held at its lowest" not in line


def test_cpu_governors_reads_sysfs(tmp_path: Path) -> None:
    for cpu, governor, driver in (
        ("cpu0", "powersave", "acpi-cpufreq"),
        ("cpu1", "performance", None),
        ("cpu12", "schedutil", "intel_pstate"),
    ):
        folder = tmp_path / cpu / "cpufreq"
        folder.mkdir(parents=True)
        (folder / "scaling_governor").write_text(governor + "\n")
        if driver:
            (folder / "scaling_driver").write_text(driver + "\n")
    (tmp_path / "cpu2").mkdir()  # no cpufreq (a VM)
    (tmp_path / "cpufreq" / "policy0").mkdir(parents=True)  # not a CPU
    (tmp_path / "cpu3" / "cpufreq").mkdir(parents=True)  # no governor file
    assert cpu_governors(str(tmp_path)) == {
        0: ("powersave", "acpi-cpufreq"),
        1: ("performance", None),
        12: ("schedutil", "intel_pstate"),
    }
    assert cpu_governors(str(tmp_path / "missing")) == {}


def test_cpu_quota_reads_cgroup_v2_and_v1(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice/job\n")
    root = tmp_path / "fs"
    (root / "user.slice" / "job").mkdir(parents=True)
    (root / "user.slice" / "job" / "cpu.max").write_text("200000 100000\n")
    assert cpu_quota(str(root), str(proc)) == 2.0
    (root / "user.slice" / "job" / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(str(root), str(proc)) is None
    (root / "user.slice" / "job" / "cpu.max").write_text("garbage\n")
    assert cpu_quota(str(root), str(proc)) is None

    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(str(v1), str(tmp_path / "no-such-file")) == 1.5
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu_quota(str(v1), str(tmp_path / "no-such-file")) is None
    assert cpu_quota(str(tmp_path / "nothing"), str(tmp_path / "nothing")) is None


def test_a_gpu_busy_with_another_process() -> None:
    use = GpuUse(
        "NVIDIA H200",
        [GpuProcess(4242, 3 * 2**30), GpuProcess(os.getpid(), 2**20), GpuProcess(77, None)],
    )
    asked: list[int] = []

    def gpu(index: int) -> GpuUse:
        asked.append(index)
        return use

    line = one_line(preflight_warnings(["cpu", "cuda", "cuda:0"], None, **quiet(gpu=gpu)))
    assert asked == [0]  # "cuda" is cuda:0: asked once
    assert line.startswith("cuda:0 (NVIDIA H200) is already in use by 2 other processes")
    assert "pid 4242 using 3 GiB" in line and "pid 77" in line
    assert str(os.getpid()) not in line  # our own process does not count
    assert "slower" in line


def test_a_gpu_with_only_our_processes_or_none_is_quiet() -> None:
    mine = GpuUse("GPU", [GpuProcess(os.getpid())])
    assert preflight_warnings(["cuda:0"], None, **quiet(gpu=lambda i: mine)) == []
    idle = GpuUse("GPU", [])
    assert preflight_warnings(["cuda:1"], None, **quiet(gpu=lambda i: idle)) == []


def test_gpus_are_asked_only_for_cuda_devices() -> None:
    asked: list[int] = []

    def gpu(index: int) -> None:
        asked.append(index)

    preflight_warnings(["cpu", "mps", "xpu:0"], None, **quiet(gpu=gpu))
    assert asked == []
    preflight_warnings(["cuda:1", "cuda:3", "cuda:1"], None, **quiet(gpu=gpu))
    assert asked == [1, 3]


def test_many_gpu_processes_are_summarised() -> None:
    use = GpuUse("A100", [GpuProcess(1000 + i) for i in range(8)])
    line = one_line(preflight_warnings(["cuda:0"], None, **quiet(gpu=lambda i: use)))
    assert "8 other processes" in line and "and 3 more" in line


def test_never_raises_whatever_the_readings_do() -> None:
    def boom(*args: object) -> Any:
        raise RuntimeError("reading failed")

    readings = {name: boom for name in quiet()}
    assert preflight_warnings(["cpu", "cuda:0", "", "cuda:x"], 999, **readings) == []
    # one broken reading does not hide the others
    line = one_line(preflight_warnings(["cuda:0"], 999, **quiet(load=boom, gpu=boom)))
    assert line.startswith("--threads 999")


class FakeNvml(types.ModuleType):
    """Enough of pynvml for cuda_use: three GPUs, processes on GPU 2."""

    def __init__(self, *, init_fails: bool = False) -> None:
        super().__init__("pynvml")
        self.init_fails = init_fails
        self.shutdowns = 0
        self.uuids = {"GPU-aaaa": 0, "GPU-bbbb": 1, "GPU-cccc": 2}

    def nvmlInit(self) -> None:
        if self.init_fails:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if index not in (0, 1, 2):
            raise RuntimeError("Invalid Argument")
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> int:
        return self.uuids[uuid]

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return f"Fake GPU {handle}".encode()

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:
        if handle != 2:
            return []
        return [
            types.SimpleNamespace(pid=11, usedGpuMemory=2**30),
            types.SimpleNamespace(pid=12, usedGpuMemory=None),
        ]


def test_cuda_use_through_nvml_maps_cuda_visible_devices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert cuda_use(2) == GpuUse("Fake GPU 2", [GpuProcess(11, 2**30), GpuProcess(12, None)])
    assert cuda_use(0) == GpuUse("Fake GPU 0", [])
    assert cuda_use(5) is None  # no such GPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, GPU-bbbb,MIG-1234")
    first = cuda_use(0)
    assert first is not None and first.name == "Fake GPU 2"
    assert cuda_use(1) == GpuUse("Fake GPU 1", [])
    assert cuda_use(2) is None  # a MIG slice: not guessed
    assert cuda_use(3) is None  # not visible
    assert nvml.shutdowns == 7  # every init is paired with a shutdown


def test_no_nvml_or_no_driver_is_no_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed: import fails
    assert cuda_use(0) is None
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(init_fails=True))
    assert cuda_use(0) is None
    assert preflight_warnings(["cuda:0"], None, **quiet(gpu=cuda_use)) == []


def test_the_real_machine_gives_lines() -> None:
    """Whatever this machine is, the defaults read it without raising."""
    warnings = preflight_warnings(["cpu", "cuda:0"], 10_000)
    assert all(isinstance(w, str) and w and "\n" not in w for w in warnings)
    assert any(w.startswith("--threads 10000 is more than the") for w in warnings)
