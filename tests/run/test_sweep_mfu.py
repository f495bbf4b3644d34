"""A real CPU sweep with its FLOPs and MFU, end to end: the peak from the store's cache
(measured here for real, small and quick), the fields on every trial, the run's
``device_peaks``, the JSON export, the tables, the verdict line and ``mfu.png``."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from batchscope.cli.request import build_sweep_request
from batchscope.core.plan import Plan
from batchscope.core.results import RunResult
from batchscope.hardware.peak import measure_peak
from batchscope.report.export import to_csv, to_json
from batchscope.report.markdown import to_markdown
from batchscope.report.plots import render_plots
from batchscope.report.terminal import print_run
from batchscope.run.peak_cache import save_peak
from batchscope.run.store import Store
from batchscope.run.sweep import run_sweep

THREADS = 1
FIELDS = (
    "flops_per_step",
    "flops_per_sample",
    "achieved_flops_per_s",
    "achieved_flops_per_s_low",
    "achieved_flops_per_s_high",
    "device_peak_flops",
    "device_peak_dtype",
    "mfu",
    "mfu_low",
    "mfu_high",
)


def _plan(workload: str, sizes: list[int], steps: int) -> Plan:
    return Plan(
        workload=workload,
        workload_options={"images": 128},
        batch_sizes=sizes,
        devices=["cpu"],
        steps=steps,
        warmup=1,
        threads=THREADS,
        sample_interval_s=0,
    )


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunResult, list[str]]]:
    import torch

    before = torch.get_num_threads()
    store = Store(tmp_path_factory.mktemp("mfu") / "store.db")
    # a real peak of this CPU, cut short (one matmul size, brief blocks), cached as a
    # sweep's own measurement would be: the sweep then reads it instead of measuring
    peak = measure_peak("cpu", "fp32", THREADS, min_run_time_s=0.05, sizes=(256,), copy_bytes=2**20)
    save_peak(store, peak, THREADS)
    events: list[str] = []
    run = run_sweep(
        _plan("simplecnn", [16, 64], steps=8),
        isolation="none",
        store=store,
        peak=True,
        on_event=lambda kind, payload: events.append(kind),
    )
    torch.set_num_threads(before)
    yield run, events
    store.close()


def test_every_ok_trial_has_its_flops_and_an_mfu_in_0_1(
    swept: tuple[RunResult, list[str]],
) -> None:
    run, events = swept
    assert [t.status for t in run.trials] == ["ok", "ok"]
    for t in run.trials:
        assert t.flops_per_step == 2_015_232 * t.batch_size  # simplecnn: 8,060,928 per 4
        assert t.flops_per_sample == 2_015_232
        assert t.device_peak_dtype == "fp32" and t.device_peak_flops
        assert t.mfu is not None and 0 < t.mfu <= 1
        assert t.mfu_low is not None and t.mfu_high is not None
        assert t.mfu_low <= t.mfu <= t.mfu_high
    (entry,) = run.environment["device_peaks"]
    assert entry["device"] == "cpu" and entry["dtype"] == "fp32" and entry["cached"] is True
    assert events.count("peak") == events.count("peak_done") == 1


def test_the_json_export_holds_the_fields_per_trial_and_the_verdict(
    swept: tuple[RunResult, list[str]],
) -> None:
    run, _ = swept
    data = json.loads(to_json(run))
    for trial in data["trials"]:
        for name in FIELDS:
            assert name in trial, name
        assert 0 < trial["mfu"] <= 1
    assert data["environment"]["device_peaks"][0]["flops_per_s"] > 0
    efficiency = data["analysis"]["cpu"]["efficiency"]
    assert [p["batch_size"] for p in efficiency["points"]] == [16, 64]
    assert "matmul peak" in efficiency["verdict"]["reason"]
    assert RunResult.from_dict(data).trials[0].mfu == run.trials[0].mfu  # round trip
    header = to_csv(run).splitlines()[0].split(",")
    assert {"flops_per_step", "achieved_flops_per_s", "mfu", "mfu_low", "mfu_high"} <= set(header)


def test_tables_verdict_report_and_plot_show_the_mfu(swept: tuple[RunResult, list[str]]) -> None:
    run, _ = swept
    for width, wide in ((80, False), (160, True)):
        buf = io.StringIO()
        print_run(run, Console(file=buf, width=width, color_system=None), wide=wide)
        text = buf.getvalue()
        table = [line for line in text.splitlines() if line.strip(" │")[:2].isdigit()]
        assert table and all(len(line) <= width for line in table)
        assert ("MFU" in text.split("\n\n")[0]) is wide  # a column of the full table only
        assert "efficiency: b=" in text and "matmul peak" in " ".join(text.split())
    assert "| MFU \\[95 % CI\\] |" in to_markdown(run)  # Markdown escapes the brackets
    assert "Measured matmul peak (for MFU)" in to_markdown(run)
    from batchscope.analyse.explain import analyse_run

    assert "mfu.png" in render_plots(analyse_run(run), workload="simplecnn")


def test_no_peak_keeps_the_flops_and_gives_no_mfu(
    tmp_path: Path, restore_torch_threads: None
) -> None:
    request = build_sweep_request({"workload": "linear", "no_peak": True}, {"workload"})
    assert request.no_peak is True
    run = run_sweep(_plan("linear", [16], steps=3), isolation="none", peak=False)
    (t,) = run.trials
    assert t.flops_per_step == 4 * 16 * 10 and t.achieved_flops_per_s
    assert t.mfu is None and t.device_peak_flops is None
    assert "device_peaks" not in run.environment
    assert "mfu.png" not in render_plots(__import__("batchscope").analyse_run(run))
