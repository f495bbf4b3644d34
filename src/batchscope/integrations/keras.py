"""Keras 3 on the PyTorch backend: time ``model.fit`` of the user's own compiled model.

``batchscope sweep --keras module:make_model -b 32..1024 --epochs 3`` runs, in each
trial's own process, ``model.fit(x_train, y_train, batch_size=B, epochs=E)`` with a
callback that times every training step the way batchscope's engine does (device
synchronised, warm-up steps left out, only full-size batches in the statistics).
No TensorFlow is needed: Keras runs on ``KERAS_BACKEND=torch`` (set here when unset).
Install with ``pip install 'batchscope[keras]'``.

The entry's module
------------------

``module:make_model`` (or ``path/to/file.py:make_model``) names a module that holds

* the data, either as module-level arrays ``x_train``, ``y_train`` and optionally
  ``x_val``, ``y_val``, or as a function ``load_data()`` returning
  ``(x_train, y_train)`` or ``(x_train, y_train, x_val, y_val)``. Arrays are what
  ``model.fit`` takes (NumPy arrays, or lists/dicts of them for several inputs);
  ``load_data()`` wins over module arrays when both exist;
* ``make_model()``, returning a *compiled* ``keras.Model`` (``model.compile(...)``
  called, ``steps_per_execution`` left at 1 so each step can be timed). If it
  declares a ``batch_size`` parameter, each trial passes its batch size; the probe
  that describes the model once before any trial passes ``batch_size=None`` unless
  the parameter has a default.

Every trial rebuilds the model after seeding (``keras.utils.set_random_seed``), so
each batch size starts from the same weights. Keras trains the last partial batch
of an epoch: it counts in ``samples_per_epoch`` (the whole training set) but, being
no step of the trial's size, not in the step-time statistics.

Epoch records: ``train_loss`` is Keras' epoch loss, ``val_loss`` its ``val_loss``;
``metrics`` holds the validation metrics under their plain names (``val_mae`` →
``mae``, as the engine's metrics are validation metrics) followed by the training
metrics prefixed ``train_`` (``mae`` → ``train_mae``).
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchscope.errors import UsageError, WorkloadError
from batchscope.integrations import importable_entry

if TYPE_CHECKING:
    from batchscope.core.plan import TrialSpec
    from batchscope.core.results import RunResult, TrialResult

Progress = Callable[[str, dict[str, Any]], None]

BACKEND_MESSAGE = "batchscope measures Keras on the PyTorch backend: set KERAS_BACKEND=torch"
INSTALL_MESSAGE = "keras is not installed: pip install 'batchscope[keras]'"

#: seconds between "step" progress events (as the engine's)
NOTIFY_INTERVAL_S = 0.1


def _one_line(text: str) -> str:
    """The first non-empty line of ``text``, shortened to fit a message."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[0] if lines else ""
    return line if len(line) <= 300 else line[:297] + "..."


def import_keras() -> Any:
    """Import Keras on the PyTorch backend, or raise a one-line :class:`WorkloadError`."""
    wanted = os.environ.get("KERAS_BACKEND")
    if wanted is not None and wanted.strip().lower() != "torch":
        raise WorkloadError(f"{BACKEND_MESSAGE} (it is {wanted!r})")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ModuleNotFoundError as exc:
        if exc.name == "keras":
            raise WorkloadError(INSTALL_MESSAGE) from None
        raise WorkloadError(f"importing keras failed: {_one_line(str(exc))}") from exc
    except Exception as exc:
        raise WorkloadError(
            f"importing keras failed: {type(exc).__name__}: {_one_line(str(exc))}"
        ) from exc
    backend = keras.backend.backend()
    if backend != "torch":
        raise WorkloadError(f"{BACKEND_MESSAGE} (keras was already imported on {backend!r})")
    return keras


# ---------------------------------------------------------------- the user's module


@dataclass
class KerasEntry:
    """What ``module:make_model`` resolved to: the factory and the data."""

    spec: str
    name: str
    make_model: Callable[..., Any]
    x_train: Any
    y_train: Any
    x_val: Any = None
    y_val: Any = None
    data_source: str = "module arrays"

    @property
    def n_train(self) -> int:
        return _length(self.x_train)

    @property
    def n_val(self) -> int:
        return _length(self.x_val) if self.x_val is not None else 0

    @property
    def validation_data(self) -> tuple[Any, Any] | None:
        return None if self.x_val is None else (self.x_val, self.y_val)

    def build_model(self, keras: Any, batch_size: int | None) -> Any:
        """Call ``make_model`` and check it returned a compiled ``keras.Model``."""
        kwargs: dict[str, Any] = {}
        try:
            params = inspect.signature(self.make_model).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        param = params.get("batch_size")
        if param is not None and (batch_size is not None or param.default is param.empty):
            kwargs["batch_size"] = batch_size
        try:
            model = self.make_model(**kwargs)
        except WorkloadError:
            raise
        except Exception as exc:
            raise WorkloadError(
                f"--keras {self.spec!r} raised {type(exc).__name__}: {_one_line(str(exc))}"
            ) from exc
        if not isinstance(model, keras.Model):
            raise WorkloadError(
                f"--keras {self.spec!r} returned {type(model).__name__}, not a keras.Model"
            )
        if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
            raise WorkloadError(
                f"--keras {self.spec!r} returned a model that is not compiled: call "
                "model.compile(optimizer=..., loss=...) in make_model"
            )
        steps = getattr(model, "steps_per_execution", 1)
        if steps != 1:
            raise WorkloadError(
                f"--keras {self.spec!r}: compile with steps_per_execution=1 (it is {steps}); "
                "batchscope times each training step"
            )
        return model


def _length(arrays: Any) -> int:
    """Samples in ``arrays``: an array, or a list/tuple/dict of them (the first one's)."""
    if isinstance(arrays, dict):
        if not arrays:
            raise TypeError("an empty dict")
        return _length(next(iter(arrays.values())))
    if isinstance(arrays, (list, tuple)):
        if not arrays:
            raise TypeError("an empty list")
        return _length(arrays[0])
    shape = getattr(arrays, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    raise TypeError(f"a {type(arrays).__name__} without a length")


def _import_entry_module(spec: str) -> tuple[Any, Callable[..., Any], str]:
    """(module, make_model, short name) for ``module:func`` / ``file.py:func``."""
    from batchscope.workloads.loader import resolve_callable

    func = resolve_callable(spec, what="--keras")  # imports, with one-line errors
    target, _, func_name = spec.rpartition(":")
    if target.endswith(".py") or "/" in target or "\\" in target:
        short = Path(target).stem
        module = sys.modules[f"batchscope_user_{short}"]  # where resolve_callable put it
    else:
        module = importlib.import_module(target)  # cached: not run twice
        short = target.rpartition(".")[2]
    name = short if func_name == "make_model" else f"{short}:{func_name}"
    return module, func, name


def load_entry(spec: str) -> KerasEntry:
    """Import the entry's module and find its data; one-line :class:`WorkloadError` if not."""
    spec = spec.strip()
    module, func, name = _import_entry_module(spec)
    target = spec.rpartition(":")[0]
    load_data = getattr(module, "load_data", None)
    if callable(load_data):
        try:
            data = load_data()
        except WorkloadError:
            raise
        except Exception as exc:
            raise WorkloadError(
                f"load_data() in {target!r} raised {type(exc).__name__}: {_one_line(str(exc))}"
            ) from exc
        if not isinstance(data, (tuple, list)) or len(data) not in (2, 4):
            raise WorkloadError(
                f"load_data() in {target!r} must return (x_train, y_train) or "
                f"(x_train, y_train, x_val, y_val), not {_describe(data)}"
            )
        x_val, y_val = (data[2], data[3]) if len(data) == 4 else (None, None)
        entry = KerasEntry(spec, name, func, data[0], data[1], x_val, y_val, "load_data()")
    else:
        x_train = getattr(module, "x_train", None)
        y_train = getattr(module, "y_train", None)
        if x_train is None or y_train is None:
            raise WorkloadError(
                f"{target!r} has no training data for --keras: define module-level arrays "
                "x_train and y_train (optionally x_val, y_val) or a function load_data()"
            )
        entry = KerasEntry(
            spec,
            name,
            func,
            x_train,
            y_train,
            getattr(module, "x_val", None),
            getattr(module, "y_val", None),
        )
    _check_data(entry, target)
    return entry


def _describe(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def _check_data(entry: KerasEntry, target: str) -> None:
    where = f"{target!r} ({entry.data_source})"
    if (entry.x_val is None) != (entry.y_val is None):
        raise WorkloadError(f"{where} gives only one of x_val and y_val: give both or neither")
    pairs = [("x_train", entry.x_train, "y_train", entry.y_train)]
    if entry.x_val is not None:
        pairs.append(("x_val", entry.x_val, "y_val", entry.y_val))
    for x_name, x, y_name, y in pairs:
        try:
            nx, ny = _length(x), _length(y)
        except TypeError as exc:
            raise WorkloadError(
                f"{where}: {x_name}/{y_name} must be arrays (NumPy, or lists/dicts of them): {exc}"
            ) from None
        if nx != ny:
            raise WorkloadError(f"{where}: {x_name} has {nx} samples but {y_name} has {ny}")
    if entry.n_train < 1:
        raise WorkloadError(f"{where}: x_train holds no samples")


# ---------------------------------------------------------------- devices and models


def keras_device(device: Any) -> str:
    """The name ``keras.device`` takes for a torch device (``cpu``, ``cuda:0``, ``mps``)."""
    if device.type in ("cuda", "xpu"):
        return f"{device.type}:{device.index or 0}"
    return str(device.type)


def _variable_device(model: Any) -> Any:
    """The torch device of the model's first weight, or None when it has none yet."""
    for weight in getattr(model, "weights", []):
        value = getattr(weight, "value", None)
        if value is not None and hasattr(value, "device"):
            return value.device
    return None


def _check_placement(model: Any, device: Any) -> None:
    placed = _variable_device(model)
    if placed is not None and placed.type != device.type:
        raise RuntimeError(
            f"Keras placed the model's weights on {placed}, not on the trial's device {device}"
        )


def _all_layers(model: Any) -> list[Any]:
    flatten = getattr(model, "_flatten_layers", None)
    if callable(flatten):
        try:
            return list(flatten(include_self=False, recursive=True))
        except TypeError:
            pass
    found: list[Any] = []
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop(0)
        found.append(layer)
        stack.extend(getattr(layer, "layers", []))
    return found


def _weight_bytes(weight: Any) -> int:
    value = getattr(weight, "value", None)
    if value is not None and hasattr(value, "element_size"):
        return int(value.numel()) * int(value.element_size())
    import numpy as np

    return int(math.prod(weight.shape)) * np.dtype(weight.dtype).itemsize


def _ensure_built(model: Any, x_train: Any, spec: str) -> None:
    """Build a model that was defined without an input shape by calling it on one sample."""
    if getattr(model, "built", False) and model.weights:
        return
    try:
        model(_head(x_train, 1))
    except Exception as exc:
        raise WorkloadError(
            f"--keras {spec!r}: the model cannot take x_train: {type(exc).__name__}: "
            f"{_one_line(str(exc))}"
        ) from exc


def _head(arrays: Any, n: int) -> Any:
    if isinstance(arrays, dict):
        return {k: _head(v, n) for k, v in arrays.items()}
    if isinstance(arrays, (list, tuple)):
        return type(arrays)(_head(a, n) for a in arrays)
    return arrays[:n]


def _summary(model: Any) -> str:
    layers = [type(layer).__name__ for layer in getattr(model, "layers", [])]
    shown = ", ".join(layers[:8]) + (f", … {len(layers) - 8} more" if len(layers) > 8 else "")
    optimizer = type(model.optimizer).__name__
    loss = getattr(model, "loss", None)
    loss_text = loss if isinstance(loss, str) else type(loss).__name__
    return f"Keras {type(model).__name__} {model.name!r} [{shown}], {optimizer}, loss {loss_text}"


# ---------------------------------------------------------------- probe


def probe(entry: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Import ``entry``, load its data and build its model once; describe them.

    Runs in the probe's child process before any trial, so a bad entry is one
    clear error before any time is spent training. The keys are those of
    :func:`batchscope.run.isolation.describe_workload` plus ``framework``.
    """
    keras = import_keras()
    loaded = load_entry(entry)
    with keras.device("cpu"):  # a description needs no accelerator
        keras.utils.set_random_seed(int((options or {}).get("seed") or 0))
        model = loaded.build_model(keras, None)
        _ensure_built(model, loaded.x_train, loaded.spec)
        layers = _all_layers(model)
        batchnorm = keras.layers.BatchNormalization
        loss = getattr(model, "loss", None)
        return {
            "name": loaded.name,
            "spec": entry,
            "description": _summary(model),
            "notes": [
                "Keras trains each epoch's last partial batch: it counts in samples per "
                "epoch, not in the step-time statistics"
            ],
            "info": {
                "backend": "torch",
                "keras_version": str(keras.__version__),
                "model": str(model.name),
                "optimizer": type(model.optimizer).__name__,
                "loss": loss if isinstance(loss, str) else type(loss).__name__,
                "layers": len(layers),
                "data": loaded.data_source,
            },
            "n_train": loaded.n_train,
            "n_val": loaded.n_val,
            "parameters": int(model.count_params()),
            "parameter_bytes": sum(_weight_bytes(w) for w in model.weights),
            "has_batchnorm": any(isinstance(layer, batchnorm) for layer in layers),
            "framework": "keras",
        }


# ---------------------------------------------------------------- one trial


def batch_samples(begin_step: int, end_step: int, n: int, batch_size: int) -> int:
    """Samples in Keras' steps ``begin_step..end_step`` of an epoch of ``n`` samples.

    Keras numbers the batches of each epoch from 0 and trains the last partial one.
    """
    return max(0, min(n, (end_step + 1) * batch_size) - begin_step * batch_size)


def _make_callback(
    keras: Any,
    clock: Any,
    result: TrialResult,
    *,
    n_train: int,
    batch_size: int,
    epochs: int,
    sync: Callable[[], None],
    notify: Progress,
) -> Any:
    """A ``keras.callbacks.Callback`` feeding ``clock`` and ``result.epochs``."""
    from batchscope.core.results import EpochRecord

    steps_per_epoch = math.ceil(n_train / batch_size)
    total_steps = epochs * steps_per_epoch

    class BatchscopeCallback(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.done = 0
            self.begin_step = 0
            self.epoch_start = 0.0
            self.epoch_samples_start = 0
            self.last_notify = time.perf_counter()

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            clock.resume()
            self.epoch_start = time.perf_counter()
            self.epoch_samples_start = clock.samples

        def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self.begin_step = batch
            clock.batch_begin()

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            clock.batch_end(batch_samples(self.begin_step, batch, n_train, batch_size))
            self.done += 1
            now = time.perf_counter()
            if now - self.last_notify > NOTIFY_INTERVAL_S:
                notify("step", {"done": self.done, "total": total_steps})
                self.last_notify = now
                clock.resume()  # the report is ours, not the next step's

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            sync()
            elapsed = time.perf_counter() - self.epoch_start
            logs = dict(logs or {})
            train_loss = _as_float(logs.pop("loss", None))
            val_loss = _as_float(logs.pop("val_loss", None))
            record = EpochRecord(
                epoch=epoch + 1,
                frozen=False,
                time_s=elapsed,
                samples=clock.samples - self.epoch_samples_start,
                train_loss=train_loss,
                val_loss=val_loss,
                metrics=epoch_metrics(logs),
            )
            result.epochs.append(record)
            result.epoch_time_s.append(elapsed)
            result.final_train_loss = train_loss
            notify(
                "epoch",
                {
                    "epoch": epoch + 1,
                    "total": epochs,
                    "done": self.done,
                    "total_steps": total_steps,
                },
            )

    return BatchscopeCallback()


def _as_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def epoch_metrics(logs: dict[str, Any]) -> dict[str, float]:
    """Keras' epoch logs (losses removed) as EpochRecord metrics: validation metrics under
    their plain names (``val_mae`` → ``mae``), then training ones as ``train_mae``."""
    metrics: dict[str, float] = {}
    for key, value in logs.items():
        number = _as_float(value)
        if key.startswith("val_") and number is not None:
            metrics[key[len("val_") :]] = number
    for key, value in logs.items():
        number = _as_float(value)
        if not key.startswith("val_") and number is not None:
            metrics[f"train_{key}"] = number
    return metrics


def run_trial(spec: TrialSpec, progress: Progress | None = None) -> TrialResult:
    """One trial: ``model.fit(x, y, batch_size=spec.batch_size, epochs=spec.epochs)``, timed.

    Set-up (importing, loading the data, building the model) is not timed; what
    ``measured_protocol`` covers is the whole ``fit``, validation included.
    """
    from batchscope.engine.instrument import synchronizer
    from batchscope.engine.trial import check_device
    from batchscope.integrations.callback_clock import CallbackClock, measured_protocol, new_result

    notify: Progress = progress or (lambda event, payload: None)
    setup_start = time.perf_counter()
    if spec.steps is not None:
        raise UsageError("--keras runs whole epochs: use --epochs N instead of --steps")
    epochs = 1 if spec.epochs is None else spec.epochs
    if epochs < 1:
        raise UsageError(f"--epochs {epochs} trains nothing: use --epochs 1 or more")
    keras = import_keras()
    result = new_result(spec)  # threads, seeds
    device = check_device(spec.device)
    notify("setup", {"device": spec.device, "batch_size": spec.batch_size})
    entry = load_entry(spec.workload)
    n_train, batch_size = entry.n_train, spec.batch_size
    sync = synchronizer(device)
    with keras.device(keras_device(device)):
        keras.utils.set_random_seed(spec.seed)  # the weights do not depend on data loading
        model = entry.build_model(keras, batch_size)
        _check_placement(model, device)
        clock = CallbackClock(batch_size, spec.warmup, sync)
        callback = _make_callback(
            keras,
            clock,
            result,
            n_train=n_train,
            batch_size=batch_size,
            epochs=epochs,
            sync=sync,
            notify=notify,
        )
        result.samples_per_epoch = n_train
        result.steps_per_epoch = math.ceil(n_train / batch_size)
        if n_train % batch_size:
            result.notes.append(
                f"Keras trains each epoch's last partial batch ({n_train % batch_size} of "
                f"{n_train} samples): it counts in samples_per_epoch, not in the step times"
            )
        result.setup_time_s = time.perf_counter() - setup_start
        with measured_protocol(spec, result, device, notify):
            model.fit(
                entry.x_train,
                entry.y_train,
                batch_size=batch_size,
                epochs=epochs,
                validation_data=entry.validation_data,
                shuffle=True,
                verbose=0,
                callbacks=[callback],
            )
        _check_placement(model, device)
    clock.summarise(result)
    notify("done", {"status": result.status})
    return result


# ---------------------------------------------------------------- Python API


def entry_for(make_model: Callable[..., Any]) -> str:
    """The ``module:function`` (or ``file.py:function``) a child process can import."""
    return importable_entry(make_model, "make_model")


def sweep_model(
    make_model: Callable[..., Any],
    batch_sizes: Sequence[int] | str,
    *,
    epochs: int = 1,
    devices: Sequence[str] | str = "cpu",
    **protocol: Any,
) -> RunResult:
    """Sweep a Keras ``make_model`` (a module-level function) over ``batch_sizes``.

    ``make_model``'s module provides the data (see this module's docstring). Each
    trial runs in its own child process, which imports the function by name.
    ``protocol`` takes :func:`batchscope.sweep`'s other keywords (``warmup``,
    ``threads``, ``seed``, ``repeats``, ``store``, ``on_event`` ...).
    """
    from batchscope.run.sweep import sweep

    if protocol.pop("framework", "keras") != "keras":
        raise UsageError("sweep_model sweeps Keras models: leave out framework=")
    sizes: list[int] | str = batch_sizes if isinstance(batch_sizes, str) else list(batch_sizes)
    device_arg: list[str] | str = devices if isinstance(devices, str) else list(devices)
    return sweep(
        entry_for(make_model),
        sizes,
        devices=device_arg,
        epochs=epochs,
        framework="keras",
        **protocol,
    )
