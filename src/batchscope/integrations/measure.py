"""``batchscope.measure``: time a training loop you wrote yourself, one batch size per block.

::

    for bs in (16, 64, 256):
        loader = DataLoader(train_ds, batch_size=bs, shuffle=True)
        with batchscope.measure(batch_size=bs, run="my-loop") as m:
            for x, y in m.batches(loader):      # optional: times the wait for data
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
                m.step(loss)                     # the end of one step
                if m.steps == 60:
                    break
        print(bs, m.result.samples_per_s)

Each block becomes one :class:`~batchscope.TrialResult`, measured the way the
engine measures its own trials (:class:`~batchscope.integrations.callback_clock.CallbackClock`):
a step runs from the end of the previous step to the end of its own, the device
synchronised before the clock is read; the first ``warmup`` full-size steps are
trained but not counted; a step with fewer samples than ``batch_size`` (the last
batch of an epoch) counts as trained samples but not as a step time. The block's
peak memory and hardware readings use the engine's helpers.

Every block with the same ``run`` adds its trial to one stored run, so
``batchscope show RUN`` and ``batchscope report RUN`` compare the batch sizes.
Without ``run``, all blocks of one process with the same ``workload`` label and
store share one new run (a script that loops over batch sizes gets one run).

An exception that escapes the block (an out-of-memory error, Ctrl-C, a bug) is
recorded as a trial with status ``oom``, ``interrupted`` or ``error`` and then
re-raised, so what was measured before it is never lost.

Set-up (building the model, the optimizer, the loader) belongs before the block:
everything inside it between two ``step()`` calls is part of a step's time. Wrap
evaluation inside the block in ``with m.paused():`` to leave it out.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from batchscope.core.results import EpochRecord, RunResult, TrialResult, now_iso
from batchscope.errors import StoreError, UsageError
from batchscope.run.store import Store

if TYPE_CHECKING:
    import torch
    from torch import nn

    from batchscope.hardware.monitor import Sampler
    from batchscope.integrations.callback_clock import CallbackClock

__all__ = ["Measurement", "measure"]

#: what the stored run's workload records as its spec and framework
SPEC = "measure"
FRAMEWORK = "torch-loop"
#: ``settings["source"]`` of runs this module creates (it only adds to those)
SOURCE = "batchscope.measure"

_DEVICE_RE = re.compile(r"^(cpu|mps|cuda(:\d+)?|xpu(:\d+)?)$")
#: run names are run ids: no spaces, no path separators (``batchscope report`` would
#: read ``a/b`` or ``x.json`` as a file)
_RUN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,99}$")

#: the per-process default runs: (store, workload label) -> run id
_PROCESS_RUNS: dict[tuple[str, str], str] = {}
#: runs of blocks with ``store=False``, kept here so ``Measurement.run()`` can show them
_MEMORY_RUNS: dict[str, RunResult] = {}


def _whole(value: Any, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise UsageError(f"{name} must be a whole number of at least {least}, got {value!r}")
    return int(value)


def _device_name(device: Any) -> str | None:
    """The device as typed, checked against the names batchscope knows (no torch needed)."""
    if device is None:
        return None
    text = str(device).strip().lower()
    if not _DEVICE_RE.match(text):
        raise UsageError(f"unknown device {str(device)!r}: use cpu, cuda, cuda:N, mps or xpu")
    return text


def _canonical(device: torch.device) -> str:
    """``cpu``, ``mps``, ``cuda:N``, ``xpu:N``: the names sweeps use in trial keys."""
    import torch

    if device.type in ("cuda", "xpu"):
        index = device.index
        if index is None:
            index = torch.cuda.current_device() if device.type == "cuda" else 0
        return f"{device.type}:{index}"
    return device.type


def _script_label() -> str:
    """The running script's file name, the default workload label."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return Path(path).name if path else "python"


def _loader_sizes(iterable: Any) -> tuple[int | None, int | None]:
    """(samples, steps) per epoch of a DataLoader-like iterable, where it can tell."""
    steps: int | None = None
    with contextlib.suppress(TypeError):
        steps = len(iterable)
    dataset = getattr(iterable, "dataset", None)
    loader_bs = getattr(iterable, "batch_size", None)
    try:
        n = len(dataset) if dataset is not None else None
    except TypeError:
        n = None
    if n is None or not isinstance(loader_bs, int) or loader_bs < 1:
        return None, steps
    if getattr(iterable, "drop_last", False):
        n -= n % loader_bs
    return n, steps


class Measurement:
    """One ``with batchscope.measure(...)`` block: one trial at one batch size.

    Call :meth:`step` at the end of every training step. After the block,
    :attr:`result` is the :class:`~batchscope.TrialResult`, :attr:`run_id` the
    run it was stored in and :meth:`run` the whole run.

    Args:
        batch_size: the loop's batch size (a whole number, at least 1).
        run: the stored run's id. Blocks with the same ``run`` go into one run;
            a run of that name is created if the store has none. Default: one
            new run per process, store and ``workload`` label.
        workload: the label reports show. Default: the running script's file
            name (or, adding to an existing run, that run's label).
        device: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``xpu``. Default: the
            device of the first loss tensor passed to ``step()``, else ``cpu``.
        warmup: full-size steps trained first but not counted.
        store: a :class:`~batchscope.Store`, a path to one, or ``False`` to keep the
            run in this process only (:meth:`Measurement.run` still returns it).
            Default: ``batchscope-results/batchscope.db`` under the current folder,
            the CLI's store, so ``batchscope show RUN`` and ``batchscope report RUN``
            find the run.
        sample_interval: seconds between hardware readings; 0 turns them off.
        repeat: the trial's round. Default: the next round of this device and batch
            size in the run, so running the same block again adds a round (the
            analysis combines rounds); a ``repeat`` given explicitly replaces a
            stored trial with the same device, batch size and repeat.
        seed: recorded with the trial (not applied: seed your own loop).
        samples_per_epoch: the training set's size, for the estimated epoch time.
            Default: taken from a DataLoader given to :meth:`Measurement.batches`.
        model: optional; its parameter count is recorded with a new run.
    """

    def __init__(
        self,
        batch_size: int,
        *,
        run: str | None = None,
        workload: str | None = None,
        device: str | None = None,
        warmup: int = 3,
        store: Store | str | os.PathLike[str] | bool | None = None,
        sample_interval: float = 0.1,
        repeat: int | None = None,
        seed: int | None = None,
        samples_per_epoch: int | None = None,
        model: nn.Module | None = None,
    ) -> None:
        self.batch_size = _whole(batch_size, "batch_size", 1)
        self.warmup = _whole(warmup, "warmup", 0)
        #: None: the next round of this batch size in the run (a re-run adds a round)
        self._repeat_given = repeat is not None
        self.repeat = _whole(repeat, "repeat", 0) if repeat is not None else 0
        if seed is not None:
            seed = _whole(seed, "seed", 0)
        self.seed = seed
        if samples_per_epoch is not None:
            samples_per_epoch = _whole(samples_per_epoch, "samples_per_epoch", 1)
        self.samples_per_epoch = samples_per_epoch
        if (
            isinstance(sample_interval, bool)
            or not isinstance(sample_interval, (int, float))
            or not math.isfinite(sample_interval)
            or sample_interval < 0
        ):
            raise UsageError(
                f"sample_interval must be 0 (off) or a number of seconds, got {sample_interval!r}"
            )
        self.sample_interval = float(sample_interval)
        self.requested_device = _device_name(device)
        if run is not None and (not isinstance(run, str) or not _RUN_RE.match(run)):
            raise UsageError(
                f"run {run!r} is not a usable run name: use letters, digits and . _ - : @ + = "
                "(no spaces or slashes, at most 100 characters)"
            )
        if run is not None and run.endswith(".json"):
            raise UsageError(f"run {run!r} ends in .json: 'batchscope report' would read a file")
        self.requested_run = run
        if workload is not None and (not isinstance(workload, str) or not workload.strip()):
            raise UsageError(f"workload must be a non-empty label, got {workload!r}")
        self.requested_workload = workload.strip() if workload is not None else None
        if not (store is None or isinstance(store, (bool, str, os.PathLike, Store))):
            raise UsageError(
                f"store must be a batchscope Store, a path, or False, not {type(store).__name__}"
            )
        self._store_arg = store
        self._model = model

        #: the trial, once the block has ended
        self.result: TrialResult | None = None
        #: the run the trial went into (known once the block has started)
        self.run_id: str | None = None
        #: the label the run records
        self.workload: str | None = None
        #: the canonical device name (``cpu``, ``cuda:0``), once known
        self.device: str | None = None
        #: the trial's key in the run, once the block has ended
        self.key: str | None = None
        #: the store's file, when one is used
        self.store_path: Path | None = None

        self._state = "new"  # new -> active -> done
        self._store: Store | None = None
        self._own_store = False
        self._run_exists = False
        self._clock: CallbackClock | None = None
        self._torch_device: torch.device | None = None
        self._sync_fn: Any = None
        self._tensor_type: type[torch.Tensor] | None = None  # torch.Tensor, once torch is in
        self._sampler: Sampler | None = None
        self._rss_baseline = 0
        self._t0 = 0.0
        self._last_end: float | None = None
        self._steps = 0
        self._last_loss: Any = None
        self._pending_len: int | None = None
        # the current pass of batches(): samples, loss sum, steps with a loss
        self._pass_samples = 0
        self._pass_loss: Any = None
        self._pass_loss_n = 0
        self._epochs: list[EpochRecord] = []
        self._steps_per_epoch: int | None = None

    # -- the block -------------------------------------------------------------------

    @property
    def steps(self) -> int:
        """``step()`` calls so far (warm-up and partial batches included)."""
        return self._steps

    def __enter__(self) -> Measurement:
        if self._state != "new":
            raise UsageError(
                "a measurement runs once: call batchscope.measure(...) again for another block"
            )
        from batchscope.engine.instrument import reset_and_read_rss
        from batchscope.engine.trial import check_device
        from batchscope.integrations.callback_clock import CallbackClock

        device = None
        if self.requested_device is not None:
            device = check_device(self.requested_device)
        self._open_store()
        try:
            self._choose_run()
            self._clock = CallbackClock(self.batch_size, self.warmup, self._sync)
            self._rss_baseline = reset_and_read_rss()
            if device is not None:
                self._start_device(device)
        except BaseException:
            if self._sampler is not None:
                self._sampler.stop()
            self._close_store()
            raise
        self._state = "active"
        self._clock.resume()
        self._t0 = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state != "active":
            return
        self._state = "done"
        try:
            self.result = self._build_result(exc)
            self._save(self.result)
        except BaseException as failure:
            if exc is None:
                raise
            # the user's exception is the one to see; say what went wrong on top
            if hasattr(exc, "add_note"):
                exc.add_note(f"batchscope.measure could not record the trial: {failure}")
        finally:
            self._close_store()

    def step(self, loss: Any = None, samples: int | None = None) -> None:
        """Mark the end of one training step (after ``optimizer.step()``).

        Waits for the device, then reads the clock. ``loss`` (a tensor or a
        number) is kept without a sync; the last one becomes the trial's
        ``final_train_loss``. ``samples`` is the step's batch length; by default
        the length of the batch :meth:`batches` gave, else ``batch_size``.
        """
        clock = self._active_clock("step()")
        if samples is not None:
            samples = _whole(samples, "samples", 0)
        if self._torch_device is None:
            import torch

            inferred = loss.device if isinstance(loss, torch.Tensor) else torch.device("cpu")
            self._start_device(inferred)
        n = samples if samples is not None else self._pending_len
        if n is None:
            n = self.batch_size
        if loss is not None:
            self._keep_loss(loss, n)
        clock.batch_end(n)
        self._last_end = time.perf_counter()
        self._steps += 1
        self._pass_samples += n
        self._pending_len = None

    def batches(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """Yield ``iterable``'s batches, timing the wait for each as the step's data wait.

        A pass that runs to the end is recorded as an epoch (time, samples, mean
        loss). Wrap the training loader only.
        """
        self._active_clock("batches()")
        if self.samples_per_epoch is None or self._steps_per_epoch is None:
            samples, steps = _loader_sizes(iterable)
            if self.samples_per_epoch is None:
                self.samples_per_epoch = samples
            if self._steps_per_epoch is None:
                self._steps_per_epoch = steps
        return self._batches(iterable)

    def _batches(self, iterable: Iterable[Any]) -> Iterator[Any]:
        from batchscope.engine.trainer import batch_length

        self._pass_samples, self._pass_loss, self._pass_loss_n = 0, None, 0
        start = time.perf_counter()
        iterator = iter(iterable)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                break
            clock = self._active_clock("batches()")
            clock.batch_begin()
            try:
                self._pending_len = batch_length(batch)
            except TypeError:
                self._pending_len = None
            yield batch
        if self._state == "active" and self._pass_samples:
            self._record_epoch(time.perf_counter() - start)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave what runs inside (evaluation, a checkpoint) out of the step times."""
        clock = self._active_clock("paused()")
        clock.sync()
        try:
            yield
        finally:
            if self._state == "active":
                clock.resume()

    def run(self) -> RunResult:
        """The whole run this block's trial went into (every block so far)."""
        if self.run_id is None:
            raise UsageError("the measurement has not started: no run yet")
        if self.store_path is None:
            memory = _MEMORY_RUNS.get(self.run_id)
            if memory is None:
                raise UsageError(f"run {self.run_id} has no trial yet")
            return memory
        if self._store is not None and not self._own_store:  # the caller's open Store
            with contextlib.suppress(StoreError):
                return self._store.get_run(self.run_id)
        with Store(self.store_path) as reopened:
            return reopened.get_run(self.run_id)

    # -- inside --------------------------------------------------------------------------

    def _active_clock(self, what: str) -> CallbackClock:
        if self._state != "active" or self._clock is None:
            raise UsageError(
                f"m.{what} belongs inside the 'with batchscope.measure(...) as m:' block"
            )
        return self._clock

    def _sync(self) -> None:
        if self._sync_fn is not None:
            self._sync_fn()

    def _start_device(self, device: torch.device) -> None:
        """The device is known: its clock sync, peak-memory reset and hardware sampler."""
        import torch

        from batchscope.core.plan import TrialSpec
        from batchscope.engine.instrument import start_sampler, synchronizer

        self._torch_device = device
        self.device = _canonical(device)
        if device.type in ("cuda", "xpu") and device.index is None:
            self._torch_device = device = torch.device(self.device)
        self._sync_fn = synchronizer(device)
        if self._clock is not None:  # the clock calls the device's sync without a detour
            self._clock.sync = self._sync_fn
        self._tensor_type = torch.Tensor
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        spec = TrialSpec(
            workload=SPEC,
            workload_options={},
            device=self.device,
            batch_size=self.batch_size,
            warmup=self.warmup,
            repeat=self.repeat,
            sample_interval_s=self.sample_interval,
        )
        self._sampler = start_sampler(spec, device, lambda kind, payload: None)

    def _keep_loss(self, loss: Any, n: int) -> None:
        """Keep the loss on its device (no sync); add it to the pass's sum.

        This runs inside every timed step, so a tensor loss costs one in-place add
        into the pass's running sum, not a fresh weighted tensor and a fresh sum per
        step (allocations on the CPU, kernel launches on a GPU).
        """
        tensor = self._tensor_type
        total = self._pass_loss
        if tensor is not None and isinstance(loss, tensor):
            if loss.numel() != 1:
                raise UsageError(
                    f"m.step(loss) takes the scalar loss, got a tensor of shape {tuple(loss.shape)}"
                )
            value: Any = loss.detach()
            if value.dim():
                value = value.reshape(())
            if isinstance(total, tensor):
                try:
                    total.add_(value, alpha=n)
                except RuntimeError:  # another device, an inference tensor: add out of place
                    self._pass_loss = total + value.float().to(total.device) * n
            else:
                weighted = value.float() * n  # a new tensor: the sum never aliases a loss
                self._pass_loss = weighted if total is None else weighted + total
        else:
            try:
                value = float(loss)
            except (TypeError, ValueError):
                raise UsageError(
                    f"m.step(loss) takes a loss tensor or a number, got {type(loss).__name__}"
                ) from None
            self._pass_loss = value * n if total is None else total + value * n
        self._last_loss = value
        self._pass_loss_n += n

    def _record_epoch(self, seconds: float) -> None:
        loss = None
        if self._pass_loss is not None and self._pass_loss_n:
            loss = float(self._pass_loss) / self._pass_loss_n
        self._epochs.append(
            EpochRecord(
                epoch=len(self._epochs) + 1,
                frozen=False,
                time_s=seconds,
                samples=self._pass_samples,
                train_loss=loss,
            )
        )

    # -- the result ----------------------------------------------------------------------

    def _build_result(self, exc: BaseException | None) -> TrialResult:
        import torch

        from batchscope.engine.instrument import record_hardware, record_memory
        from batchscope.hardware.oom import is_oom_error, last_line

        clock = self._clock
        assert clock is not None
        if self._torch_device is None:  # no step(): the block never told us the device
            self._torch_device, self.device = torch.device("cpu"), "cpu"
        assert self._torch_device is not None and self.device is not None
        samples = self._sampler.stop() if self._sampler is not None else []
        result = TrialResult(
            device=self.device,
            batch_size=self.batch_size,
            repeat=self.repeat,
            threads=torch.get_num_threads(),
            seed=self.seed,
            warmup_steps=self.warmup,
        )
        if self._last_end is not None:
            result.total_time_s = self._last_end - self._t0
        result.samples_trained = clock.samples
        if self._epochs:
            result.epochs = list(self._epochs)
            result.epoch_time_s = [e.time_s for e in self._epochs]
            result.samples_per_epoch = self._epochs[-1].samples
        else:
            result.samples_per_epoch = self.samples_per_epoch
        if self._steps_per_epoch is not None:
            result.steps_per_epoch = self._steps_per_epoch
        elif result.samples_per_epoch:
            result.steps_per_epoch = math.ceil(result.samples_per_epoch / self.batch_size)
        if exc is None:
            if self._steps == 0:
                result.status = "error"
                result.error = "no training step was marked: call m.step() after each step"
            else:
                clock.summarise(result)
        else:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                result.status = "interrupted"
            elif is_oom_error(exc):
                result.status = "oom"
            else:
                result.status = "error"
            result.error = last_line(f"{type(exc).__name__}: {exc}") or type(exc).__name__
            # what was timed stays, without the summaries that only an ok trial has
            result.step_times_s = list(clock.step_times)
            result.measured_steps = len(clock.step_times)
        if clock.partial_steps:
            result.notes.append(
                f"{clock.partial_steps} step(s) had fewer than {self.batch_size} samples: "
                "trained and counted in samples_trained, not timed"
            )
        with contextlib.suppress(Exception):  # a failed device may refuse a last read
            if self._last_loss is not None:
                result.final_train_loss = float(self._last_loss)
        with contextlib.suppress(Exception):
            record_memory(result, self._torch_device, self._rss_baseline)
        if self._sampler is not None:
            record_hardware(result, self._sampler, samples)
        return result

    # -- the store -----------------------------------------------------------------------

    def _open_store(self) -> None:
        arg = self._store_arg
        if arg is False:
            self._store = None
            return
        if arg is None or arg is True:
            self._store = Store.open_default()
            self._own_store = True
        elif isinstance(arg, (str, os.PathLike)):
            self._store = Store(arg)
            self._own_store = True
        else:
            assert isinstance(arg, Store)
            self._store = arg
        self.store_path = self._store.path

    def _close_store(self) -> None:
        if self._own_store and self._store is not None:
            self._store.close()
        self._store = None if self._own_store else self._store

    def _store_key(self) -> str:
        if self.store_path is None:
            return ""
        return str(self.store_path.expanduser().resolve())

    def _choose_run(self) -> None:
        """The run id and workload label; refuses to add to a run that is not ours."""
        from batchscope.run.store import new_run_id

        label = self.requested_workload
        if self.requested_run is None:
            label = label or _script_label()
            key = (self._store_key(), label)
            run_id = _PROCESS_RUNS.get(key)
            if run_id is None:
                run_id = _PROCESS_RUNS[key] = new_run_id()
            self.run_id, self.workload = run_id, label
            self._run_exists = self._existing(run_id, label) is not None
            return
        self.run_id = self.requested_run
        existing = self._existing(self.requested_run, label)
        self._run_exists = existing is not None
        self.workload = label or existing or _script_label()

    def _existing(self, run_id: str, label: str | None) -> str | None:
        """The workload label of ``run_id`` if it exists (and is a measure run), else None."""
        if self._store is None:
            memory = _MEMORY_RUNS.get(run_id)
            return str(memory.workload.get("name")) if memory is not None else None
        _ = self._store.conn  # a closed store fails here, not as "unknown run"
        try:
            found = self._store.get_run(run_id)
        except StoreError:
            return None
        name, settings = str(found.workload.get("name")), found.settings
        if settings.get("source") != SOURCE:
            raise UsageError(
                f"run {run_id!r} in {self._store.path} was not made by batchscope.measure: "
                "give another run name"
            )
        if label is not None and label != name:
            raise UsageError(
                f"run {run_id!r} measures workload {name!r}, not {label!r}: "
                "give another run name or the same workload label"
            )
        return name

    def _new_run(self, key: str) -> RunResult:
        from batchscope.hardware import envinfo

        workload: dict[str, Any] = {
            "name": self.workload,
            "spec": SPEC,
            "framework": FRAMEWORK,
            "description": f"a hand-written PyTorch loop ({_script_label()}) timed by "
            "batchscope.measure",
            "notes": [],
            "script": _script_label(),
        }
        model = self._model
        if model is not None:
            from torch import nn

            params = list(model.parameters())
            workload["parameters"] = sum(p.numel() for p in params)
            workload["parameter_bytes"] = sum(p.numel() * p.element_size() for p in params)
            workload["has_batchnorm"] = any(
                isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()
            )
            workload["model"] = type(model).__name__
        assert self.run_id is not None
        return RunResult(
            run_id=self.run_id,
            created=now_iso(),
            workload=workload,
            settings=self._settings(repeats=self.repeat + 1),
            environment=envinfo.collect(),
        )

    def _settings(self, repeats: int) -> dict[str, Any]:
        return {
            "source": SOURCE,
            "framework": FRAMEWORK,
            "warmup": self.warmup,
            "steps": None,
            "epochs": None,
            "repeats": repeats,
            "isolation": "none",
            "sample_interval_s": self.sample_interval,
        }

    def _next_repeat(self) -> int:
        """The first round of this device and batch size that the run does not hold yet."""
        store = self._store
        if store is None:
            run = _MEMORY_RUNS.get(self.run_id or "")
            trials = run.trials if run is not None else []
        elif self._run_exists:
            trials = store.get_run(self.run_id or "").trials
        else:
            trials = []
        taken = {
            t.repeat for t in trials if (t.device, t.batch_size) == (self.device, self.batch_size)
        }
        return max(taken) + 1 if taken else 0

    def _save(self, trial: TrialResult) -> None:
        """Add the trial to its run, creating the run or extending its plan."""
        assert self.run_id is not None and self.device is not None
        if not self._repeat_given:
            self.repeat = trial.repeat = self._next_repeat()
        self.key = key = f"{self.device}|bs={self.batch_size}|r={self.repeat}"
        store = self._store
        if store is None:
            run = _MEMORY_RUNS.get(self.run_id)
            if run is None:
                run = _MEMORY_RUNS[self.run_id] = self._new_run(key)
            run.trials = [
                t
                for t in run.trials
                if (t.device, t.batch_size, t.repeat) != (self.device, self.batch_size, self.repeat)
            ]
            run.trials.append(trial)
            return
        created = False
        if not self._run_exists:
            try:
                store.create_run(self._new_run(key), [key])
                created = True
            except StoreError:  # another process created it since the block began
                if self._existing(self.run_id, self.workload) is None:
                    raise
        if not created:
            planned = store.planned_keys(self.run_id)
            if key not in planned:
                store.update_plan(self.run_id, [*planned, key])
            settings = store.get_run(self.run_id).settings
            if int(settings.get("repeats") or 1) < self.repeat + 1:
                store.update_settings(self.run_id, {**settings, "repeats": self.repeat + 1})
        store.add_trial(self.run_id, key, trial)


#: ``batchscope.measure(batch_size=64, run="my-loop")``: measure a hand-written loop's steps
measure = Measurement
