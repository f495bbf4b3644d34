"""Every export writes valid JSON whatever a trial holds: NaN, ±infinity, huge values."""

from __future__ import annotations

import json
import math
import re

import pytest

from batchscope.core.results import RunResult, StepStats, TrialResult, json_safe
from batchscope.report import export


def _run(**fields: object) -> RunResult:
    times = [0.01, 0.011, 0.012, 0.01, 0.011, 0.012]
    ok = TrialResult(
        device="cpu",
        batch_size=16,
        step_time_s=StepStats.from_samples(times),
        step_times_s=times,
        samples_per_s=1600.0,
        **fields,  # type: ignore[arg-type]
    )
    diverged = TrialResult(
        device="cpu",
        batch_size=32,
        status="diverged",
        error="the loss became nan at step 3 of the measured protocol",
        diverged_at_step=3,
        final_train_loss=math.nan,
    )
    return RunResult(
        run_id="r",
        created="now",
        workload={"name": "w"},
        settings={},
        environment={},
        trials=[ok, diverged],
    )


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324], ids=str)
def test_json_export_is_valid_whatever_a_trial_holds(value: float, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = _run(final_train_loss=value, power_w_mean=value, energy_j=value)
    text = export.to_json(run)
    data = json.loads(text)  # valid JSON: no NaN, no Infinity tokens
    assert not re.search(r"[:\[,]\s*-?(NaN|Infinity)\b", text)  # no bare non-JSON tokens
    trial = data["trials"][0]
    if math.isfinite(value):
        assert trial["final_train_loss"] == value
    else:
        assert trial["final_train_loss"] is None
        assert any("trials[0].final_train_loss" in n for n in data["notes"])
    assert data["trials"][1]["status"] == "diverged" and data["trials"][1]["diverged_at_step"] == 3
    # the file writer and the CSV agree
    path = tmp_path / "r.json"
    export.write_exports(run, json_path=str(path), csv_path=str(tmp_path / "r.csv"))
    assert json.loads(path.read_text()) == data


def test_json_safe_names_every_replacement() -> None:
    found: list[str] = []
    out = json_safe({"a": [1.0, math.nan, {"b": math.inf}], "c": "nan"}, "", found)
    assert out == {"a": [1.0, None, {"b": None}], "c": "nan"}
    assert found == ["a[1] (nan)", "a[2].b (inf)"]


def test_a_diverged_size_is_never_recommended() -> None:
    from batchscope.analyse.explain import analyse_run

    d = analyse_run(_run()).devices[0]
    assert d.failed == {32: "diverged"}
    rec = d.recommendation
    assert rec.best_throughput is not None and rec.best_throughput.batch_size == 16
    assert rec.recommended is None or rec.recommended.batch_size == 16
    assert any("diverged" in c and "the loss became nan" in c for c in d.causes)
