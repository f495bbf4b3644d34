"""Lightning: sweep batch sizes over the user's own ``LightningModule``.

From the command line::

    batchscope sweep --lightning examples/lightning_digits.py:make -b 16..256 --steps 30
    batchscope maxbs --lightning examples/lightning_digits.py:make --memory-limit 1GiB

``make(batch_size)`` is a top-level function that returns, built for that batch size,

* a ``LightningModule`` and a ``LightningDataModule``: ``(module, datamodule)``;
* or the module and its data loaders: ``(module, train_loader)`` or
  ``(module, train_loader, val_loader)``;
* or a module alone that defines ``train_dataloader()`` (and ``val_dataloader()``).

Each trial calls it in its own child process (after seeding) and runs a ``Trainer``
(accelerator from the trial's device, ``devices=1``, no logger, no checkpoints, no
progress bar, no model summary, ``precision`` from ``--precision``: ``bf16-mixed``,
``16-mixed``) with a callback that times every training step by the rule every
trainer shares (:class:`~batchscope.integrations.callback_clock.CallbackClock`:
device synchronised before the clock is read, data wait apart, the first
``warmup`` full-size steps left out, only full batches counted). The protocol:

* ``--epochs N``: ``max_epochs=N``, with the module's own validation after each
  epoch; the epoch records keep what the module logged (``val_loss`` ...);
* ``--steps N``: training stops (``trainer.should_stop``) after ``warmup + N``
  full-size steps, passing over the data as often as needed, no validation;
* neither: adaptive, the engine's rule — stop once the 95 % interval of the median
  step is within ``--max-error``, or after ``--max-time``, never before ``--min-steps``.

``maxbs`` runs ``--steps`` training steps and then one validation batch
(``limit_val_batches``) in the same fit, so the attempt's peak covers validation too.

Lightning is imported lazily, as ``lightning.pytorch`` when the ``lightning``
package is present, else as ``pytorch_lightning``; importing this module imports
neither, nor torch.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchscope.errors import BatchscopeError, UsageError, WorkloadError
from batchscope.integrations import importable_entry
from batchscope.integrations.callback_clock import (
    CallbackClock,
    Progress,
    measured_protocol,
    new_result,
)

if TYPE_CHECKING:
    from batchscope.core.plan import TrialSpec
    from batchscope.core.results import EpochRecord, RunResult, TrialResult

INSTALL_MESSAGE = "Lightning is not installed: pip install 'batchscope[lightning]'"

#: the batch size the probe builds its one module with
PROBE_BATCH_SIZE = 2

#: batchscope precision -> Lightning Trainer precision
PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}

#: seconds between "step" progress events (as the engine's)
NOTIFY_INTERVAL_S = 0.1

_RETURNS = (
    "return (module, datamodule), (module, train_loader), (module, train_loader, "
    "val_loader), or a LightningModule that defines train_dataloader()"
)


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def import_lightning() -> Any:
    """``lightning.pytorch`` if installed, else ``pytorch_lightning``; else one line."""
    for name in ("lightning.pytorch", "pytorch_lightning"):
        try:
            return __import__(name, fromlist=["Trainer"])
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise WorkloadError(f"importing {name} failed: {_one_line(exc)}") from exc
    raise WorkloadError(INSTALL_MESSAGE)


# --------------------------------------------------------------------------- the entry


@dataclass
class Built:
    """What ``make(batch_size)`` returned, resolved to a module and its loaders."""

    module: Any
    datamodule: Any = None
    train_loader: Any = None
    val_loader: Any = None

    def fit_kwargs(self) -> dict[str, Any]:
        """The data arguments of ``Trainer.fit`` (the module's own loaders when none)."""
        if self.datamodule is not None:
            return {"datamodule": self.datamodule}
        kwargs: dict[str, Any] = {}
        if self.train_loader is not None:
            kwargs["train_dataloaders"] = self.train_loader
        if self.val_loader is not None:
            kwargs["val_dataloaders"] = self.val_loader
        return kwargs

    def loaders(self) -> tuple[Any, Any]:
        """(train loader, val loader or None), built the way ``Trainer.fit`` builds them."""
        if self.datamodule is not None:
            dm = self.datamodule
            dm.prepare_data()
            dm.setup("fit")
            val = _maybe(dm, "val_dataloader")
            return dm.train_dataloader(), val
        if self.train_loader is not None:
            return self.train_loader, self.val_loader
        return self.module.train_dataloader(), _maybe(self.module, "val_dataloader")


def _maybe(obj: Any, hook: str) -> Any:
    """A loader hook's result, or None when the object leaves the hook undefined."""
    pl = import_lightning()
    base = pl.LightningDataModule if isinstance(obj, pl.LightningDataModule) else pl.LightningModule
    if getattr(type(obj), hook, None) is getattr(base, hook, None):
        return None
    try:
        loader = getattr(obj, hook)()
    except NotImplementedError:  # Lightning's default raises
        return None
    if isinstance(loader, (list, tuple)):
        return loader[0] if loader else None
    return loader


def _entry_name(entry: str) -> str:
    target, _, func = entry.rpartition(":")
    short = Path(target).stem if target.endswith(".py") else target.rpartition(".")[2]
    return short if func in ("make", "make_module") else f"{short}:{func}"


def build(entry: str, batch_size: int) -> Built:
    """Call ``entry(batch_size)`` and check what it returned (one-line errors)."""
    from batchscope.hardware.oom import is_oom_error
    from batchscope.workloads.loader import resolve_callable

    pl = import_lightning()
    func = resolve_callable(entry, what="--lightning")
    try:
        inspect.signature(func).bind(batch_size)
    except TypeError:
        raise WorkloadError(
            f"--lightning {entry} must take the batch size: def make(batch_size): ... {_RETURNS}"
        ) from None
    except ValueError:
        pass  # a builtin without a signature: just call it
    try:
        made = func(batch_size)
    except BatchscopeError:
        raise
    except Exception as exc:
        if is_oom_error(exc):
            raise
        raise WorkloadError(f"--lightning {entry} raised {_one_line(exc)}") from exc
    parts = list(made) if isinstance(made, (tuple, list)) else [made]
    module = parts[0] if parts else None
    if not isinstance(module, pl.LightningModule):
        raise WorkloadError(
            f"--lightning {entry} returned {type(module).__name__} first, not a "
            f"LightningModule: {_RETURNS}"
        )
    rest = parts[1:]
    if len(rest) == 1 and isinstance(rest[0], pl.LightningDataModule):
        return Built(module, datamodule=rest[0])
    if len(rest) > 2 or any(isinstance(p, pl.LightningDataModule) for p in rest):
        raise WorkloadError(f"--lightning {entry} returned {len(parts)} values: {_RETURNS}")
    if not rest and getattr(type(module), "train_dataloader", None) is getattr(
        pl.LightningModule, "train_dataloader", None
    ):
        raise WorkloadError(f"--lightning {entry} returned a module without data: {_RETURNS}")
    return Built(
        module,
        train_loader=rest[0] if rest else None,
        val_loader=rest[1] if len(rest) > 1 else None,
    )


def _length(loader: Any) -> int:
    """Samples a loader serves (its dataset's length; 0 when it has none)."""
    dataset = getattr(loader, "dataset", None)
    try:
        return len(dataset) if dataset is not None else 0
    except TypeError:
        return 0


def _loader_batch_size(loader: Any) -> int | None:
    bs = getattr(loader, "batch_size", None)
    if bs is None:
        sampler = getattr(loader, "batch_sampler", None)
        bs = getattr(sampler, "batch_size", None)
    return int(bs) if isinstance(bs, int) else None


def _check_batch_size(loader: Any, entry: str, batch_size: int) -> None:
    bs = _loader_batch_size(loader)
    if bs is not None and bs != batch_size:
        raise UsageError(
            f"--lightning {entry}: make({batch_size}) returned a training loader with "
            f"batch_size={bs}: build it with the batch size it is given"
        )


def _drop_last(loader: Any) -> bool:
    return bool(getattr(loader, "drop_last", False))


# --------------------------------------------------------------------------- probe


def probe(entry: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the module and its data once (at a small batch size, on the CPU) and describe them.

    The keys are those of :func:`batchscope.run.isolation.describe_workload` plus
    ``framework``.
    """
    pl = import_lightning()
    from torch import nn

    probe_bs = int(((options or {}).get("extra") or {}).get("probe_batch_size", PROBE_BATCH_SIZE))
    built = build(entry, probe_bs)
    train, val = built.loaders()
    _check_batch_size(train, entry, probe_bs)
    model = built.module
    params = list(model.parameters())
    n_train, n_val = _length(train), _length(val) if val is not None else 0
    optimizer = "configure_optimizers()"
    notes = []
    if _drop_last(train):
        notes.append(
            f"the training loader drops the last partial batch: at batch size B an epoch "
            f"trains B × ⌊{n_train}/B⌋ of the {n_train} samples"
        )
    data = "LightningDataModule" if built.datamodule is not None else "data loaders"
    return {
        "name": _entry_name(entry),
        "spec": entry,
        "description": (
            f"LightningModule {type(model).__name__} ({data}); "
            f"{n_train} training / {n_val} validation samples"
        ),
        "notes": notes,
        "info": {
            "module": type(model).__name__,
            "datamodule": type(built.datamodule).__name__ if built.datamodule else None,
            "optimizer": optimizer,
            "lightning": pl.__name__,
            "lightning_version": str(pl.__version__),
            "probe_batch_size": probe_bs,
            "train_drop_last": _drop_last(train),
        },
        "n_train": n_train,
        "n_val": n_val,
        "parameters": sum(p.numel() for p in params),
        "parameter_bytes": sum(p.numel() * p.element_size() for p in params),
        "has_batchnorm": any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()
        ),
        "framework": "lightning",
    }


# --------------------------------------------------------------------------- one trial


def accelerator(device: Any) -> dict[str, Any]:
    """Trainer arguments for a torch device: ``accelerator`` and ``devices`` (one device)."""
    if device.type == "cuda":
        return {"accelerator": "cuda", "devices": [device.index or 0]}
    if device.type == "mps":
        return {"accelerator": "mps", "devices": 1}
    if device.type == "cpu":
        return {"accelerator": "cpu", "devices": 1}
    raise UsageError(f"--lightning cannot run on {device}: use cpu, cuda or mps")


class _Stopper:
    """When a steps or adaptive trial has measured enough (the engine's rule)."""

    def __init__(self, spec: TrialSpec) -> None:
        self.fixed = spec.steps
        self.floor = max(1, spec.min_steps)
        self.max_error = spec.max_error
        self.deadline = time.perf_counter() + spec.max_time_s
        self.next_check = self.floor
        self.precision: float | None = None
        self.stopped_by = "steps"

    def start(self, max_time_s: float) -> None:
        self.deadline = time.perf_counter() + max_time_s

    def done(self, times: Sequence[float]) -> bool:
        from batchscope.core.precision import median_precision
        from batchscope.engine.trial import MAX_ADAPTIVE_STEPS

        n = len(times)
        if self.fixed is not None:
            return n >= self.fixed
        if n < self.floor:
            return False
        if n >= self.next_check:
            self.precision = median_precision(list(times)).relative_half_width
            self.next_check = n + max(1, n // 10)
            if self.precision is not None and self.precision <= self.max_error:
                self.stopped_by = "max_error"
                return True
        if time.perf_counter() >= self.deadline:
            self.stopped_by = "time_limit"
            return True
        if n >= MAX_ADAPTIVE_STEPS:
            self.stopped_by = "max_steps"
            return True
        return False


class _TrialState:
    """What the callback collects during one fit."""

    def __init__(
        self,
        clock: CallbackClock,
        spec: TrialSpec,
        steps_per_epoch: int,
        notify: Progress,
    ) -> None:
        self.clock = clock
        self.spec = spec
        self.notify = notify
        self.epochs_mode = spec.epochs is not None
        self.stopper = None if self.epochs_mode else _Stopper(spec)
        self.total_steps = spec.epochs * steps_per_epoch if spec.epochs else spec.steps
        self.epochs: list[EpochRecord] = []
        self.done = 0
        self.epoch_start = time.perf_counter()
        self.epoch_samples = 0
        self.loss_sum: Any = None
        self.last_loss: Any = None
        self.last_notify = time.perf_counter()


def _scalar(value: Any) -> float | None:
    """A logged value or loss tensor as a float (None when it is not one number)."""
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def _loss_of(outputs: Any) -> Any:
    if isinstance(outputs, dict):
        return outputs.get("loss")
    return outputs


def _callback(pl: Any, state: _TrialState) -> Any:
    """The Lightning ``Callback`` that feeds the clock, the stop rule and the epoch records."""
    from batchscope.core.results import EpochRecord

    extract_batch_size = importlib.import_module(f"{pl.__name__}.utilities.data").extract_batch_size

    class BatchscopeCallback(pl.Callback):  # type: ignore[misc,unused-ignore]
        def on_train_start(self, trainer: Any, module: Any) -> None:
            if state.stopper is not None:  # the time budget counts from the first step
                state.stopper.start(state.spec.max_time_s)

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            state.clock.resume()
            state.epoch_start = time.perf_counter()
            state.epoch_samples = 0
            state.loss_sum = None

        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, idx: int) -> None:
            state.clock.batch_begin()

        def on_train_batch_end(
            self, trainer: Any, module: Any, outputs: Any, batch: Any, idx: int
        ) -> None:
            n = int(extract_batch_size(batch))
            state.clock.batch_end(n)  # syncs the device, reads the clock
            loss = _loss_of(outputs)
            if loss is not None and hasattr(loss, "detach"):
                weighted = loss.detach() * n  # stays on the device: no sync here
                state.loss_sum = weighted if state.loss_sum is None else state.loss_sum + weighted
                state.last_loss = loss.detach()
            state.epoch_samples += n
            state.done += 1
            if state.stopper is not None and state.stopper.done(state.clock.step_times):
                trainer.should_stop = True
            now = time.perf_counter()
            if now - state.last_notify > NOTIFY_INTERVAL_S:
                payload: dict[str, Any] = {"done": state.done, "total": state.total_steps}
                if state.stopper is not None and state.stopper.fixed is None:
                    payload["precision"] = state.stopper.precision
                    payload["max_error"] = state.spec.max_error
                state.notify("step", payload)
                state.last_notify = now
                state.clock.resume()  # the report is ours, not the next step's

        def on_validation_end(self, trainer: Any, module: Any) -> None:
            state.clock.resume()  # a validation inside the epoch is no training step's

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            if not state.epochs_mode:
                return
            state.clock.sync()
            elapsed = time.perf_counter() - state.epoch_start
            samples = state.epoch_samples
            total = _scalar(state.loss_sum) if state.loss_sum is not None else None
            train_loss = total / samples if total is not None and samples else None
            metrics: dict[str, float] = {}
            val_loss = None
            for key, value in dict(trainer.callback_metrics).items():
                number = _scalar(value)
                if number is None:
                    continue
                if key == "val_loss":
                    val_loss = number
                elif key.startswith("val_"):
                    metrics[key[len("val_") :]] = number
                else:
                    metrics[key] = number
            state.epochs.append(
                EpochRecord(
                    epoch=len(state.epochs) + 1,
                    frozen=False,
                    time_s=elapsed,
                    samples=samples,
                    train_loss=train_loss,
                    val_loss=val_loss,
                    metrics=metrics,
                )
            )
            state.notify(
                "epoch",
                {
                    "epoch": len(state.epochs),
                    "total": state.spec.epochs,
                    "done": state.done,
                    "total_steps": state.total_steps,
                },
            )

    return BatchscopeCallback()


@contextlib.contextmanager
def _quiet(pl: Any) -> Iterator[None]:
    """Lightning's info lines ("GPU available ...") and its advice warnings (few loader
    workers, the number of batches) off for the trial: the trial records what matters."""
    logger = logging.getLogger(pl.__name__)
    fabric = logging.getLogger(
        "lightning.fabric" if pl.__name__.startswith("lightning.") else "lightning_fabric"
    )
    saved = logger.level, fabric.level
    logger.setLevel(logging.WARNING)
    fabric.setLevel(logging.WARNING)
    advice = importlib.import_module(f"{pl.__name__}.utilities.warnings").PossibleUserWarning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", advice)
            # Lightning 2.6's own use of a torch pytree class torch has deprecated
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*deprecated")
            yield
    finally:
        logger.setLevel(saved[0])
        fabric.setLevel(saved[1])


def trainer_kwargs(spec: TrialSpec, device: Any, root: str) -> dict[str, Any]:
    """The ``Trainer`` of one trial (the callback is added by :func:`run_trial`)."""
    kwargs: dict[str, Any] = {
        **accelerator(device),
        "precision": PRECISIONS[spec.precision],
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "default_root_dir": root,
    }
    if spec.epochs is not None:
        kwargs.update(max_epochs=spec.epochs)
    else:
        # steps or adaptive: the callback stops training; validation only for a
        # search attempt (validation_steps), then once, at the stop
        kwargs.update(
            max_epochs=-1,
            max_steps=-1,
            check_val_every_n_epoch=None,
            val_check_interval=10**12,
            limit_val_batches=spec.validation_steps,
        )
    return kwargs


def run_trial(spec: TrialSpec, progress: Progress | None = None) -> TrialResult:
    """One trial: ``make(spec.batch_size)`` fitted by a ``Trainer`` on ``spec.device``, timed."""
    from batchscope.engine import variants
    from batchscope.engine.instrument import synchronizer
    from batchscope.engine.trial import check_device

    notify: Progress = progress or (lambda event, payload: None)
    setup_start = time.perf_counter()
    pl = import_lightning()
    if spec.precision not in PRECISIONS:
        raise UsageError(
            f"--lightning cannot run precision {spec.precision!r}: use fp32, bf16 or fp16"
        )
    result = new_result(spec)  # threads and seed, before anything is built
    device = check_device(spec.device)
    reason = variants.unsupported_reason(device, spec.precision)
    if reason is not None:
        result.status, result.error = "unsupported", reason
        return result
    notify("setup", {"device": spec.device, "batch_size": spec.batch_size})
    built = build(spec.workload, spec.batch_size)
    train, val = built.loaders()
    _check_batch_size(train, spec.workload, spec.batch_size)
    n_train, b = _length(train), spec.batch_size
    drop_last = _drop_last(train)
    steps_per_epoch = len(train) if hasattr(train, "__len__") else 0
    if steps_per_epoch == 0 or (spec.epochs is None and n_train and n_train < b):
        raise UsageError(
            f"batch size {b} is larger than the {n_train} training samples, so no step of "
            "that size can be measured: use a smaller batch size"
        )
    result.drop_last = drop_last
    result.steps_per_epoch = steps_per_epoch
    result.samples_per_epoch = (n_train // b) * b if drop_last else n_train
    if spec.validation_steps and (val is None or _length(val) < b):
        result.notes.append(
            "the module has no validation set of a full batch: the attempt's peak covers "
            "training only"
            if val is None
            else f"the validation set holds {_length(val)} samples, fewer than the batch "
            f"size {b}: its validation batch is smaller"
        )
    clock = CallbackClock(b, spec.warmup, synchronizer(device))
    state = _TrialState(clock, spec, steps_per_epoch, notify)
    with tempfile.TemporaryDirectory(prefix="batchscope-lightning-") as root, _quiet(pl):
        trainer = pl.Trainer(**trainer_kwargs(spec, device, root), callbacks=[_callback(pl, state)])
        result.setup_time_s = time.perf_counter() - setup_start
        with measured_protocol(spec, result, device, notify):
            trainer.fit(built.module, **built.fit_kwargs())
    clock.summarise(result)
    result.warmup_steps = spec.warmup
    if spec.precision != "fp32":
        result.notes.append(f"Lightning Trainer(precision={PRECISIONS[spec.precision]!r})")
    if state.epochs_mode:
        result.epochs = state.epochs
        result.epoch_time_s = [e.time_s for e in state.epochs]
        result.stopped_by = "epochs"
        if state.epochs:
            result.final_train_loss = state.epochs[-1].train_loss
        if spec.target:
            from batchscope.core.target import apply_target

            apply_target(result, spec.target)
    else:
        assert state.stopper is not None
        result.stopped_by = state.stopper.stopped_by
        result.final_train_loss = _scalar(state.last_loss) if state.last_loss is not None else None
    if getattr(trainer, "interrupted", False):
        raise BatchscopeError("the Lightning fit was interrupted")
    notify("done", {"status": result.status})
    return result


# --------------------------------------------------------------------------- Python API


def sweep_module(
    make: str | Callable[[int], Any],
    batch_sizes: Sequence[int] | str,
    *,
    devices: Sequence[str] | str = "cpu",
    **protocol: Any,
) -> RunResult:
    """Sweep ``batch_sizes`` over what ``make(batch_size)`` returns (see the module docstring).

    ``make`` is a top-level function or its ``module:function`` / ``file.py:function``
    name; ``protocol`` takes :func:`batchscope.sweep`'s other keywords (``steps``,
    ``epochs``, ``warmup``, ``threads``, ``seed``, ``repeats``, ``store`` ...).
    """
    from batchscope.run.sweep import sweep

    if protocol.pop("framework", "lightning") != "lightning":
        raise UsageError("sweep_module sweeps Lightning modules: leave out framework=")
    sizes: list[int] | str = batch_sizes if isinstance(batch_sizes, str) else list(batch_sizes)
    device_arg: list[str] | str = devices if isinstance(devices, str) else list(devices)
    return sweep(
        importable_entry(make, "make"),
        sizes,
        devices=device_arg,
        framework="lightning",
        **protocol,
    )
