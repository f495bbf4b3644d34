"""``batchscope sweep gpt --seq-lens``: every length reaches its trial's child process,
each is its own series, and the JSON carries the token figures the table shows."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli


def test_seq_lens_sweep_runs_each_length_in_its_own_series(tmp_path: Path) -> None:
    code, out, err = run_cli(
        "sweep", "gpt", "-b", "2", "--seq-lens", "16,32",
        "--layers", "1", "--width", "16", "--heads", "2",
        "--steps", "6", "--warmup", "0", "--threads", "1", "--sample-interval", "0",
        "--no-store", "--no-peak", "-q", "--json", "-",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    run = json.loads(out)
    trials = run["trials"]
    assert sorted(t["seq_len"] for t in trials) == [16, 32]
    for t in trials:
        assert t["status"] == "ok"
        assert t["tokens_per_step"] == 2 * t["seq_len"]
        assert t["tokens_per_s"] == t["tokens_per_step"] / t["step_time_s"]["median"]
        assert t["val_perplexity"] is not None
    assert sorted(run["analysis"]) == ["cpu seq=16", "cpu seq=32"]
    assert run["workload"]["info"]["width"] == 16  # --width reached the workload
