"""What to run: batch sizes × devices × repeats, parsed and validated up front.

Everything here is plain data so that a trial can be sent to a child process as
JSON and stored for ``--resume``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from batchscope.errors import DeviceError, UsageError

#: a range expands to at most this many batch sizes (a typo like 1..100000:1 is refused)
MAX_RANGE_SIZES = 1000


def _expand(part: str, text: str) -> tuple[list[int], str | None]:
    """One ``lo..hi`` (doubling) or ``lo..hi:step`` (linear) range; a note when hi is missed."""
    lo_text, _, rest = part.partition("..")
    hi_text, colon, step_text = rest.partition(":")
    lo, hi = _positive_int(lo_text, text), _positive_int(hi_text, text)
    if lo > hi:
        raise UsageError(f"--batch-sizes range {part!r} runs backwards: use {hi}..{lo}")
    if colon:
        step = _positive_int(step_text, text)
        if (hi - lo) // step + 1 > MAX_RANGE_SIZES:
            raise UsageError(
                f"--batch-sizes range {part!r} makes more than {MAX_RANGE_SIZES} sizes: "
                "use a larger step"
            )
        sizes = list(range(lo, hi + 1, step))
        missed = f"{hi} is not {lo} plus a multiple of {step}"
    else:
        sizes = []
        b = lo
        while b <= hi:
            sizes.append(b)
            b *= 2
        missed = f"{hi} is not a doubling of {lo}"
    note = None
    if sizes[-1] != hi:
        note = f"{part} runs {', '.join(map(str, sizes))} ({missed})"
    return sizes, note


def batch_size_notes(text: str) -> list[str]:
    """What each range of ``text`` ran, for a range whose end is not one of its sizes."""
    notes = []
    for part in str(text).split(","):
        part = part.strip()
        if ".." in part:
            _, note = _expand(part, text)
            if note:
                notes.append(note)
    return notes


def parse_batch_sizes(text: str) -> list[int]:
    """Parse ``"16,32,64"``, a power-of-two range ``"16..256"``, a linear range
    ``"16..256:16"`` (start, start + step, ...), or a mix of them.

    Returns the sizes in ascending order without duplicates; :func:`batch_size_notes`
    says when a range's end is not among them (``16..100`` runs 16, 32, 64).
    """
    if text is None or not str(text).strip():
        raise UsageError("--batch-sizes is empty: give sizes like 16,32,64 or a range 16..256")
    sizes: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            raise UsageError(f"--batch-sizes {text!r} has an empty item: use e.g. 16,32,64")
        if ".." in part:
            sizes.update(_expand(part, text)[0])
        else:
            sizes.add(_positive_int(part, text))
    return sorted(sizes)


def _positive_int(item: str, whole: str) -> int:
    item = item.strip()
    if not re.fullmatch(r"[+-]?\d+", item):
        raise UsageError(
            f"batch size {item!r} in {whole!r} is not a whole number: use e.g. 16,32,64 or 16..256"
        )
    try:
        value = int(item)
    except ValueError:  # past Python's 4300-digit limit for int(str)
        raise UsageError(
            f"batch size {item[:20]!r}... in --batch-sizes has {len(item)} digits: "
            "use e.g. 16,32,64 or 16..256"
        ) from None
    if value <= 0:
        raise UsageError(f"batch size {value} in {whole!r} must be at least 1")
    return value


_DEVICE_RE = re.compile(r"^(cpu|mps|best|cuda(:\d+)?|xpu(:\d+)?)$")


def parse_devices(text: str, available: list[str]) -> list[str]:
    """Parse ``"cpu,cuda"`` or ``"auto"`` against the devices this machine has.

    ``best`` is the first accelerator present, else the CPU (the CLI's default).
    ``available`` lists canonical names such as ``["cpu", "cuda:0", "mps"]``;
    ``cuda`` means ``cuda:0``. An unknown or absent device is a :class:`DeviceError`.
    """
    if not text or not text.strip():
        raise UsageError("--devices is empty: use cpu, cuda, cuda:1, mps or auto")
    devices: list[str] = []
    for raw in text.split(","):
        name = raw.strip().lower()
        if name == "best":  # the fastest kind present: an accelerator, else the CPU
            accelerators = [d for d in available if d != "cpu"]
            candidates = [accelerators[0] if accelerators else "cpu"]
        elif name == "auto":
            candidates = list(available)
        else:
            if not _DEVICE_RE.match(name):
                raise DeviceError(
                    f"unknown device {raw.strip()!r}: use cpu, cuda, cuda:N, mps, xpu or auto"
                )
            if name in ("cuda", "xpu"):
                name = f"{name}:0"
            if name not in available:
                present = ", ".join(available)
                raise DeviceError(
                    f"device {raw.strip()!r} is not present here (present: {present})"
                )
            candidates = [name]
        for device in candidates:
            if device not in devices:
                devices.append(device)
    return devices


def check_device_names(text: str) -> None:
    """Refuse an empty or unknown device name (``tpu``) before anything is loaded.

    Whether a known name is present on this machine is :func:`parse_devices`'s
    question, answered once the machine has been probed.
    """
    names = [raw.strip().lower() for raw in (text or "").split(",")]
    known = [f"{n}:0" if n in ("cuda", "xpu") else n for n in names if _DEVICE_RE.match(n)]
    parse_devices(text, known)


def parse_seq_lens(text: str) -> list[int]:
    """``"128,256,512"`` → ``[128, 256, 512]`` (ascending, no duplicates)."""
    if text is None or not str(text).strip():
        raise UsageError("--seq-lens is empty: give lengths like 128,256,512")
    return _positive_list(
        text,
        r"\d+",
        "sequence length {item!r} in --seq-lens {text!r} is not a whole number of at least 1: "
        "use e.g. 128,256,512",
    )


def _positive_list(text: str, pattern: str, bad: str) -> list[int]:
    """The comma-separated whole numbers ≥ 1 of ``text``, ascending and unique; the
    first item not matching ``pattern`` (or below 1) raises ``bad`` formatted with it."""
    values: set[int] = set()
    for part in str(text).split(","):
        item = part.strip()
        if not re.fullmatch(pattern, item) or int(item) < 1:
            raise UsageError(bad.format(item=item, text=text))
        values.add(int(item))
    return sorted(values)


def _check_seq_lens(values: list[int]) -> list[int]:
    if not values:
        raise UsageError("--seq-lens is empty: give lengths like 128,256,512")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UsageError(
                f"sequence length {v!r} in --seq-lens must be a whole number of at least 1"
            )
    return sorted(set(values))


LR_SCALINGS = ("none", "linear", "sqrt")

#: data-parallel scaling: batch sizes per device ("weak") or global ("strong")
SCALING_MODES = ("weak", "strong")


def parse_world_sizes(text: str) -> list[int]:
    """``"1,2,4"`` → ``[1, 2, 4]`` (ascending, no duplicates); one clear line otherwise."""
    if text is None or not str(text).strip():
        raise UsageError("--world-sizes is empty: use e.g. 1,2,4")
    return _positive_list(
        text,
        r"\d{1,6}",
        "world size {item!r} in --world-sizes {text!r} must be a whole number >= 1: use e.g. 1,2,4",
    )


def check_lr_scaling(name: str) -> str:
    rule = (name or "").strip().lower()
    if rule not in LR_SCALINGS:
        raise UsageError(f"unknown --lr-scaling {name!r}: use one of {', '.join(LR_SCALINGS)}")
    return rule


#: adaptive sampling's defaults: ±2 % on the median step, 15 s per trial, at least 10 steps
DEFAULT_MAX_ERROR = 0.02
DEFAULT_MAX_TIME_S = 15.0
DEFAULT_MIN_STEPS = 10


@dataclass(kw_only=True)
class Recipe:
    """What every trial of a sweep shares: the workload and the protocol, as plain data.

    :class:`Plan` (the grid) and :class:`TrialSpec` (one trial of it) both extend it,
    so a setting is declared once and a trial copies it from its plan field by field.
    """

    workload: str
    workload_options: dict[str, Any] = field(default_factory=dict)
    #: a fixed number of measured steps; None with no epochs: measure until max_error
    steps: int | None = None
    epochs: int | None = None
    #: adaptive steps (``steps`` and ``epochs`` None): stop once the 95 % interval of the
    #: median step is within ±max_error, or after max_time_s, but never before min_steps
    max_error: float = DEFAULT_MAX_ERROR
    max_time_s: float = DEFAULT_MAX_TIME_S
    min_steps: int = DEFAULT_MIN_STEPS
    freeze_epochs: int = 0
    warmup: int = 3
    threads: int | None = None
    seed: int = 0
    drop_last: bool = False
    workers: int = 0
    memory_limit_bytes: int | None = None
    #: synchronise between the phases of a step to split its time (costs time itself)
    breakdown: bool = False
    #: seconds between hardware readings during the protocol; 0 turns sampling off
    sample_interval_s: float = 0.1
    #: ``METRIC=VALUE`` (``--target``): record when validation first met it (target.py)
    target: str | None = None
    #: variants (batchscope.engine.variants) and gradient accumulation
    channels_last: bool = False
    compile: bool = False
    accumulate: int = 1
    #: learning-rate scaling (batchscope.engine.lr) relative to base_batch_size (effective sizes)
    lr_scaling: str = "none"
    base_batch_size: int | None = None
    lr_warmup_steps: int = 0
    #: who trains: "torch" (batchscope's engine on a Workload), "fastai" (the user's
    #: Learner, ``workload`` = ``module:make_learner``), "keras" (``module:make_model``)
    #: or "lightning" (``module:make``, a LightningModule and its data)
    framework: str = "torch"
    #: fastai's protocol, e.g. ``fine_tune(1)`` or ``fit_one_cycle(3)`` (integrations.fastai)
    fit: str | None = None
    #: data-parallel trials (``--world-sizes``, batchscope.run.ddp_launch): "weak" when the
    #: batch sizes are per device, "strong" when they are global (``--global-batch-sizes``)
    scaling_mode: str = "weak"
    #: nodes each data-parallel trial spans, and their rendezvous (passed to torch's launcher)
    nnodes: int = 1
    rdzv_endpoint: str | None = None

    def recipe(self) -> dict[str, Any]:
        """The shared fields and their values (what a trial copies from its plan)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(Recipe)}


@dataclass(kw_only=True)
class TrialSpec(Recipe):
    """One trial: the full recipe a child process needs, as plain data."""

    device: str
    batch_size: int
    repeat: int = 0
    precision: str = "fp32"
    #: with ``steps``: this many forward passes in eval mode without gradients after
    #: the training steps, so the peak covers validation too (the batch-size search)
    validation_steps: int = 0
    #: count the step's FLOPs and bytes before the warm-up (batchscope.engine.flops); the
    #: batch-size search turns it off: an attempt is for its peak memory, and the count
    #: would cost it one more forward and backward
    count_flops: bool = True
    #: a sequence workload's length for this trial (``--seq-lens``); None: the workload's own
    seq_len: int | None = None
    #: data parallel: ranks launched by torch's elastic launcher, each training
    #: ``batch_size`` (per device); None: the ordinary one-process engine
    world_size: int | None = None

    @property
    def key(self) -> str:
        """Identity of the trial within a run (what ``--resume`` matches on).

        Non-default variants are appended, so keys of default trials never change.
        """
        key = f"{self.device}|bs={self.batch_size}|r={self.repeat}"
        if self.precision != "fp32":
            key += f"|{self.precision}"
        if self.channels_last:
            key += "|cl"
        if self.compile:
            key += "|compile"
        if self.accumulate > 1:
            key += f"|acc={self.accumulate}"
        if self.lr_scaling != "none":
            key += f"|lr={self.lr_scaling}@{self.base_batch_size}"
        if self.lr_warmup_steps:
            key += f"|lrw={self.lr_warmup_steps}"
        if self.seq_len is not None:
            key += f"|seq={self.seq_len}"
        if self.world_size is not None:
            key += f"|ws={self.world_size}"
        return key

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(kw_only=True)
class Plan(Recipe):
    """A sweep: the grid (batch sizes × devices × precisions × rounds) and its recipe."""

    batch_sizes: list[int]
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    repeats: int = 1
    #: ``--repeats auto``: add rounds (from 2) until the verdicts stop changing, at most
    #: ``max_rounds`` or until ``time_budget_s`` has passed
    repeats_auto: bool = False
    max_rounds: int = 5
    time_budget_s: float | None = None
    #: every precision is a further axis of the grid
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    #: ``--seq-lens``: a sequence workload's lengths, a further axis of the grid (None: the
    #: workload's own); each trial's length reaches the workload as ``extra["seq_len"]``
    seq_lens: list[int] | None = None
    #: ``--world-sizes``: every trial runs data parallel at each of these world sizes
    #: (batchscope.run.ddp_launch); None: the ordinary one-process trials
    world_sizes: list[int] | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not self.batch_sizes:
            raise UsageError("no batch sizes given: use e.g. --batch-sizes 16,32,64")
        for b in self.batch_sizes:
            if not isinstance(b, int) or isinstance(b, bool) or b < 1:
                raise UsageError(f"batch size {b!r} must be a whole number of at least 1")
        if self.steps is not None and self.epochs is not None:
            raise UsageError("give either --steps or --epochs, not both")
        if self.steps is not None and self.steps < 1:
            raise UsageError(f"--steps {self.steps} must be at least 1")
        if not (isinstance(self.max_error, (int, float)) and 0 < self.max_error < 1):
            raise UsageError(
                f"--max-error {self.max_error!r} must be a fraction between 0 and 1 "
                "(e.g. 2% or 0.02)"
            )
        if not (isinstance(self.max_time_s, (int, float)) and self.max_time_s > 0):
            raise UsageError(f"--max-time {self.max_time_s!r} must be more than 0 seconds")
        if (
            isinstance(self.min_steps, bool)
            or not isinstance(self.min_steps, int)
            or self.min_steps < 1
        ):
            raise UsageError(f"--min-steps {self.min_steps!r} must be a whole number of at least 1")
        if self.epochs is not None and self.epochs < 0:
            raise UsageError(f"--epochs {self.epochs} must be at least 0")
        if self.freeze_epochs < 0:
            raise UsageError(f"--freeze-epochs {self.freeze_epochs} must be at least 0")
        if self.freeze_epochs and self.epochs is None:
            raise UsageError("--freeze-epochs needs --epochs (a training protocol of epochs)")
        if self.epochs is not None and self.epochs + self.freeze_epochs < 1:
            raise UsageError("--epochs 0 with no --freeze-epochs trains nothing: use --epochs 1")
        if self.warmup < 0:
            raise UsageError(f"--warmup {self.warmup} must be at least 0")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads {self.threads} must be at least 1")
        if self.workers < 0:
            raise UsageError(f"--workers {self.workers} must be at least 0")
        if self.sample_interval_s < 0:
            raise UsageError(
                f"--sample-interval {self.sample_interval_s:g} must be 0 (off) or more seconds"
            )
        if self.repeats < 1:
            raise UsageError(f"--repeats {self.repeats} must be at least 1")
        if self.max_rounds < 2:
            raise UsageError(f"--max-rounds {self.max_rounds} must be at least 2")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise UsageError(f"--time-budget {self.time_budget_s:g} must be more than 0 seconds")
        if self.target is not None:
            from batchscope.core.target import parse_target

            parse_target(self.target)
            if self.epochs is None:
                raise UsageError(
                    "--target needs --epochs: the metric is measured by validating after each epoch"
                )
        self._validate_variants()
        if self.seq_lens is not None:
            self.seq_lens = _check_seq_lens(self.seq_lens)
            if self.framework != "torch":
                raise UsageError(
                    f"--seq-lens is for batchscope's sequence workloads (gpt): a {self.framework} "
                    "model sets its own sequence length"
                )
        self._validate_data_parallel()
        if self.framework != "torch":
            self._validate_framework()
        elif self.fit is not None:
            raise UsageError("--fit is fastai's protocol: use it with --fastai module:make_learner")
        if self.steps is None and self.epochs is None and self.framework == "keras":
            self.epochs = 1

    def _validate_framework(self) -> None:
        """fastai, Keras and Lightning run the user's own training: only what they can honour."""
        if self.framework == "lightning":
            self._validate_lightning()
            return
        name = {"fastai": "--fastai", "keras": "--keras"}.get(self.framework)
        if name is None:
            raise UsageError(
                f"unknown framework {self.framework!r}: use 'torch', 'fastai', 'keras' "
                "or 'lightning'"
            )
        if self.steps is not None:
            raise UsageError(
                f"{name} runs whole epochs: use "
                + ("--fit 'fine_tune(1)'" if self.framework == "fastai" else "--epochs N")
                + " instead of --steps"
            )
        if self.framework == "fastai" and self.epochs is not None:
            raise UsageError(
                "--fastai takes its protocol from --fit (e.g. 'fit_one_cycle(3)'), not --epochs"
            )
        if self.framework == "keras" and self.fit is not None:
            raise UsageError("--fit is fastai's protocol; with --keras use --epochs N")
        refused = {
            "--freeze-epochs": self.freeze_epochs != 0,
            "--precision": self.precisions != ["fp32"],
            "--channels-last": self.channels_last,
            "--compile": self.compile,
            "--accumulate": self.accumulate != 1,
            "--lr-scaling": self.lr_scaling != "none",
            "--lr-warmup-steps": self.lr_warmup_steps != 0,
            "--breakdown": self.breakdown,
            "--target": self.target is not None,
            "--workers": self.workers != 0,
            "--drop-last": self.drop_last,
        }
        given = [flag for flag, on in refused.items() if on]
        if given:
            raise UsageError(
                f"{', '.join(given)} cannot be applied to a {self.framework} "
                f"{'Learner' if self.framework == 'fastai' else 'model'}: set it in your own "
                f"{'make_learner' if self.framework == 'fastai' else 'make_model'} instead"
            )

    def _validate_lightning(self) -> None:
        """A Lightning ``Trainer`` honours --steps, --epochs, adaptive steps, --precision
        (bf16-mixed, 16-mixed) and --target; the rest belongs in the user's module."""
        if self.fit is not None:
            raise UsageError("--fit is fastai's protocol; with --lightning use --steps or --epochs")
        refused = {
            "--freeze-epochs": self.freeze_epochs != 0,
            "--channels-last": self.channels_last,
            "--compile": self.compile,
            "--accumulate": self.accumulate != 1,
            "--lr-scaling": self.lr_scaling != "none",
            "--lr-warmup-steps": self.lr_warmup_steps != 0,
            "--breakdown": self.breakdown,
            "--workers": self.workers != 0,
            "--drop-last": self.drop_last,
        }
        given = [flag for flag, on in refused.items() if on]
        if given:
            raise UsageError(
                f"{', '.join(given)} cannot be applied to a LightningModule: set it in your "
                "own module or data loaders (or Trainer callbacks) instead"
            )

    def _validate_variants(self) -> None:
        from batchscope.core.series import parse_precisions

        self.precisions = parse_precisions(self.precisions)
        if isinstance(self.accumulate, bool) or self.accumulate < 1:
            raise UsageError(f"--accumulate {self.accumulate} must be at least 1 (1: off)")
        if self.accumulate > 1 and self.breakdown:
            raise UsageError("--breakdown cannot split accumulated steps yet: drop one of them")
        self.lr_scaling = check_lr_scaling(self.lr_scaling)
        if self.base_batch_size is not None and self.base_batch_size < 1:
            raise UsageError(f"--base-batch-size {self.base_batch_size} must be at least 1")
        if self.lr_warmup_steps < 0:
            raise UsageError(f"--lr-warmup-steps {self.lr_warmup_steps} must be at least 0")
        if self.compile and self.warmup < 1:
            raise UsageError(
                "--compile needs --warmup 1 or more: compilation happens in the first "
                "warm-up step, which is timed apart from the measured steps"
            )
        if self.base_batch_size is None:
            self.base_batch_size = min(self.batch_sizes) * self.accumulate

    def _validate_data_parallel(self) -> None:
        """World sizes, strong scaling's divisibility, and what data parallel cannot run yet."""
        if self.scaling_mode not in SCALING_MODES:
            raise UsageError(f"scaling mode {self.scaling_mode!r} is not one of: weak, strong")
        if self.world_sizes is None:
            if self.scaling_mode == "strong":
                raise UsageError("--global-batch-sizes needs --world-sizes (e.g. 1,2)")
            return
        if not self.world_sizes:
            raise UsageError("--world-sizes is empty: use e.g. 1,2,4")
        for w in self.world_sizes:
            if not isinstance(w, int) or isinstance(w, bool) or w < 1:
                raise UsageError(f"world size {w!r} in --world-sizes must be a whole number >= 1")
        self.world_sizes = sorted(set(self.world_sizes))
        if isinstance(self.nnodes, bool) or not isinstance(self.nnodes, int) or self.nnodes < 1:
            raise UsageError(f"--nnodes {self.nnodes!r} must be a whole number of at least 1")
        for w in self.world_sizes:
            if w % self.nnodes:
                raise UsageError(
                    f"world size {w} is not divisible by --nnodes {self.nnodes}: every node "
                    "runs the same number of ranks"
                )
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise UsageError(f"--nnodes {self.nnodes} needs --rdzv-endpoint HOST:PORT")
        if self.scaling_mode == "strong":
            for b in self.batch_sizes:
                for w in self.world_sizes:
                    if b % (w * self.accumulate):
                        acc = f" × --accumulate {self.accumulate}" if self.accumulate > 1 else ""
                        raise UsageError(
                            f"global batch size {b} in --global-batch-sizes is not divisible "
                            f"by world size {w}{acc}: use multiples of {w * self.accumulate}"
                        )
        refused = {
            "--epochs": self.epochs is not None,
            "--breakdown": self.breakdown,
            "--target": self.target is not None,
            "--lr-scaling": self.lr_scaling != "none",
            "--fastai/--keras/--lightning": self.framework != "torch",
        }
        given = [flag for flag, on in refused.items() if on]
        if given:
            raise UsageError(
                f"{', '.join(given)} cannot be combined with --world-sizes yet: data-parallel "
                "trials measure --steps or adaptive steps of batchscope's engine"
            )

    def per_device_batch_size(self, batch_size: int, world_size: int) -> int:
        """What each rank trains per micro-batch: ``batch_size`` itself (weak scaling), or
        the global batch divided by world size × accumulation (strong scaling)."""
        if self.scaling_mode == "strong":
            return batch_size // (world_size * self.accumulate)
        return batch_size

    @property
    def adaptive(self) -> bool:
        """Steps are measured until the median is precise enough (no --steps, no --epochs)."""
        return self.steps is None and self.epochs is None

    def trials(self, rounds: range | None = None) -> list[TrialSpec]:
        """The grid in run order: round by round, each round every device and batch size.

        A round (``--repeats``) runs every trial once, in a fresh child each; the order
        of the batch sizes is rotated by one every round, so drift of the machine
        (thermal, background load) hits every size alike instead of biasing one.
        ``rounds`` picks some rounds (``--repeats auto`` adds them one at a time).
        """
        specs = []
        for repeat in rounds if rounds is not None else range(self.repeats):
            shift = repeat % len(self.batch_sizes)
            order = self.batch_sizes[shift:] + self.batch_sizes[:shift]
            for device in self.devices:
                for b in order:
                    # world sizes ascending: a round's one-rank reference runs first
                    worlds: list[int | None] = [None]
                    if self.world_sizes is not None:
                        worlds = list(self.world_sizes)
                    for world in worlds:
                        recipe = self.recipe()
                        recipe.update(
                            workload_options=dict(self.workload_options), seed=self.seed + repeat
                        )
                        size = b if world is None else self.per_device_batch_size(b, world)
                        specs.append(
                            TrialSpec(
                                **recipe,
                                device=device,
                                batch_size=size,
                                repeat=repeat,
                                world_size=world,
                            )
                        )
        return self._with_variants(specs)

    def _with_variants(self, specs: list[TrialSpec]) -> list[TrialSpec]:
        """Each trial once per sequence length and precision, side by side (drift spreads
        over the variants too)."""
        return [
            dataclasses.replace(
                spec, precision=precision, seq_len=seq_len, workload_options=options
            )
            for spec in specs
            for seq_len, options in self._seq_options(spec)
            for precision in self.precisions
        ]

    def _seq_options(self, spec: TrialSpec) -> list[tuple[int | None, dict[str, Any]]]:
        """(seq_len, workload options) per sequence length of the grid (one None without)."""
        if not self.seq_lens:
            return [(None, spec.workload_options)]
        out: list[tuple[int | None, dict[str, Any]]] = []
        for seq_len in self.seq_lens:
            options = dict(spec.workload_options)
            options["extra"] = {**dict(options.get("extra") or {}), "seq_len": seq_len}
            out.append((seq_len, options))
        return out

    def settings(self) -> dict[str, Any]:
        """The protocol as recorded with the run."""
        data = dataclasses.asdict(self)
        data.pop("workload")
        data.pop("workload_options")
        return data
