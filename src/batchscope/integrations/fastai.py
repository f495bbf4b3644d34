"""fastai: sweep batch sizes over the user's own ``Learner``.

From the command line::

    batchscope sweep --fastai examples/fastai_pets.py:make_learner -b 16..256 --fit "fine_tune(3)"

or from Python::

    from batchscope.integrations.fastai import sweep_learner
    run = sweep_learner(make_learner, [16, 32, 64], fit="fine_tune(3)")

``make_learner(bs)`` returns a :class:`fastai.learner.Learner` whose ``DataLoaders``
use batch size ``bs``. Each trial calls it in its own child process, moves the
learner to the trial's device, and runs the protocol with a callback that times
every training step (device-synchronised, data wait apart, the first ``warmup``
full-size steps left out), counts the samples trained (fastai drops the last
partial training batch, so an epoch may train fewer samples than the data set
holds) and keeps the values fastai's ``Recorder`` logged after each epoch
(``train_loss``, ``valid_loss``, ``error_rate`` ...). Hardware sampling and peak
memory cover the protocol, as for every trial.

The protocol (``--fit`` / ``fit=``) is one call of a ``Learner`` fit method, written
as in a notebook: ``fine_tune(1)`` (the default), ``fine_tune(3, base_lr=1e-3,
freeze_epochs=2)``, ``fit_one_cycle(3, lr_max=slice(1e-5, 1e-3))``, ``fit(2,
lr=1e-3)``, ``fit_flat_cos(1)`` or ``fit_sgdr(2, 1)``. Arguments must be literals
(numbers, strings, True/False/None, tuples, lists) or ``slice(...)`` of them: the
text is parsed, never evaluated. Any other protocol is a function ``protocol(learn)``
that trains the learner as it likes, named ``module:function`` or
``path/to/file.py:function`` (the CLI) or passed as the function itself (the Python
API). Since trials run in child processes, every function handed over here
(``make_learner`` and a ``fit`` function) must be importable: defined at the top
level of a module or a script, never a lambda or a nested function. A function
of the script being run (``__main__``) is imported from that script's file, so
keep its sweep under ``if __name__ == "__main__":``.

fastai's ``freeze()`` freezes all parameter groups but the last; a plain model
without a ``splitter`` is a single group, so nothing is frozen and a
``fine_tune`` "frozen" epoch trains the whole model. The probe and each trial
say so in their notes.

Importing this module does not import fastai or torch.
"""

from __future__ import annotations

import ast
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
    from batchscope.run.store import Store
    from batchscope.run.sweep import OnEvent

#: the protocol a trial runs when none is given
DEFAULT_FIT = "fine_tune(1)"

#: the batch size the probe builds its one learner with (``extra["probe_batch_size"]``)
PROBE_BATCH_SIZE = 2

#: Learner fit methods a protocol text may call, and the parameters each accepts
#: (fastai 2.7/2.8); the first ones, without defaults, are required.
FIT_METHODS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "fine_tune": (
        ("epochs",),
        (
            "base_lr",
            "freeze_epochs",
            "lr_mult",
            "pct_start",
            "div",
            "div_final",
            "wd",
            "moms",
            "cbs",
            "reset_opt",
            "start_epoch",
        ),
    ),
    "fit_one_cycle": (
        ("n_epoch",),
        (
            "lr_max",
            "div",
            "div_final",
            "pct_start",
            "wd",
            "moms",
            "cbs",
            "reset_opt",
            "start_epoch",
        ),
    ),
    "fit": (("n_epoch",), ("lr", "wd", "cbs", "reset_opt", "start_epoch")),
    "fit_flat_cos": (
        ("n_epoch",),
        ("lr", "div_final", "pct_start", "wd", "cbs", "reset_opt", "start_epoch"),
    ),
    "fit_sgdr": (
        ("n_cycles", "cycle_len"),
        ("lr_max", "cycle_mult", "cbs", "reset_opt", "wd", "start_epoch"),
    ),
}

_FIT_FORMS = (
    "use a Learner fit method with literal arguments, e.g. 'fine_tune(1)', "
    "'fine_tune(2, base_lr=1e-3, freeze_epochs=1)', 'fit_one_cycle(3, lr_max=slice(1e-5, 1e-3))', "
    "'fit(2, lr=1e-3)', 'fit_flat_cos(1)', 'fit_sgdr(2, 1)', or a function "
    "'module:function' / 'path/to/file.py:function' that takes the learner"
)

SINGLE_GROUP_NOTE = (
    "the learner has a single parameter group: fastai's freeze() freezes nothing, so "
    "fine_tune's 'frozen' epoch trained the whole model"
)
#: the same for a protocol function that called freeze()
SINGLE_GROUP_FREEZE_NOTE = (
    "the learner has a single parameter group: the protocol's freeze() froze nothing, "
    "so its 'frozen' epochs trained the whole model"
)


def _noop(event: str, payload: dict[str, Any]) -> None:
    """Default progress sink."""


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _require_fastai() -> None:
    try:
        import fastai  # noqa: F401
    except ImportError as exc:
        raise WorkloadError("fastai is not installed: pip install 'batchscope[fastai]'") from exc


# --------------------------------------------------------------------------- the protocol


@dataclass(frozen=True)
class FitProtocol:
    """A parsed ``--fit``: one Learner method call, or an importable ``protocol(learn)``."""

    #: the protocol as given (what trials receive and the run records)
    text: str
    #: the Learner method (``fine_tune`` ...), None for a function
    method: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: ``module:function`` or ``file.py:function`` of a ``protocol(learn)`` function
    function: str | None = None

    def _bound(self) -> dict[str, Any]:
        assert self.method is not None
        return dict(_signature(self.method).bind(*self.args, **self.kwargs).arguments)

    @property
    def epochs(self) -> int | None:
        """Epochs the protocol trains (None when a function decides)."""
        if self.method is None:
            return None
        bound = self._bound()
        start = int(bound.get("start_epoch", 0) or 0)
        if self.method == "fine_tune":
            return int(bound["epochs"]) + int(bound.get("freeze_epochs", 1))
        if self.method == "fit_sgdr":
            mult, cycles = bound.get("cycle_mult", 2), int(bound["n_cycles"])
            if cycles > MAX_EPOCHS:  # each cycle trains at least one epoch
                raise ValueError(f"{cycles} cycles")
            total = 0
            for i in range(cycles):
                total += int(bound["cycle_len"]) * mult**i
                if total > MAX_EPOCHS:
                    raise ValueError(f"more than {MAX_EPOCHS} epochs")
            return max(0, int(total) - start)
        return max(0, int(bound["n_epoch"]) - start)

    def run(self, learn: Any) -> None:
        """Train ``learn`` with this protocol."""
        if self.function is not None:
            from batchscope.workloads.loader import resolve_callable

            resolve_callable(self.function, what="--fit")(learn)
        else:
            assert self.method is not None
            getattr(learn, self.method)(*self.args, **self.kwargs)


#: fine_tune passes these on to fit_one_cycle: keyword-only
_KEYWORD_ONLY = {"fine_tune": ("div_final", "wd", "moms", "cbs", "reset_opt", "start_epoch")}


def _signature(method: str) -> inspect.Signature:
    required, optional = FIT_METHODS[method]
    keyword_only = _KEYWORD_ONLY.get(method, ())
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter(name, positional) for name in required]
    params += [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY if name in keyword_only else positional,
            default=None,
        )
        for name in optional
    ]
    return inspect.Signature(params)


def _literal(node: ast.expr, text: str) -> Any:
    """A literal argument, or ``slice(...)`` of literals."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "slice"
        and not node.keywords
        and 1 <= len(node.args) <= 3
    ):
        return slice(*(_literal(arg, text) for arg in node.args))
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise UsageError(
            f"--fit {text!r}: argument {ast.unparse(node)!r} is not a literal; {_FIT_FORMS}"
        ) from None


def _count(value: Any, name: str, text: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"--fit {text!r}: {name} must be a whole number of epochs, got {value!r}")
    return value


#: a protocol of more epochs than this is refused (it would never end on any machine)
MAX_EPOCHS = 100_000
#: a --fit longer than this is not a method call anyone typed
MAX_FIT_TEXT = 1_000


def parse_fit(fit: str | Callable[..., Any] | None) -> FitProtocol:
    """Parse a protocol: ``"fine_tune(1)"``, ``"fit_one_cycle(3)"``, ``"mod:function"``,
    a ``protocol(learn)`` function (made importable, see the module docstring), or
    None for :data:`DEFAULT_FIT`. A bad one is a one-line :class:`UsageError`."""
    if fit is None:
        fit = DEFAULT_FIT
    if callable(fit):
        entry = importable_entry(fit, "fit")
        return FitProtocol(text=entry, function=entry)
    if not isinstance(fit, str):
        raise UsageError(f"--fit {fit!r} is not a protocol: {_FIT_FORMS}")
    text = fit.strip()
    if not text:
        raise UsageError(f"--fit is empty: {_FIT_FORMS}")
    if "(" not in text and ":" in text:  # module:function or path/file.py:function
        target, _, name = text.rpartition(":")
        if not target or not name.isidentifier():
            raise UsageError(f"--fit {text!r}: {_FIT_FORMS}")
        return FitProtocol(text=text, function=text)
    if len(text) > MAX_FIT_TEXT:
        raise UsageError(f"--fit is {len(text):,} characters long: {_FIT_FORMS}")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, RecursionError, MemoryError):
        raise UsageError(f"--fit {text[:60]!r} is not a method call: {_FIT_FORMS}") from None
    call = tree.body
    if not isinstance(call, ast.Call):
        raise UsageError(f"--fit {text!r} is not a method call: {_FIT_FORMS}")
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):  # learn.fit(...)
        method = func.attr
    elif isinstance(func, ast.Name):
        method = func.id
    else:
        raise UsageError(f"--fit {text!r}: {_FIT_FORMS}")
    if method not in FIT_METHODS:
        raise UsageError(
            f"--fit {text!r}: {method!r} is not one of the Learner's fit methods "
            f"({', '.join(FIT_METHODS)}); for other protocols pass a function 'module:function'"
        )
    if any(isinstance(arg, ast.Starred) for arg in call.args) or any(
        kw.arg is None for kw in call.keywords
    ):
        raise UsageError(f"--fit {text!r}: *args and **kwargs are not accepted; {_FIT_FORMS}")
    args = tuple(_literal(arg, text) for arg in call.args)
    kwargs = {kw.arg: _literal(kw.value, text) for kw in call.keywords if kw.arg is not None}
    try:
        bound = _signature(method).bind(*args, **kwargs).arguments
    except TypeError as exc:
        required = ", ".join(FIT_METHODS[method][0])
        raise UsageError(
            f"--fit {text!r}: {exc} ({method} takes {required} and then keywords "
            f"{', '.join(FIT_METHODS[method][1])})"
        ) from None
    for name in FIT_METHODS[method][0] + ("freeze_epochs", "start_epoch"):
        if name in bound:
            _count(bound[name], name, text)
    protocol = FitProtocol(text=text, method=method, args=args, kwargs=kwargs)
    try:
        epochs = protocol.epochs
    except (TypeError, ValueError, OverflowError):
        raise UsageError(
            f"--fit {text!r}: cannot tell how many epochs it trains (at most {MAX_EPOCHS:,})"
        ) from None
    if not epochs:
        raise UsageError(f"--fit {text!r} trains no epoch: use e.g. {method}(1)")
    return protocol


# --------------------------------------------------------------------------- the learner


def _entry_name(entry: str) -> str:
    target, _, func = entry.rpartition(":")
    if target.endswith(".py") or "/" in target or "\\" in target:
        target = Path(target).stem
    return f"{target}:{func}" if target else entry


def _build_learner(entry: str, batch_size: int) -> Any:
    """``make_learner(batch_size)``, checked to be a Learner; user failures are one line."""
    from fastai.learner import Learner

    from batchscope.hardware.oom import is_oom_error
    from batchscope.workloads.loader import resolve_callable

    func = resolve_callable(entry, what="--fastai")
    try:
        inspect.signature(func).bind(batch_size)
    except TypeError:
        raise WorkloadError(
            f"{entry} must take the batch size: def make_learner(bs): ... "
            "dataloaders(path, bs=bs) ... return Learner"
        ) from None
    except ValueError:
        pass  # a builtin without a signature: just call it
    try:
        learn = func(batch_size)
    except BatchscopeError:
        raise
    except Exception as exc:
        if is_oom_error(exc):
            raise
        raise WorkloadError(f"{entry} raised {_one_line(exc)}") from exc
    if not isinstance(learn, Learner):
        raise WorkloadError(f"{entry} must return a fastai Learner, got {type(learn).__name__}")
    return learn


def _train_batch_size(learn: Any) -> int | None:
    bs = getattr(learn.dls.train, "bs", None)
    return int(bs) if isinstance(bs, int) else None


def _check_batch_size(learn: Any, entry: str, batch_size: int) -> None:
    bs = _train_batch_size(learn)
    if bs != batch_size:
        raise UsageError(
            f"make_learner({batch_size}) from {entry} returned DataLoaders with bs={bs}: "
            "build them with bs=bs"
        )


def _parameter_groups(learn: Any) -> int | None:
    opt = getattr(learn, "opt", None)
    if opt is not None:
        return len(opt.param_lists)
    from fastcore.foundation import L

    try:
        groups = learn.splitter(learn.model)
    except Exception:  # a user's splitter that needs more than the model
        return None
    # as fastai's Optimizer: a list of lists is the groups, a flat list one group
    return len(groups) if len(groups) and isinstance(groups[0], (L, list)) else 1


def _options_fit(options: dict[str, Any]) -> str | None:
    fit = options.get("fit") or (options.get("extra") or {}).get("fit")
    return str(fit) if fit else None


def probe(entry: str, options: dict[str, Any]) -> dict[str, Any]:
    """Build one learner (at a small batch size, on the CPU) and describe it.

    Returns the keys of :func:`batchscope.run.isolation.describe_workload` plus
    ``framework``, ``fit`` (the protocol when ``options`` carry it, as
    :func:`sweep_learner` does, else None) and ``metrics``.
    """
    _require_fastai()
    import fastai
    from fastai.torch_core import defaults
    from torch import nn

    extra = options.get("extra") or {}
    fit_text = _options_fit(options)
    protocol = parse_fit(fit_text) if fit_text else None
    probe_bs = int(extra.get("probe_batch_size", PROBE_BATCH_SIZE))
    saved = defaults.use_cuda
    defaults.use_cuda = False  # the probe never touches a GPU
    try:
        learn = _build_learner(entry, probe_bs)
    finally:
        defaults.use_cuda = saved
    _check_batch_size(learn, entry, probe_bs)
    model = learn.model
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    train_dl = learn.dls.train
    n_train = len(learn.dls.train_ds)
    n_val = len(learn.dls.valid_ds) if len(learn.dls.loaders) > 1 else 0
    metrics = [str(getattr(m, "name", type(m).__name__)) for m in learn.metrics]
    loss = type(learn.loss_func).__name__
    opt_func = getattr(learn.opt_func, "__name__", type(learn.opt_func).__name__)
    groups = _parameter_groups(learn)
    drop_last = bool(getattr(train_dl, "drop_last", False))
    notes = []
    if groups == 1:
        notes.append(
            "the learner has a single parameter group (no splitter): fastai's freeze() "
            "freezes nothing, so a fine_tune 'frozen' epoch trains the whole model"
        )
    if drop_last:
        notes.append(
            "fastai drops the last partial training batch: at batch size B an epoch trains "
            f"B × ⌊{n_train}/B⌋ of the {n_train} training items"
        )
    described = ", ".join(metrics) if metrics else "no metrics"
    arch = getattr(getattr(learn, "arch", None), "__name__", None)  # vision_learner's
    model_name = str(arch) if arch else type(model).__name__
    return {
        "name": _entry_name(entry),
        "spec": entry,
        "description": (
            f"fastai Learner: {model_name}, {loss}, {opt_func}, {described}; "
            f"{n_train} training / {n_val} validation items"
        ),
        "notes": notes,
        "info": {
            "model": model_name,
            "loss_func": loss,
            "opt_func": opt_func,
            "metrics": metrics,
            "parameter_groups": groups,
            "train_drop_last": drop_last,
            "num_workers": int(getattr(getattr(train_dl, "fake_l", train_dl), "num_workers", 0)),
            "probe_batch_size": probe_bs,
            "fastai_version": fastai.__version__,
        },
        "n_train": n_train,
        "n_val": n_val,
        "parameters": n_params,
        "parameter_bytes": param_bytes,
        "has_batchnorm": has_bn,
        "framework": "fastai",
        "fit": protocol.text if protocol else None,
        "metrics": metrics,
    }


# --------------------------------------------------------------------------- one trial


def _as_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


class _TrialState:
    """What the callbacks collect across every fit call of one protocol."""

    def __init__(
        self,
        clock: CallbackClock,
        steps_per_epoch: int,
        planned_epochs: int | None,
        notify: Progress,
    ) -> None:
        self.clock = clock
        self.planned_epochs = planned_epochs
        self.total_steps = planned_epochs * steps_per_epoch if planned_epochs else None
        self.notify = notify
        self.epochs: list[EpochRecord] = []
        self.epoch_samples = 0
        self.epoch_start = time.perf_counter()
        self.done = 0
        self.last_notify = time.perf_counter()
        #: whether the protocol asked fastai to freeze parameter groups
        self.froze = False

    def before_epoch(self) -> None:
        self.clock.sync()
        self.epoch_start = time.perf_counter()
        self.epoch_samples = 0

    def after_batch(self, n: int) -> None:
        self.clock.batch_end(n)
        self.epoch_samples += n
        self.done += 1
        now = time.perf_counter()
        if now - self.last_notify > 0.1:
            self.notify("step", {"done": self.done, "total": self.total_steps})
            self.last_notify = now

    def after_epoch(self, learn: Any) -> None:
        from batchscope.core.results import EpochRecord

        self.clock.sync()
        elapsed = time.perf_counter() - self.epoch_start
        recorder = getattr(learn, "recorder", None)
        values = list(recorder.values[-1]) if recorder is not None and recorder.values else []
        names = list(recorder.metric_names[1:]) if recorder is not None else []
        train_loss = val_loss = None
        metrics: dict[str, float] = {}
        for name, value in zip(names, values, strict=False):  # a cancelled phase logs fewer
            number = _as_float(value)
            if number is None:
                continue
            if name == "train_loss":
                train_loss = number
            elif name == "valid_loss":
                val_loss = number
            elif name != "time":
                metrics[str(name)] = number
        opt = getattr(learn, "opt", None)
        frozen = bool(opt is not None and getattr(opt, "frozen_idx", 0))
        self.epochs.append(
            EpochRecord(
                epoch=len(self.epochs) + 1,
                frozen=frozen,
                time_s=elapsed,
                samples=self.epoch_samples,
                train_loss=train_loss,
                val_loss=val_loss,
                metrics=metrics,
            )
        )
        self.notify(
            "epoch",
            {
                "epoch": len(self.epochs),
                "total": self.planned_epochs,
                "done": self.done,
                "total_steps": self.total_steps,
            },
        )


def _callbacks(state: _TrialState) -> list[Any]:
    """The two fastai callbacks of a trial: one first to see a batch arrive, one late."""
    from fastai.callback.core import Callback
    from fastai.learner import Recorder
    from fastai.torch_core import find_bs

    class BatchscopeBatchStart(Callback):
        """Marks the batch's arrival before any other callback's before_batch runs."""

        order, run_valid = -1000, False

        def before_batch(self) -> None:
            if self.learn.training:
                state.clock.batch_begin()

    class BatchscopeTimer(Callback):
        """Ends a step after every earlier callback (optimizer step included); records
        an epoch right after fastai's Recorder stored its values and before trackers
        (order 60) can cancel the fit."""

        order, run_valid = Recorder.order + 1, False

        def before_epoch(self) -> None:
            state.before_epoch()

        def before_train(self) -> None:
            opt = getattr(self.learn, "opt", None)
            state.clock.frozen = bool(opt is not None and getattr(opt, "frozen_idx", 0))
            state.clock.resume()

        def after_batch(self) -> None:
            if not self.learn.training:
                return
            yb = self.learn.yb
            n = find_bs(yb) if yb else find_bs(self.learn.xb)
            state.after_batch(int(n))

        def after_epoch(self) -> None:
            state.after_epoch(self.learn)

    return [BatchscopeBatchStart(), BatchscopeTimer()]


def run_trial(spec: TrialSpec, progress: Progress | None = None) -> TrialResult:
    """One trial: ``make_learner(spec.batch_size)`` on ``spec.device``, trained by ``spec.fit``."""
    _require_fastai()
    from batchscope.engine.instrument import synchronizer
    from batchscope.engine.trial import check_device

    notify: Progress = progress or _noop
    setup_start = time.perf_counter()
    protocol = parse_fit(spec.fit or _options_fit(spec.workload_options) or DEFAULT_FIT)
    result = new_result(spec)  # threads and seed, before anything is built
    device = check_device(spec.device)
    notify("setup", {"device": spec.device, "batch_size": spec.batch_size})

    import fastai.callback.progress  # noqa: F401  (Learner.no_bar)
    import fastai.callback.schedule  # noqa: F401  (fit_one_cycle, fine_tune ...)
    import torch
    from fastai.torch_core import defaults

    saved_use_cuda = defaults.use_cuda
    # fastai puts DataLoaders on CUDA when it can: make its default the trial's device
    defaults.use_cuda = device.type != "cpu"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        learn = _build_learner(spec.workload, spec.batch_size)
        _check_batch_size(learn, spec.workload, spec.batch_size)
        learn.dls.to(device)
        learn.model.to(device)
        train_dl = learn.dls.train
        n_train = len(learn.dls.train_ds)
        steps_per_epoch = len(train_dl)
        drop_last = bool(getattr(train_dl, "drop_last", False))
        if steps_per_epoch == 0:
            raise UsageError(
                f"batch size {spec.batch_size} is larger than the {n_train} training items "
                "and fastai drops the last partial training batch, so an epoch has no step: "
                "use a smaller batch size"
            )
        result.drop_last = drop_last
        result.steps_per_epoch = steps_per_epoch
        result.samples_per_epoch = steps_per_epoch * spec.batch_size if drop_last else n_train
        if drop_last and n_train % spec.batch_size:
            result.notes.append(
                f"fastai drops the last partial training batch: an epoch trains "
                f"{result.samples_per_epoch} of {n_train} images"
            )
        clock = CallbackClock(spec.batch_size, spec.warmup, synchronizer(device))
        state = _TrialState(clock, steps_per_epoch, protocol.epochs, notify)
        freeze_to = learn.freeze_to

        def watched_freeze_to(n: int) -> None:  # freeze() and fine_tune call it
            state.froze = state.froze or n != 0
            freeze_to(n)

        learn.freeze_to = watched_freeze_to  # an instance attribute: only this learner
        result.setup_time_s = time.perf_counter() - setup_start
        with (
            learn.added_cbs(_callbacks(state)),
            learn.no_bar(),
            learn.no_logging(),
            measured_protocol(spec, result, device, notify),
        ):
            protocol.run(learn)
    finally:
        defaults.use_cuda = saved_use_cuda

    clock.summarise(result)
    result.epochs = state.epochs
    result.epoch_time_s = [e.time_s for e in state.epochs]
    if state.epochs:
        last = state.epochs[-1]
        result.samples_per_epoch = last.samples
        result.final_train_loss = last.train_loss
    del learn.freeze_to
    if state.froze and _parameter_groups(learn) == 1:
        result.notes.append(
            SINGLE_GROUP_NOTE if protocol.method == "fine_tune" else SINGLE_GROUP_FREEZE_NOTE
        )
    if state.planned_epochs and len(state.epochs) < state.planned_epochs:
        result.notes.append(
            f"the protocol stopped after {len(state.epochs)} of {state.planned_epochs} epochs "
            "(a callback cancelled the fit)"
        )
    notify("done", {"status": result.status})
    return result


# --------------------------------------------------------------------------- Python API


def sweep_learner(
    make_learner: str | Callable[[int], Any],
    batch_sizes: list[int] | str,
    *,
    fit: str | Callable[[Any], Any] | None = DEFAULT_FIT,
    devices: list[str] | str = "cpu",
    store: Store | None = None,
    on_event: OnEvent | None = None,
    **protocol: Any,
) -> RunResult:
    """Sweep ``batch_sizes`` over the Learner that ``make_learner(bs)`` returns.

    ``make_learner`` is a top-level function (or its ``module:function`` /
    ``file.py:function`` name); ``fit`` a protocol text such as
    ``"fit_one_cycle(3)"`` or a top-level ``protocol(learn)`` function. Every
    trial runs in its own child process, like any sweep; ``protocol`` takes the
    other options of :func:`batchscope.sweep` (``warmup``, ``threads``, ``seed``,
    ``repeats``, ``isolation`` ...). Returns the :class:`~batchscope.core.results.RunResult`.
    """
    from batchscope.run.sweep import sweep

    entry = importable_entry(make_learner, "make_learner")
    fit_text = parse_fit(fit).text
    options = dict(protocol.pop("workload_options", None) or {})
    options["extra"] = {**(options.get("extra") or {}), "fit": fit_text}
    return sweep(
        entry,
        batch_sizes,
        devices=devices,
        store=store,
        on_event=on_event,
        framework="fastai",
        fit=fit_text,
        workload_options=options,
        **protocol,
    )
