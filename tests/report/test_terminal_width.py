"""The terminal table fits the terminal: compact at 80 columns, full from 120."""

from __future__ import annotations

import io

import numpy as np
from rich.console import Console

from analyse.simulate import simulated_trials
from batchscope.core.results import RunResult, TrialResult
from batchscope.report.terminal import print_run


def _run() -> RunResult:
    rng = np.random.default_rng(0)
    trials = simulated_trials(
        rng, [16, 32, 64, 128], [1.3e-3, 1.0e-3, 1.0e-3, 1.1e-3], (20,) * 4, noise=0.05, rounds=2
    )
    for t in trials:
        t.peak_memory_bytes = 300_000_000 + 10_000_000 * t.batch_size
    trials.append(
        TrialResult(device="cpu", batch_size=4096, status="oom", error="out of memory: " + "x" * 80)
    )
    return RunResult(
        run_id="r",
        created="now",
        workload={"name": "resnet18"},
        settings={},
        environment={},
        trials=trials,
    )


def _render(width: int, wide: bool | None = None) -> list[str]:
    buf = io.StringIO()
    print_run(_run(), Console(file=buf, width=width, color_system=None), wide=wide)
    return buf.getvalue().splitlines()


def _table(lines: list[str]) -> list[str]:
    start = next(i for i, line in enumerate(lines) if "Batch" in line)
    end = next(
        i
        for i in range(start + 1, len(lines))
        if not lines[i].strip() or lines[i].startswith(("use:", "fastest"))
    )
    return lines[start:end]


def test_at_80_columns_the_table_fits_without_wrapping() -> None:
    lines = _render(80)
    table = _table(lines)
    assert all(len(line) <= 80 for line in table)
    header = table[0]
    for name in ("Batch", "Step time [95% CI]", "n", "Samples/s", "Rel.", "Peak mem", "Status"):
        assert name in header, name
    rows = [line for line in table if line.strip()[:3].strip().isdigit()]
    # one line per batch size: 4 measured, 1 failed, none wrapped onto a second line
    assert len(rows) == 5
    assert any(line.rstrip().endswith("oom") for line in rows)  # one word, details below
    assert any("failed: b=4096: oom: out of memory" in line for line in lines)


def test_at_120_columns_the_full_table_is_shown() -> None:
    table = _table(_render(120))
    assert all(len(line) <= 120 for line in table)
    assert (
        "Samples/s [95 % CI]" in table[0] and "Samples/epoch" in table[0] or "Samples/" in table[0]
    )


def test_wide_asks_for_the_full_table_at_any_width() -> None:
    table = _table(_render(80, wide=True))
    assert table[0].count("┃") == 10  # all nine columns, wrapped to fit
    compact = _table(_render(80))
    assert "┃" not in compact[0] and len(compact[0].split()) >= 7
