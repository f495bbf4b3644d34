"""The CSV carries what a spreadsheet user compares: accuracy, energy, time-to-target."""

from __future__ import annotations

import csv
import io

from batchscope.core.results import EpochRecord, RunResult, StepStats, TrialResult
from batchscope.report.export import CSV_FIELDS, to_csv


def _epoch(n: int, acc: float, val_loss: float) -> EpochRecord:
    return EpochRecord(
        epoch=n,
        frozen=False,
        time_s=2.0,
        samples=100,
        train_loss=0.5,
        val_loss=val_loss,
        metrics={"accuracy": acc},
    )


def test_csv_has_final_metrics_energy_and_time_to_target() -> None:
    reached = TrialResult(
        device="cpu",
        batch_size=16,
        step_time_s=StepStats.from_samples([0.1, 0.2]),
        epochs=[_epoch(1, 0.90, 0.4), _epoch(2, 0.96, 0.3)],
        energy_j=12.5,
        target={
            "metric": "accuracy",
            "value": 0.95,
            "lower_is_better": False,
            "reached": True,
            "epoch": 2,
            "time_s": 4.0,
            "samples": 200,
            "reported": True,
            "best": 0.96,
        },
    )
    missed = TrialResult(
        device="cpu",
        batch_size=64,
        epochs=[_epoch(1, 0.80, 0.6)],
        target={
            "metric": "accuracy",
            "value": 0.95,
            "lower_is_better": False,
            "reached": False,
            "epoch": None,
            "time_s": None,
            "samples": None,
            "reported": True,
            "best": 0.8,
        },
    )
    run = RunResult(
        run_id="r",
        created="now",
        workload={"name": "w"},
        settings={"epochs": 2},
        environment={},
        trials=[reached, missed],
    )
    reader = csv.DictReader(io.StringIO(to_csv(run)))
    assert tuple(reader.fieldnames or ()) == (*CSV_FIELDS, "final_accuracy")
    first, second = list(reader)
    assert first["final_accuracy"] == "0.96" and first["final_val_loss"] == "0.3"
    assert first["target"] == "accuracy=0.95" and first["target_reached"] == "True"
    assert first["time_to_target_s"] == "4.0" and first["epochs_to_target"] == "2"
    assert first["energy_j"] == "12.5"
    assert second["target_reached"] == "False" and second["time_to_target_s"] == ""
    assert second["final_accuracy"] == "0.8"
