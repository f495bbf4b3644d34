"""One rank of a data-parallel trial: the engine's own loop, with DDP around the model.

Torch's elastic launcher (:mod:`batchscope.run.ddp_launch`) starts ``world_size`` copies
of :func:`rank_main`. Each joins the process group (``gloo`` on CPUs, ``nccl`` on CUDA,
one device per rank: ``cuda:LOCAL_RANK``), wraps the model in
``DistributedDataParallel`` and trains its shard of every pass (``DistributedSampler``,
shuffled with the trial's seed, reshuffled each pass), ``batch_size`` samples per rank
and micro-batch. The measured loop is :func:`batchscope.engine.trial.run_trial`'s, with
two changes made through :class:`~batchscope.engine.trial.TrialHooks`:

* after each step's clock stops, the step time, its data wait and the time since the
  protocol began are all-reduced with MAX: every rank records the *slowest* rank's step,
  and every rank stops adaptive sampling at the same step (no rank waits forever in a
  collective);
* the loss a trial reports, and the one every step checks for divergence, is the mean
  over ranks (each rank's shard mean, averaged: the loss of the global batch), so a NaN on
  one rank ends every rank's trial as ``diverged`` at the same step.

A one-rank trial runs this same path (DDP over a group of one), so a scaling
efficiency compares trials that differ in the number of ranks only.

``comm_fraction`` (:func:`measure_comm_fraction`): after the protocol, its memory peak
and its hardware readings are recorded, the rank times ``COMM_PAIRS`` pairs of extra
steps, alternately synchronised and under ``model.no_sync()`` (no gradient all-reduce),
interleaved so drift hits both alike. The exposed communication is ``1 − median(no_sync)
÷ median(sync)``; its 95 % interval combines the two medians' Maritz–Jarrett intervals
conservatively, and when that interval reaches 0 the figure is *not determined* (None,
the interval kept, a note says so).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from batchscope.core.plan import TrialSpec
from batchscope.core.results import TrialResult
from batchscope.engine.trial import TrialHooks, run_trial

if TYPE_CHECKING:
    from batchscope.engine.trainer import Trainer

#: extra step pairs (one synchronised, one under no_sync) behind comm_fraction
COMM_PAIRS = 12


def backend_for(device: str) -> str:
    """The collective backend of a device kind: NCCL for CUDA, gloo for everything else."""
    return "nccl" if device.startswith("cuda") else "gloo"


def rank_device(device: str, local_rank: int) -> str:
    """One device per rank: ``cuda:LOCAL_RANK`` on GPUs (the spec's index is the kind only)."""
    return f"cuda:{local_rank}" if device.startswith("cuda") else device


def _die_with_parent() -> None:
    """Get SIGKILL when the launcher's process dies (Linux), so no rank outlives a trial."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class _ShardLoader:
    """The rank's DataLoader over its ``DistributedSampler`` shard, a new shuffle each pass."""

    def __init__(self, loader: Any, sampler: Any) -> None:
        self.loader = loader
        self.sampler = sampler
        self.epoch = 0

    def __iter__(self) -> Any:
        self.sampler.set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


class DataParallelHooks(TrialHooks):
    """What one rank adds to the engine's loop (see the module docstring)."""

    def __init__(self, rank: int, world_size: int, comm_pairs: int = COMM_PAIRS) -> None:
        self.rank = rank
        self.world_size = world_size
        self.comm_pairs = comm_pairs
        self.ddp: Any = None

    def prepare(self, trainer: Trainer) -> None:
        import torch
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel
        from torch.utils.data import DataLoader
        from torch.utils.data.distributed import DistributedSampler

        from batchscope.engine import variants

        spec = trainer.spec
        cuda = trainer.device.type == "cuda"
        ids = [trainer.device.index or 0] if cuda else None
        self.ddp = DistributedDataParallel(trainer.model, device_ids=ids)
        # the FLOP count and validation keep using trainer.model, the module inside
        trainer.forward_model = variants.compile_model(self.ddp) if spec.compile else self.ddp
        dataset = trainer.workload.train_dataset
        sampler: DistributedSampler[Any] = DistributedSampler(
            dataset,
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=True,
            seed=spec.seed,
            drop_last=spec.drop_last,
        )
        loader = DataLoader(
            dataset,
            batch_size=spec.batch_size,
            sampler=sampler,
            drop_last=spec.drop_last,
            num_workers=spec.workers,
            pin_memory=cuda,
            persistent_workers=spec.workers > 0,
        )
        trainer.train_loader = _ShardLoader(loader, sampler)  # type: ignore[assignment]
        trainer.n_train = len(sampler)  # what this rank can fill its batches from
        trainer.steps_per_epoch = math.ceil(len(loader) / spec.accumulate)
        comm_device = trainer.device if cuda else torch.device("cpu")

        def reduce_max(values: list[float]) -> list[float]:
            tensor = torch.tensor(values, dtype=torch.float64, device=comm_device)
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
            return [float(v) for v in tensor.tolist()]

        def loss_value(loss: torch.Tensor) -> float:
            tensor = loss.detach().to(device=comm_device, dtype=torch.float64).reshape(1)
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            return float(tensor) / self.world_size

        trainer.reduce_max = reduce_max
        trainer.loss_value = loss_value

    def after_steps(self, trainer: Trainer, result: TrialResult) -> None:
        if result.status == "ok" and result.step_time_s is not None and self.comm_pairs > 0:
            measure_comm_fraction(trainer, self.ddp, result, self.comm_pairs)


def measure_comm_fraction(trainer: Trainer, ddp: Any, result: TrialResult, pairs: int) -> None:
    """``comm_fraction`` from ``pairs`` interleaved synchronised / ``no_sync()`` steps."""
    assert trainer.reduce_max is not None
    full = trainer.spec.batch_size * trainer.spec.accumulate
    times: dict[bool, list[float]] = {True: [], False: []}
    batches = trainer.batches()
    clock = time.perf_counter
    for _ in range(pairs):
        for synced in (True, False):
            t0 = clock()
            batch = trainer.next_batch(batches)
            with contextlib.nullcontext() if synced else ddp.no_sync():
                _, n = trainer.step(batch)
            trainer.sync()
            (step,) = trainer.reduce_max([clock() - t0])
            if n == full:
                times[synced].append(step)
    value, low, high = comm_fraction_from(times[True], times[False])
    result.comm_fraction_low, result.comm_fraction_high = low, high
    if low is None or high is None:
        result.notes.append("comm_fraction not determined: too few extra steps for an interval")
    elif value is None:
        middle = 1.0 - statistics.median(times[False]) / statistics.median(times[True])
        result.notes.append(
            f"comm_fraction not determined: steps with and without the gradient all-reduce "
            f"differ by {middle:+.1%} [{low:+.1%}, {high:+.1%}], within their noise"
        )
    result.comm_fraction = value


def comm_fraction_from(
    synced: Sequence[float], unsynced: Sequence[float]
) -> tuple[float | None, float | None, float | None]:
    """``(comm_fraction, low, high)`` from step times with and without the all-reduce.

    ``1 − median(unsynced) ÷ median(synced)``; the 95 % interval takes each median's
    Maritz–Jarrett interval at its least favourable end (low: the unsynced high end over
    the synced low end). The value is None — not determined — when the interval reaches
    0 (no exposed communication is shown beyond the noise); both ends are None with too
    few steps for an interval (fewer than 6 of either).
    """
    from batchscope.core.precision import median_precision

    a, b = (
        median_precision(sorted(synced)).interval(),
        median_precision(sorted(unsynced)).interval(),
    )
    if a is None or b is None or a[0] <= 0 or a[1] <= 0:
        return None, None, None
    low, high = 1.0 - b[1] / a[0], 1.0 - b[0] / a[1]
    if low <= 0.0:
        return None, low, high
    return 1.0 - statistics.median(unsynced) / statistics.median(synced), low, high


def merge_ranks(spec: TrialSpec, returned: dict[int, dict[str, Any]]) -> TrialResult:
    """One trial from its ranks' results: rank 0's (every rank holds the same synchronised
    step times), the largest rank's peak memory (a per-device figure), and the global
    throughput: ``samples_per_s`` = global batch ÷ median step, per device ÷ world size."""
    first = min(returned)
    result = TrialResult.from_dict(returned[first])
    for key in ("peak_memory_bytes", "peak_reserved_bytes", "peak_rss_bytes"):
        values = [v for r in returned.values() if (v := r.get(key)) is not None]
        if values:
            setattr(result, key, max(values))
    world = spec.world_size or 1
    result = dataclasses.replace(
        result,
        device=spec.device,
        world_size=world,
        per_device_batch_size=spec.batch_size,
        global_batch_size=spec.batch_size * world * spec.accumulate,
        scaling_mode=spec.scaling_mode,
    )
    if result.ok and result.step_time_s is not None and result.step_time_s.median > 0:
        assert result.global_batch_size is not None
        result.samples_per_s = result.global_batch_size / result.step_time_s.median
        result.samples_per_s_per_device = result.samples_per_s / world
    if first != 0:
        result.notes.append(f"ranks {sorted(returned)} ran on this node; rank 0 on another")
    if len(returned) > 1:
        result.notes.append("hardware readings (power, energy, utilisation) are rank 0's process")
    return result


def rank_main(spec_data: dict[str, Any]) -> dict[str, Any]:
    """The entry point of one rank, started by torch's elastic launcher (which sets RANK,
    LOCAL_RANK, WORLD_SIZE and the rendezvous). Returns the rank's result as a dict.

    An exception is left to propagate: the launcher records it as this rank's failure,
    stops every other rank and reports it (:mod:`batchscope.run.ddp_launch`).
    """
    _die_with_parent()
    import torch
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    world = int(os.environ["WORLD_SIZE"])
    spec = TrialSpec.from_dict(spec_data)
    device = rank_device(spec.device, local_rank)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    dist.init_process_group(backend_for(device))
    try:
        result = run_trial(
            dataclasses.replace(spec, device=device), hooks=DataParallelHooks(rank, world)
        )
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
    return result.to_dict()
