"""The Python API fits a PyTorch user's habits: a short repr, the verdicts as attributes,
``to_pandas()``, a notebook view — computed by the same code as the CLI's output."""

from __future__ import annotations

import numpy as np
import pytest

from analyse.simulate import simulated_trials
from batchscope.core.results import RunResult


def _run() -> RunResult:
    rng = np.random.default_rng(0)
    trials = simulated_trials(rng, [16, 32, 64], [1.3e-3, 1.0e-3, 1.0e-3], (20,) * 3, noise=0.05)
    return RunResult(
        run_id="20260101-000000-abcd",
        created="now",
        workload={"name": "toy"},
        settings={},
        environment={},
        trials=trials,
    )


def test_repr_is_short_and_says_the_verdict() -> None:
    text = repr(_run())
    assert text.startswith("<RunResult 20260101-000000-abcd toy: 3 trial(s) on cpu")
    assert "batch sizes 16, 32, 64" in text and "cpu: use b=32" in text
    assert "\n" not in text and len(text) < 200


def test_recommendation_and_analysis_are_the_clis() -> None:
    from batchscope.analyse.explain import analyse_run

    run = _run()
    assert run.recommendation["cpu"]["batch_size"] == 32
    assert run.analysis.verdicts() == analyse_run(run).verdicts()


def test_to_pandas_has_one_row_per_trial_with_the_csv_columns() -> None:
    pd = pytest.importorskip("pandas")
    from batchscope.report.export import CSV_FIELDS

    frame = _run().to_pandas()
    assert isinstance(frame, pd.DataFrame) and len(frame) == 3
    assert list(frame.columns[: len(CSV_FIELDS)]) == list(CSV_FIELDS)
    assert frame["batch_size"].tolist() == [16, 32, 64]


def test_a_notebook_shows_the_verdict_and_the_table() -> None:
    html = _run()._repr_html_()
    assert "<table>" in html and "use b=32" in html
    assert html.count("<tr>") == 4  # the header and three batch sizes


def test_sweep_defaults_to_the_fastest_device_like_the_cli() -> None:
    import inspect

    from batchscope.core.plan import parse_devices
    from batchscope.run.sweep import sweep

    assert inspect.signature(sweep).parameters["devices"].default == "best"
    assert parse_devices("best", ["cpu"]) == ["cpu"]
    assert parse_devices("best", ["cpu", "cuda:0", "cuda:1"]) == ["cuda:0"]
