"""Keras 3 on the PyTorch backend (batchscope.integrations.keras): trials, sweeps, bad entries.

Importing Keras costs a few seconds per process, so the sweep through child
processes runs once, on the shipped example shrunk to a few hundred samples.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from batchscope.core.plan import TrialSpec  # noqa: E402
from batchscope.errors import UsageError, WorkloadError  # noqa: E402
from batchscope.integrations import keras as kx  # noqa: E402

#: Keras' own epoch-log conversion on NumPy 2 (not batchscope's code)
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "keras_linear.py"

SMALL_MODEL = """\
import numpy as np
import keras

rng = np.random.default_rng(0)
x_train = rng.standard_normal((200, 6)).astype("float32")
y_train = (x_train.sum(axis=1, keepdims=True) > 0).astype("float32")
x_val = rng.standard_normal((40, 6)).astype("float32")
y_val = (x_val.sum(axis=1, keepdims=True) > 0).astype("float32")


def make_model():
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse", metrics=["mae"])
    return model


def sized_model(batch_size):
    assert batch_size is None or batch_size > 0
    return make_model()


def not_compiled():
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(1)])


def not_a_model():
    return 42


def boom():
    raise RuntimeError("kaboom from make_model\\nsecond line")
"""

LOAD_DATA = """\
import numpy as np
import keras


def load_data():
    x = np.ones((30, 3), dtype="float32")
    return x, x[:, :1]


def make_model():
    model = keras.Sequential([keras.layers.Dense(1)])  # no input shape: built on use
    model.compile(optimizer="sgd", loss="mse")
    return model
"""

NO_DATA = """\
import keras


def make_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model
"""


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small_keras.py"
    path.write_text(SMALL_MODEL, encoding="utf-8")
    return path


def _spec(entry: str, batch_size: int, *, epochs: int = 2, warmup: int = 1) -> TrialSpec:
    return TrialSpec(
        workload=entry,
        workload_options={},
        device="cpu",
        batch_size=batch_size,
        epochs=epochs,
        warmup=warmup,
        framework="keras",
        sample_interval_s=0,
    )


@pytest.mark.usefixtures("restore_torch_threads")
@pytest.mark.parametrize("batch_size", [16, 64])
def test_run_trial_in_process(small: Path, batch_size: int) -> None:
    events: list[str] = []
    spec = _spec(f"{small}:make_model", batch_size)
    result = kx.run_trial(spec, progress=lambda event, payload: events.append(event))
    n, epochs = 200, 2
    full = n // batch_size
    assert result.status == "ok"
    assert result.samples_per_epoch == n
    assert result.steps_per_epoch == math.ceil(n / batch_size)
    assert result.measured_steps == epochs * full - spec.warmup
    assert result.step_time_s is not None and result.step_time_s.n == result.measured_steps
    assert result.samples_per_s is not None and result.samples_per_s > 0
    assert result.samples_trained == epochs * n
    assert result.total_time_s is not None and result.total_time_s > 0
    assert sum(result.epoch_time_s) <= result.total_time_s
    assert [e.epoch for e in result.epochs] == [1, 2]
    for record in result.epochs:
        assert record.samples == n
        assert record.train_loss is not None and math.isfinite(record.train_loss)
        assert record.val_loss is not None and math.isfinite(record.val_loss)
        assert set(record.metrics) == {"mae", "train_mae"}
    assert result.final_train_loss == result.epochs[-1].train_loss
    assert any("partial batch" in note for note in result.notes)  # 200 % 16, 200 % 64 != 0
    assert "epoch" in events and events[-1] == "done"


def test_trials_start_from_the_same_weights(small: Path) -> None:
    """Seeded before make_model: one batch size run twice trains the same losses."""
    first = kx.run_trial(_spec(f"{small}:make_model", 50, epochs=1))
    again = kx.run_trial(_spec(f"{small}:make_model", 50, epochs=1))
    assert first.final_train_loss == pytest.approx(again.final_train_loss, rel=1e-6)


def test_batch_samples_counts_the_partial_last_batch() -> None:
    assert [kx.batch_samples(i, i, 100, 32) for i in range(4)] == [32, 32, 32, 4]
    assert kx.batch_samples(0, 1, 100, 64) == 100
    assert kx.epoch_metrics({"mae": 1.0, "val_mae": 2.0}) == {"mae": 2.0, "train_mae": 1.0}


def test_sweep_two_batch_sizes_in_child_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    import batchscope

    monkeypatch.setenv("KERAS_LINEAR_N", "512")  # the children inherit it
    run = batchscope.sweep(
        f"{EXAMPLE}:make_model", [32, 128], framework="keras", epochs=1, warmup=1
    )
    assert run.workload["framework"] == "keras"
    assert run.workload["n_train"] == 512 and run.workload["n_val"] == 102
    assert run.workload["parameters"] == 11  # Dense(10 -> 1)
    assert run.workload["parameter_bytes"] == 44
    assert run.workload["has_batchnorm"] is False
    assert [t.batch_size for t in run.trials] == [32, 128]
    assert all(t.status == "ok" for t in run.trials), [t.error for t in run.trials]
    data = json.loads(json.dumps(run.to_dict()))
    for trial, bs in zip(data["trials"], [32, 128], strict=True):
        assert trial["samples_per_epoch"] == 512
        assert trial["step_time_s"]["median"] > 0
        assert trial["measured_steps"] == 512 // bs - 1
        assert trial["epochs"][0]["val_loss"] is not None


@pytest.mark.parametrize(
    ("func", "message"),
    [
        ("not_compiled", "not compiled"),
        ("not_a_model", "returned int, not a keras.Model"),
        ("missing", "has no function 'missing'"),
        ("boom", "raised RuntimeError: kaboom from make_model"),
    ],
)
def test_bad_make_model_is_one_line(small: Path, func: str, message: str) -> None:
    with pytest.raises(WorkloadError) as info:
        kx.probe(f"{small}:{func}", {})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_module_without_arrays_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "no_data.py"
    path.write_text(NO_DATA, encoding="utf-8")
    with pytest.raises(WorkloadError, match="x_train and y_train") as info:
        kx.probe(f"{path}:make_model", {})
    assert "\n" not in str(info.value)
    with pytest.raises(WorkloadError, match="use 'module:function'"):
        kx.probe("make_model", {})
    with pytest.raises(WorkloadError, match="does not exist"):
        kx.probe(f"{tmp_path / 'absent.py'}:make_model", {})


def test_other_backend_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    with pytest.raises(WorkloadError, match="set KERAS_BACKEND=torch"):
        kx.import_keras()


def test_probe_describes_load_data_and_sized_models(small: Path, tmp_path: Path) -> None:
    path = tmp_path / "loaded.py"
    path.write_text(LOAD_DATA, encoding="utf-8")
    described = kx.probe(f"{path}:make_model", {})
    assert described["n_train"] == 30 and described["n_val"] == 0
    assert described["parameters"] == 4  # built from x_train's shape: 3 weights + bias
    assert described["info"]["data"] == "load_data()"
    sized = kx.probe(f"{small}:sized_model", {})
    assert sized["name"] == "small_keras:sized_model"
    assert sized["parameters"] == 6 * 8 + 8 + 8 + 1


def test_example_make_model_runs() -> None:
    from batchscope.integrations.keras import load_entry

    entry = load_entry(f"{EXAMPLE}:make_model")
    model = entry.build_model(keras, None)
    assert entry.n_train == len(entry.x_train) and entry.n_val == len(entry.x_val)
    assert [type(layer).__name__ for layer in model.layers] == ["Dense"]
    assert type(model.optimizer).__name__ == "SGD"
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    history = model.fit(entry.x_train[:256], entry.y_train[:256], batch_size=64, verbose=0)
    assert math.isfinite(history.history["loss"][0])


def test_sweep_model_entry_names() -> None:
    from batchscope.integrations.keras import entry_for

    def local_model() -> None:
        return None

    with pytest.raises(UsageError, match="module level"):
        entry_for(local_model)
    # a function of a package module is named by module; batchscope's own will do
    assert entry_for(kx.probe) == "batchscope.integrations.keras:probe"
