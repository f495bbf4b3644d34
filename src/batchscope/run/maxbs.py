"""The largest batch size that fits: measure two sizes, fit, jump, verify, bisect.

Every attempt is a real trial — :data:`ATTEMPT_STEPS` full training steps (forward,
backward, optimizer step; ``steps`` when given) and one validation step, untimed — in
a fresh child process, so an out-of-memory ends that attempt and nothing else. The
search:

1. runs a small probe size ``b1`` and reads its peak memory ``P1``;
2. runs a second size ``b2 = b1·L/P1`` (``L`` = the budget less the margin): if
   memory is ``a + m·b`` with ``a ≥ 0``, that size fits, and it sits as close to
   the limit as one point allows — the line through the two points then
   interpolates rather than extrapolates;
3. fits ``memory(b) = a + m·b`` to every measured peak and runs the largest
   multiple of the granularity the line allows (2 % below it when that is a long
   jump past every measured size, so that it most likely fits and its peak pins the
   line), clamped strictly between the largest success and the smallest failure;
4. repeats 3 (bisecting when the line stops halving the bracket) until the size
   one granularity step above the largest success has failed, or the largest
   allowed size fits. A bisection never runs a size the line rules out: one it
   predicts over the limit, or well inside it, by more than the line's
   uncertainty (:meth:`_Search.model_range`) — until a run contradicts the line;
5. re-runs the answer until it has passed ``verify_repeats`` times (default 1: the
   search's own passing run), and once more when the boundary looks unrepeatable
   (:meth:`_Search.needs_second_verification`). A failure on re-verification, or
   any failure below a success, means outcomes near the boundary are not
   repeatable: the search moves below them and reports them as ``uncertain_band``.

The answer is always a size that was run, and passed, every time it was run, and
(unless it is the cap) one granularity step above it was run and failed. Where
memory grows linearly this takes 4–5 trials.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchscope.analyse.memory_model import MemoryFit, fit_memory_model, predict_max_batch
from batchscope.core.plan import TrialSpec, parse_devices
from batchscope.core.results import TrialResult
from batchscope.errors import BatchscopeError, DeviceError, UsageError
from batchscope.units import format_bytes

if TYPE_CHECKING:
    from batchscope.workloads import Workload

#: ``on_event(kind, payload)``; kinds: "probe", "budget", "trial_start",
#: "trial_progress", "trial_done", "done".
OnEvent = Callable[[str, dict[str, Any]], None]

#: the first probe size when ``start`` is not given (rounded up to the granularity)
DEFAULT_START = 8
#: the second probe is at most this many times the first
MAX_PROBE_GROWTH = 16
#: a jump past every measured size by more than this fraction of its target ...
LONG_JUMP = 0.05
#: ... aims this fraction below the line's prediction
BACK_OFF = 0.02
#: a safety stop; a search of linear memory needs 4–6 trials
MAX_TRIALS = 40
#: training steps per attempt unless ``steps`` is given. The peak comes once the
#: optimizer state exists: Adam/SGD-momentum allocate it in the first ``step()``, and
#: the second step's forward+backward then holds activations, gradients and that state
#: together. Measured with the engine's MemoryProbe on the CPU (fresh child each, one
#: validation step, under a memory limit as maxbs runs them: peak after 1/2/3/4 steps):
#: simplecnn b=128 44.45/46.72/46.73/46.74 MiB; resnet18 32×32 b=32
#: 172.94/173.13/173.41/173.61 MiB — after step 2 the peak moves by under 0.3 %, the
#: run-to-run noise. (Without a limit, glibc's default malloc thresholds can add a
#: late jump on step 3, e.g. simplecnn 61.4 → 68.0 MiB; maxbs always runs CPU attempts
#: under a limit, with ``MALLOC_MMAP_THRESHOLD_`` set, so that does not apply.)
ATTEMPT_STEPS = 2
#: the memory line's uncertainty, at least: this fraction of the limit, plus three
#: times its largest residual (a line is only as good as its worst point)
MODEL_SLACK = 0.01
#: a second verification is run when the answer's peak is off the line through every
#: other measured peak by more than this fraction of the limit, and by more than its
#: headroom under the limit
VERIFY_TOLERANCE = 0.01

__all__ = ["MaxBatchResult", "SearchTrial", "find_max_batch_size"]


@dataclass(kw_only=True)
class SearchTrial:
    """One attempt of the search."""

    batch_size: int
    #: the trial's status (``ok``, ``oom``, ``crashed``, ``timeout``, ``error``)
    status: str
    #: passed: status ``ok`` and peak memory within the budget less the margin
    fits: bool
    peak_memory_bytes: int | None
    seconds: float
    error: str | None = None
    #: why this size was run: ``probe``, ``model``, ``bisect``, ``grow``, ``verify``
    reason: str = ""
    step_time_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "status": self.status,
            "fits": self.fits,
            "peak_memory_bytes": self.peak_memory_bytes,
            "seconds": self.seconds,
            "error": self.error,
            "reason": self.reason,
            "step_time_s": self.step_time_s,
        }


@dataclass(kw_only=True)
class MaxBatchResult:
    """What :func:`find_max_batch_size` found, and every trial it took to find it."""

    #: the largest batch size that ran and passed every time it was run; None if none
    max_batch_size: int | None
    trials: list[SearchTrial]
    seconds: float
    memory_fit: MemoryFit | None
    #: sizes whose outcome was not repeatable (``[lo, hi]``, both run), or None
    uncertain_band: list[int] | None
    budget_bytes: int
    #: the budget less the margin: what a trial's peak memory must stay within
    limit_bytes: int
    budget_source: str
    workload: str
    device: str
    granularity: int
    margin: float
    #: "memory" (the next size failed), "max_batch_size" or "training set" (the cap)
    limited_by: str
    #: how many times the answer ran and passed
    verified_runs: int
    #: the smallest size that failed, when one did
    smallest_failure: int | None = None
    #: the memory model's own prediction from every measured peak
    predicted_max_batch_size: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_batch_size": self.max_batch_size,
            "trials": [t.to_dict() for t in self.trials],
            "seconds": self.seconds,
            "memory_fit": self.memory_fit.to_dict() if self.memory_fit else None,
            "uncertain_band": list(self.uncertain_band) if self.uncertain_band else None,
            "budget_bytes": self.budget_bytes,
            "limit_bytes": self.limit_bytes,
            "budget_source": self.budget_source,
            "workload": self.workload,
            "device": self.device,
            "granularity": self.granularity,
            "margin": self.margin,
            "limited_by": self.limited_by,
            "verified_runs": self.verified_runs,
            "smallest_failure": self.smallest_failure,
            "predicted_max_batch_size": self.predicted_max_batch_size,
            "notes": list(self.notes),
        }


def _floor_to(value: float, granularity: int) -> int:
    return int(math.floor(value / granularity)) * granularity


def device_free_memory(device: str) -> int:
    """Free memory of an accelerator as a fresh process sees it (queried in a child,
    so this process never initialises the device)."""
    kind, _, index = device.partition(":")
    code = {
        "cuda": f"import torch; print(torch.cuda.mem_get_info({index or 0})[0])",
        "xpu": f"import torch; print(torch.xpu.mem_get_info({index or 0})[0])",
        "mps": "import torch; print(torch.mps.recommended_max_memory()"
        " - torch.mps.driver_allocated_memory())",
    }.get(kind)
    if code is None:
        raise DeviceError(f"cannot tell the free memory of device {device!r}")
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    try:
        return int(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DeviceError(
            f"cannot read the free memory of {device}: {tail}; give --memory-limit"
        ) from None


def _peak(trial: TrialResult) -> int | None:
    """The peak that decides, as the sweep and ``--memory-limit`` judge it: a trial's
    ``peak_memory_bytes`` (on CUDA the caching allocator's reserved peak, what an OOM is
    about; on the CPU the resident-memory growth; see engine.instrument.MemoryProbe)."""
    return trial.peak_memory_bytes


class _Search:
    """The bookkeeping of one search: every run's outcome by size."""

    def __init__(
        self,
        run_one: Callable[[int, int], TrialResult],
        limit: int,
        granularity: int,
        on_event: OnEvent,
    ) -> None:
        self.run_one = run_one
        self.limit = limit
        self.g = granularity
        self.notify = on_event
        self.outcomes: dict[int, list[bool]] = {}
        self.trials: list[SearchTrial] = []
        self.points: list[tuple[int, int]] = []  # (batch size, peak) for the fit
        self.notes: list[str] = []
        #: a run contradicted the line's confident prediction: stop ruling sizes out
        self.model_misled = False
        #: sizes the line kept a bisection from running (ruled out or well inside)
        self.skipped: int = 0

    # -- running ---------------------------------------------------------------

    def run(self, batch_size: int, reason: str) -> SearchTrial:
        index = len(self.trials)
        self.notify("trial_start", {"index": index, "batch_size": batch_size, "reason": reason})
        start = time.perf_counter()
        result = self.run_one(batch_size, index)
        seconds = time.perf_counter() - start
        peak = _peak(result)
        status, error = result.status, result.error
        fits = result.ok and (peak is None or peak <= self.limit)
        if result.ok and not fits:  # over the margin on a device that did not fail
            status = "oom"
            error = (
                f"peak memory {format_bytes(peak)} exceeded the budget less the margin "
                f"({format_bytes(self.limit)})"
            )
        confident = self.confident_outcome(batch_size)
        if confident is not None and confident != fits:
            self.model_misled = True
        if status in ("ok", "oom") and peak is not None and peak > 0:
            self.points.append((batch_size, peak))
        trial = SearchTrial(
            batch_size=batch_size,
            status=status,
            fits=fits,
            peak_memory_bytes=peak,
            seconds=seconds,
            error=error,
            reason=reason,
            step_time_s=result.step_time_s.median if result.step_time_s else None,
        )
        if not fits and status not in ("oom",):
            self.notes.append(
                f"batch size {batch_size} ended '{status}' ({error}); counted as not fitting"
            )
        self.trials.append(trial)
        self.outcomes.setdefault(batch_size, []).append(fits)
        self.notify("trial_done", {"index": index, "trial": trial, "result": result})
        return trial

    # -- the state ---------------------------------------------------------------

    @property
    def hi(self) -> int | None:
        """The smallest size that ever failed."""
        failed = [b for b, runs in self.outcomes.items() if not all(runs)]
        return min(failed) if failed else None

    @property
    def lo(self) -> int:
        """The largest size below ``hi`` that passed every run (0 when none)."""
        hi = self.hi
        passed = [b for b, runs in self.outcomes.items() if all(runs) and (hi is None or b < hi)]
        return max(passed, default=0)

    @property
    def max_success(self) -> int:
        return max((b for b, runs in self.outcomes.items() if any(runs)), default=0)

    def uncertain_band(self) -> list[int] | None:
        hi = self.hi
        top = self.max_success
        if hi is not None and top >= hi:
            return [hi, top]
        return None

    def fit(self) -> MemoryFit | None:
        if len({b for b, _ in self.points}) < 2:
            return None
        sizes, peaks = zip(*self.points, strict=True)
        return fit_memory_model(list(sizes), list(peaks))

    def mean_peak(self, batch_size: int) -> float | None:
        peaks = [p for b, p in self.points if b == batch_size]
        return sum(peaks) / len(peaks) if peaks else None

    def interpolated(self, lo: int, hi: int) -> int | None:
        """The size where the straight line between the bracket's two ends meets the
        limit (regula falsi): exact for linear memory, local where it is not."""
        p_lo, p_hi = self.mean_peak(lo), self.mean_peak(hi)
        if p_lo is None or p_hi is None or p_hi <= p_lo:
            return None
        x = lo + (self.limit - p_lo) * (hi - lo) / (p_hi - p_lo)
        return _floor_to(x, self.g)

    def aimed(self) -> int | None:
        """The next size the line suggests.

        Far beyond every measured point, a line from small batches is a few per cent
        off, and a size that fails there teaches little (an over-budget trial is
        stopped before its peak is known). So a long jump aims :data:`BACK_OFF`
        below the prediction: it most likely fits, and its peak, close to the limit,
        pins the line for the next, exact step. Once three or more sizes agree with
        the line within :data:`MODEL_SLACK` of the limit, it is trusted as it is: a
        second back-off would spend an attempt the line has already ruled out.
        """
        predicted = self.predicted()
        if predicted is None:
            return None
        measured = max(b for b, _ in self.points)
        fit = self._weighted_fit()
        pinned = (
            fit is not None
            and len(set(fit.batch_sizes)) >= 3
            and not self.model_misled
            and fit.max_abs_residual_bytes <= MODEL_SLACK * self.limit
        )
        if not pinned and measured < (1.0 - LONG_JUMP) * predicted:
            return max(_floor_to(predicted * (1.0 - BACK_OFF), self.g), self.g)
        return predicted

    def _trusted_fit(self) -> MemoryFit | None:
        """The line, where it may rule sizes out: three or more sizes (two fix a line
        and say nothing about its error), a positive slope, and no run against it."""
        fit = self._weighted_fit()
        if (
            fit is None
            or len(set(fit.batch_sizes)) < 3
            or fit.m_bytes_per_sample <= 0
            or self.model_misled
        ):
            return None
        return fit

    def _weighted_fit(self, exclude: int | None = None) -> MemoryFit | None:
        points = [(b, p) for b, p in self.points if b != exclude]
        if len({b for b, _ in points}) < 2:
            return None
        sizes, peaks = zip(*points, strict=True)
        top = max(sizes)
        return fit_memory_model(list(sizes), list(peaks), weights=[(b / top) ** 2 for b in sizes])

    def uncertainty(self, fit: MemoryFit) -> float:
        """How far a peak may lie from the line and still be the line's fault:
        :data:`MODEL_SLACK` of the limit plus three times the largest residual."""
        return MODEL_SLACK * self.limit + 3.0 * fit.max_abs_residual_bytes

    def confident_outcome(self, batch_size: int) -> bool | None:
        """Whether the line says, beyond its uncertainty, that ``batch_size`` fits
        (True) or does not (False); None when it cannot tell or is not trusted."""
        fit = self._trusted_fit()
        if fit is None:
            return None
        predicted, slack = fit.predict(batch_size), self.uncertainty(fit)
        if predicted + slack <= self.limit:
            return True
        if predicted - slack > self.limit:
            return False
        return None

    def model_range(self, lo: int, hi: int) -> tuple[int, int]:
        """The part of the bracket ``(lo, hi)`` the line leaves open: above the largest
        size it predicts well inside the limit, below the smallest it predicts over
        the limit, each by more than :meth:`uncertainty`. Returns ``(lo, hi)`` unchanged
        when the line is not trusted (fewer than three sizes, a flat slope, or a run
        that contradicted it)."""
        fit = self._trusted_fit()
        if fit is None:
            return lo, hi
        slack, m = self.uncertainty(fit), fit.m_bytes_per_sample
        safe = _floor_to((self.limit - slack - fit.a_bytes) / m, self.g)
        doomed = self.g * math.ceil((self.limit + slack - fit.a_bytes) / m / self.g)
        # keep a real size on either side open: the boundary itself is run, not assumed
        new_lo = max(lo, min(safe, hi - 2 * self.g))
        new_hi = min(hi, max(doomed, new_lo + 2 * self.g))
        return new_lo, new_hi

    def needs_second_verification(self, answer: int) -> str | None:
        """Why the answer should run once more, or None.

        Either outcomes near the boundary have already proved unrepeatable (a size
        failed below one that passed, or one size both passed and failed), or the
        answer's peak is off the line through every other peak by more than
        :data:`VERIFY_TOLERANCE` of the limit and by more than its headroom — a
        measurement that far off the trend may not repeat, and a repeat on the line's
        side would not fit. (A peak far off a poor line but far under the limit, as
        at a cap, is no reason to run again.)
        """
        if self.uncertain_band() is not None or any(
            len(set(runs)) > 1 for runs in self.outcomes.values()
        ):
            return "an outcome near the boundary was not repeatable"
        peak = self.mean_peak(answer)
        fit = self._weighted_fit(exclude=answer)
        if peak is None or fit is None:
            return None
        off = abs(peak - fit.predict(answer))
        if off > VERIFY_TOLERANCE * self.limit and off > self.limit - peak:
            return (
                f"its peak {format_bytes(int(peak))} is {format_bytes(int(off))} off the "
                "memory line through the other sizes"
            )
        return None

    def predicted(self) -> int | None:
        """The largest size under the limit by a line weighted towards the large sizes.

        Small batches carry fixed costs that are not quite linear (allocator pools,
        per-call workspaces), and the line is used near the limit: weighting each
        point by ``(b / b_max)²`` lets the points near the boundary set it, while a
        far smaller point still pins the slope.
        """
        fit = self._weighted_fit()
        if fit is None:
            return None
        return predict_max_batch(fit, self.limit, granularity=self.g)


def find_max_batch_size(
    workload: str | Workload,
    *,
    device: str = "cpu",
    memory_limit_bytes: int | None = None,
    steps: int | None = None,
    granularity: int = 1,
    margin: float = 0.0,
    start: int | None = None,
    max_batch_size: int | None = None,
    workload_options: dict[str, Any] | None = None,
    threads: int | None = None,
    seed: int = 0,
    verify_repeats: int = 1,
    isolation: str = "process",
    trial_timeout_s: float | None = None,
    on_event: OnEvent | None = None,
    debug: bool = False,
    framework: str = "torch",
) -> MaxBatchResult:
    """The largest batch size (a multiple of ``granularity``) whose training fits the
    memory budget less ``margin``, found by running real trials.

    ``workload`` is a spec string (built-in name, ``module:function``,
    ``file.py:function``) or a :class:`~batchscope.Workload` (then every trial runs in
    this process: no OOM isolation, and CPU memory figures are upper bounds).

    The budget is ``memory_limit_bytes`` when given; otherwise the device's free memory
    (CUDA/XPU/MPS, read in a child process) or, on the CPU, the memory available on the
    machine. On the CPU every trial is judged on its measured peak memory (and capped
    well above it, so a runaway cannot exhaust the machine).

    ``max_batch_size`` caps the search (default and upper bound: the training set's
    size, since a step must hold a full batch). ``steps`` defaults to
    :data:`ATTEMPT_STEPS`, the steps a peak needs. ``verify_repeats`` is how many
    times the answer must have run and passed (1: no re-run, unless the boundary looks
    unrepeatable; then one more). ``framework="lightning"`` searches a Lightning entry
    (``workload`` = ``module:make``; each attempt a ``Trainer`` fit of ``steps`` steps
    and one validation batch). Raises
    :class:`~batchscope.errors.BatchscopeError` on bad input or when the workload fails
    for a reason that is not memory at the first size tried.
    """
    from batchscope.run.isolation import check_isolation, run_in_process, run_isolated
    from batchscope.run.sweep import check_memory_limit, probe

    t_start = time.perf_counter()
    notify: OnEvent = on_event or (lambda kind, payload: None)
    obj = None if isinstance(workload, str) else workload
    spec_name = workload if isinstance(workload, str) else workload.name
    if obj is not None:
        if framework != "torch":
            raise UsageError(
                f"a {framework} search takes its entry as 'module:function', not a Workload"
            )
        isolation = "none"
    if framework not in ("torch", "lightning"):
        raise UsageError(f"maxbs searches the engine's workloads or --lightning, not {framework!r}")
    check_isolation(isolation)
    n_steps = ATTEMPT_STEPS if steps is None else steps
    check_args(
        steps=n_steps,
        granularity=granularity,
        margin=margin,
        start=start,
        max_batch_size=max_batch_size,
        threads=threads,
        verify_repeats=verify_repeats,
        memory_limit_bytes=memory_limit_bytes,
        trial_timeout_s=trial_timeout_s,
    )
    options = dict(workload_options or {})
    if obj is not None:
        from batchscope.hardware import envinfo
        from batchscope.run.isolation import describe_workload

        info = describe_workload(spec_name, obj)
        devices = envinfo.available_devices()
    else:
        found = probe(spec_name, options, isolation=isolation, framework=framework, debug=debug)
        info, devices = found.workload, found.devices
    chosen = parse_devices(device, devices)
    if len(chosen) != 1:
        raise UsageError(f"--device {device!r} names {len(chosen)} devices: search one at a time")
    device = chosen[0]

    # -- the budget
    if memory_limit_bytes is not None:
        budget, source = int(memory_limit_bytes), "--memory-limit"
    elif device == "cpu":
        import psutil

        budget, source = int(psutil.virtual_memory().available), "available memory"
    else:
        budget, source = device_free_memory(device), f"free memory of {device}"
    limit = int(budget * (1.0 - margin))
    what = source if source == "--memory-limit" else f"the {source}"
    check_memory_limit(budget, info, what=what)
    if margin:
        check_memory_limit(limit, info, what=f"{what} × (1 − --margin {margin:g}) =")

    # -- the range
    g = granularity
    notes: list[str] = []
    n_train = int(info.get("n_train") or 0)
    cap_source = "max_batch_size"
    cap = max_batch_size if max_batch_size is not None else n_train
    if n_train and cap >= n_train:
        if max_batch_size is not None and max_batch_size > n_train:
            notes.append(
                f"max_batch_size {max_batch_size} is more than the {n_train} training samples: "
                f"searched up to {n_train}, the most a step can hold"
            )
        cap, cap_source = n_train, "training set"
    cap = _floor_to(cap, g)
    if cap < g:
        raise UsageError(
            f"no batch size that is a multiple of --granularity {g} fits in "
            f"{n_train if cap_source == 'training set' else max_batch_size} "
            f"({'training samples' if cap_source == 'training set' else '--max-batch-size'})"
        )
    if start is not None and start > cap:
        raise UsageError(f"--start {start} is above the largest size searched ({cap})")
    b1 = start if start is not None else min(cap, g * max(1, math.ceil(DEFAULT_START / g)))

    def run_one(batch_size: int, index: int) -> TrialResult:
        spec = TrialSpec(
            workload=spec_name,
            workload_options=options,
            device=device,
            batch_size=batch_size,
            steps=n_steps,
            warmup=0,
            threads=threads,
            seed=seed,
            validation_steps=1,
            count_flops=False,  # an attempt is for its peak: no extra counting pass
            # no hardware sampler: its thread and readings would only add noise to the
            # one figure an attempt is for, its peak memory
            sample_interval_s=0.0,
            # on the CPU the runner judges the peak against the limit (and caps the
            # child's address space well above it); on a GPU the device itself decides
            memory_limit_bytes=limit if device == "cpu" else None,
            framework=framework,
        )

        def forward(kind: str, payload: dict[str, Any]) -> None:
            notify("trial_progress", {"index": index, "event": kind, **payload})

        if isolation == "process":
            return run_isolated(spec, timeout_s=trial_timeout_s, progress=forward, debug=debug)
        return run_in_process(spec, obj, progress=forward)

    # every check has passed: from here on, only trials
    notify("probe", {"workload": info})
    notify("budget", {"budget_bytes": budget, "limit_bytes": limit, "source": source})
    search = _Search(run_one, limit, g, notify)
    _search(search, b1=b1, cap=cap, verify_repeats=verify_repeats)
    result = _conclude(
        search,
        cap=cap,
        cap_source=cap_source,
        notes=notes,
        seconds=time.perf_counter() - t_start,
        budget_bytes=budget,
        limit_bytes=limit,
        budget_source=source,
        workload=spec_name,
        device=device,
        margin=margin,
    )
    notify("done", {"result": result})
    return result


def _conclude(
    search: _Search, *, cap: int, cap_source: str, notes: list[str], **fields: Any
) -> MaxBatchResult:
    """The answer from a finished search: the largest size below every failure that
    passed every run, what limited it, and what was not repeatable."""
    notes = list(notes)
    lo, hi = search.lo, search.hi
    answer = lo if lo > 0 else None
    if answer is None:
        smallest = min(search.outcomes)
        why = next(t for t in search.trials if t.batch_size == smallest)
        notes.append(
            f"not even batch size {smallest} fits ({why.status}: {why.error or 'no detail'})"
        )
    limited_by = "memory"
    if answer is not None and answer == cap:
        limited_by = cap_source
    return MaxBatchResult(
        max_batch_size=answer,
        trials=search.trials,
        memory_fit=search.fit(),
        uncertain_band=search.uncertain_band(),
        granularity=search.g,
        limited_by=limited_by,
        verified_runs=len(search.outcomes[lo]) if answer else 0,
        smallest_failure=hi,
        predicted_max_batch_size=search.predicted(),
        notes=notes + search.notes,
        **fields,
    )


def check_args(
    *,
    steps: int,
    granularity: int,
    margin: float,
    start: int | None,
    max_batch_size: int | None,
    threads: int | None,
    verify_repeats: int,
    memory_limit_bytes: int | None,
    trial_timeout_s: float | None,
) -> None:
    def whole(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not whole(steps) or steps < 1:
        raise UsageError(f"--steps {steps} must be at least 1")
    if not whole(granularity) or granularity < 1:
        raise UsageError(
            f"--granularity {granularity} must be a whole number of at least 1 "
            "(e.g. 8 for multiples of 8)"
        )
    if not (isinstance(margin, (int, float)) and 0.0 <= margin < 1.0):
        raise UsageError(
            f"--margin {margin} must be a fraction in [0, 1): e.g. 0.1 keeps 10 % of the "
            "budget free"
        )
    if start is not None and (not whole(start) or start < 1 or start % granularity):
        raise UsageError(
            f"--start {start} must be a positive multiple of --granularity {granularity}"
        )
    if max_batch_size is not None and (not whole(max_batch_size) or max_batch_size < 1):
        raise UsageError(f"--max-batch-size {max_batch_size} must be at least 1")
    if threads is not None and (not whole(threads) or threads < 1):
        raise UsageError(f"--threads {threads} must be at least 1")
    if not whole(verify_repeats) or verify_repeats < 1:
        raise UsageError(f"--verify-repeats {verify_repeats} must be at least 1")
    if memory_limit_bytes is not None and (
        not whole(memory_limit_bytes) or memory_limit_bytes <= 0
    ):
        raise UsageError(f"--memory-limit {memory_limit_bytes!r} must be a positive size")
    if trial_timeout_s is not None and trial_timeout_s <= 0:
        raise UsageError(f"--trial-timeout {trial_timeout_s:g} must be more than 0 seconds")


def _search(search: _Search, *, b1: int, cap: int, verify_repeats: int) -> None:
    g = search.g
    first = search.run(b1, "probe")
    if first.status in ("error", "crashed"):
        # not a memory outcome: nothing can be learned about memory from here
        raise BatchscopeError(
            f"the workload fails at batch size {b1} for a reason that is not memory: "
            f"{first.status}: {first.error}"
        )
    if first.fits and b1 < cap:
        growth = MAX_PROBE_GROWTH
        if first.peak_memory_bytes and first.peak_memory_bytes > 0:
            # with memory = a + m·b and a ≥ 0, b1·L/P1 still fits
            guess = _floor_to(b1 * search.limit / first.peak_memory_bytes, g)
        else:
            guess = b1 * growth
        b2 = max(b1 + g, min(guess, _floor_to(b1 * growth, g), cap))
        search.run(b2, "probe")

    widths: list[int] = []  # the bracket's width before each step since a failure bounded it
    while len(search.trials) < MAX_TRIALS:
        lo, hi = search.lo, search.hi
        upper = hi - g if hi is not None else cap
        if lo >= upper:
            if lo == 0:
                return  # nothing fits
            needed = verify_repeats
            if needed < 2 and len(search.outcomes[lo]) < 2:
                why = search.needs_second_verification(lo)
                if why is not None:
                    needed = 2
                    search.notes.append(f"batch size {lo} verified a second time: {why}")
            if len(search.outcomes[lo]) < needed:
                search.run(lo, "verify")
                continue
            return
        candidate: int | None = None
        reason = "model"
        if hi is not None:
            width = hi - lo
            if widths and width > widths[-1]:
                # a re-verification failed and moved the answer down: a new bracket
                widths.clear()
            # two steps that did not halve the bracket: the line misleads here (memory
            # is not linear near the boundary), so halve it instead
            stalled = len(widths) >= 2 and width > widths[-2] / 2
            widths.append(width)
            if not stalled:
                candidate = search.interpolated(lo, hi)
                if candidate is None:
                    candidate = search.aimed()
                    if candidate is not None and candidate >= hi:
                        # the line allows a size that already failed (without a peak to
                        # correct it): stepping down one size at a time under it would
                        # spend attempts it has proved wrong about; halve instead
                        candidate = None
            if candidate is None:
                reason = "bisect"
                # halve only what the line leaves open: no run on a size it already
                # rules out, no step spent on one it puts well inside the limit
                open_lo, open_hi = search.model_range(lo, hi)
                if (open_lo, open_hi) != (lo, hi):
                    search.skipped += 1
                candidate = _floor_to((open_lo + open_hi) / 2, g)
        else:
            candidate = search.aimed()
            if candidate is None:
                reason = "grow"
                candidate = max(2 * lo, lo + g)
        candidate = min(max(candidate, lo + g), upper)
        search.run(candidate, reason)
    search.notes.append(f"stopped after {MAX_TRIALS} trials without settling the boundary")
