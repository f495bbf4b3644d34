"""Does measuring slow training down? The engine against a bare hand-written loop.

Both train seed 001's SimpleCNN on the same data with the same batch size, in
this process, in interleaved rounds (engine, bare, bare, engine, ...) so that
drift of the machine hits both alike. Throughput = samples trained / wall time
of the measured steps (warm-up excluded from both). The ratio engine/bare is
reported per batch size as the median over rounds; the target is ≥ 0.98.

    python benchmarks/overhead.py [--rounds 7] [--steps 60] [--batch-sizes 16,64,256]

Run it on a quiet machine: other processes competing for the cores make both
sides noisy (the spread is printed so you can tell).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader

from batchscope.engine import run_trial
from batchscope.plan import TrialSpec
from batchscope.workloads import WorkloadOptions, load_workload


def bare_loop(workload, batch_size: int, steps: int, warmup: int, seed: int) -> float:  # type: ignore[no-untyped-def]
    """Seed 001/002's loop: zero_grad, forward, loss, backward, step. Returns samples/s."""
    torch.manual_seed(seed)
    model = workload.model()
    optimizer = workload.optimizer(model.parameters())
    criterion = workload.loss
    loader = DataLoader(
        workload.train_dataset,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )

    def batches():  # type: ignore[no-untyped-def]
        while True:
            for x, y in loader:
                if len(y) == batch_size:
                    yield x, y

    it = batches()
    for _ in range(warmup):
        x, y = next(it)
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    start = time.perf_counter()
    for _ in range(steps):
        x, y = next(it)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    return batch_size * steps / (time.perf_counter() - start)


def engine_loop(  # type: ignore[no-untyped-def]
    workload, batch_size: int, steps: int, warmup: int, seed: int, sample_interval_s: float = 0.0
) -> float:
    """The engine's measured steps (timers, syncs, progress, optional sampler thread)."""
    spec = TrialSpec(
        workload="simplecnn",
        workload_options={},
        device="cpu",
        batch_size=batch_size,
        steps=steps,
        warmup=warmup,
        seed=seed,
        threads=torch.get_num_threads(),
        sample_interval_s=sample_interval_s,
    )
    result = run_trial(spec, workload)
    assert result.total_time_s is not None
    return batch_size * result.measured_steps / result.total_time_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-sizes", default="16,64,256")
    args = parser.parse_args()
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    workload = load_workload("simplecnn", WorkloadOptions())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.rounds} rounds × {args.steps} steps"
    )
    print("ratio = engine samples/s ÷ bare-loop samples/s (median over rounds, and range)")
    print(f"{'batch':>6} {'bare samples/s':>15} {'engine, sampler off':>22} "
          f"{'engine, sampler 0.1 s':>24}")
    variants = {
        "bare": lambda b, r: bare_loop(workload, b, args.steps, args.warmup, seed=r),
        "off": lambda b, r: engine_loop(workload, b, args.steps, args.warmup, seed=r),
        "on": lambda b, r: engine_loop(
            workload, b, args.steps, args.warmup, seed=r, sample_interval_s=0.1
        ),
    }
    for b in sizes:
        got: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(args.rounds):
            names = list(variants)
            for name in names[r % 3 :] + names[: r % 3]:  # rotate who goes first
                got[name].append(variants[name](b, r))
        cells = []
        for name in ("off", "on"):
            ratios = [e / x for e, x in zip(got[name], got["bare"], strict=True)]
            cells.append(f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f})")
        print(f"{b:>6} {statistics.median(got['bare']):>15,.0f} {cells[0]:>22} {cells[1]:>24}")


if __name__ == "__main__":
    main()
