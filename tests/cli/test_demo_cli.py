"""`make demo`'s command: ResNet-18 on the built-in photos, adaptive steps in rounds.

The whole default demo takes about 2 minutes here, so the test runs it at one batch
size: the same workload, data and protocol, three trials (one per round).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from batchscope.cli.commands import demo as demo_cmd
from conftest import CliResult


@pytest.mark.slow
def test_demo_runs_adaptive_rounds_on_small_photos_and_says_so(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    code, out, err = cli("demo", "-b", "8", "--no-store", "--json", "demo.json", timeout=600)
    assert code == 0, err
    err = " ".join(err.split())  # rich wraps long lines at the terminal width
    # what was reduced from the seeds' protocol, and how to get theirs
    assert "ResNet-18 on built-in 32×32 photos" in err and "3 interleaved rounds" in err
    assert "batchscope demo --full" in err
    assert "randomly initialised" in err or "random" in err  # no weights were loaded
    assert "resnet18 on cpu" in out
    run = json.loads((tmp_path / "demo.json").read_text())
    assert run["workload"]["options"]["extra"]["image_size"] == demo_cmd.QUICK_IMAGE_SIZE
    assert len(run["trials"]) == demo_cmd.QUICK_REPEATS
    assert sorted(t["repeat"] for t in run["trials"]) == list(range(demo_cmd.QUICK_REPEATS))
    for trial in run["trials"]:
        assert trial["status"] == "ok" and trial["batch_size"] == 8
        # adaptive: it stopped on reaching ±2 % or at the time limit, never before 10 steps
        assert trial["stopped_by"] in ("max_error", "time_limit")
        assert trial["measured_steps"] >= demo_cmd.QUICK_MIN_STEPS
        assert trial["warmup_steps"] == demo_cmd.QUICK_WARMUP
    analysis = run["analysis"]["cpu"]
    assert analysis["fastest"]["batch_size"] == 8


def test_demo_help_names_the_full_protocol(cli: Callable[..., CliResult]) -> None:
    code, out, _ = cli("demo", "--help")
    assert code == 0
    out = " ".join(out.replace("│", " ").split())
    assert "--full" in out and "2,8,32,128" in out and "16..256" in out


def test_help_keeps_defaults_and_extras_in_brackets(cli: Callable[..., CliResult]) -> None:
    """rich reads [word] in help text as markup and drops it: the defaults must survive."""
    code, out, _ = cli("sweep", "--help")
    assert code == 0
    out = " ".join(out.replace("│", " ").split())
    assert "(default: batchscope-results/batchscope.db)" in out
    assert "pip install batchscope[fastai]" in out and "pip install batchscope[keras]" in out
    assert "(default: fine_tune(1))" in out
