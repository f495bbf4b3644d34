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


def engine_loop(workload, batch_size: int, steps: int, warmup: int, seed: int) -> float:  # type: ignore[no-untyped-def]
    spec = TrialSpec(
        workload="simplecnn",
        workload_options={},
        device="cpu",
        batch_size=batch_size,
        steps=steps,
        warmup=warmup,
        seed=seed,
        threads=torch.get_num_threads(),
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
    print(
        f"{'batch':>6} {'engine samples/s':>18} {'bare samples/s':>16} "
        f"{'ratio (median)':>15} {'ratio range':>16}"
    )
    for b in sizes:
        ratios, engine, bare = [], [], []
        for r in range(args.rounds):
            order = (engine_loop, bare_loop) if r % 2 == 0 else (bare_loop, engine_loop)
            got = {}
            for fn in order:
                got[fn.__name__] = fn(workload, b, args.steps, args.warmup, seed=r)
            engine.append(got["engine_loop"])
            bare.append(got["bare_loop"])
            ratios.append(got["engine_loop"] / got["bare_loop"])
        print(
            f"{b:>6} {statistics.median(engine):>18,.0f} {statistics.median(bare):>16,.0f} "
            f"{statistics.median(ratios):>15.3f} {min(ratios):>7.3f}–{max(ratios):.3f}"
        )


if __name__ == "__main__":
    main()
