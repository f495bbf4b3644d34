"""`make demo`'s command: the seed experiment on the built-in photos, said on screen.

The whole default demo takes ~2 minutes here, so the test runs it at one batch
size: the same workload, data and protocol, one trial.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CliResult


@pytest.mark.slow
def test_demo_runs_the_reduced_seed_protocol_and_says_so(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    code, out, err = cli("demo", "-b", "16", "--no-store", "--json", "demo.json", timeout=600)
    assert code == 0, err
    err = " ".join(err.split())  # rich wraps long lines at the terminal width
    # what was reduced from the seed's protocol, and how to get the full one
    assert "160 built-in 192×192 photos (128 train / 32 validation)" in err
    assert "batch sizes 16–128" in err and "batchscope demo --full" in err
    assert "randomly initialised" in err or "random" in err  # no weights were loaded
    assert "resnet18 on cpu" in out and "Samples/epoch" in out
    run = json.loads((tmp_path / "demo.json").read_text())
    (trial,) = run["trials"]
    assert trial["status"] == "ok" and trial["batch_size"] == 16
    assert trial["samples_per_epoch"] == 128 and len(trial["epochs"]) == 1
    assert run["settings"]["epochs"] == 1 and run["settings"]["warmup"] == 1
    assert trial["step_time_s"]["n"] == 128 // 16


def test_demo_help_names_the_full_protocol(cli: Callable[..., CliResult]) -> None:
    code, out, _ = cli("demo", "--help")
    assert code == 0
    out = " ".join(out.replace("│", " ").split())
    assert "--full" in out and "16..128" in out and "16..256" in out


def test_help_keeps_defaults_and_extras_in_brackets(cli: Callable[..., CliResult]) -> None:
    """rich reads [word] in help text as markup and drops it: the defaults must survive."""
    code, out, _ = cli("sweep", "--help")
    assert code == 0
    out = " ".join(out.replace("│", " ").split())
    assert "(default: batchscope-results/batchscope.db)" in out
    assert "pip install batchscope[fastai]" in out and "pip install batchscope[keras]" in out
    assert "(default: fine_tune(1))" in out
