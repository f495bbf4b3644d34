"""Does measuring slow training down? The engine against a bare hand-written loop.

Three measurements, each in interleaved rounds (engine and bare loop alternate,
who goes first rotates) so that drift of the machine hits both alike:

1. **Fixed cost per step** on the ``linear`` workload, whose step is so short
   (~0.25 ms) that the engine's own per-step work (clock reads, batch-length
   checks, the no-op sync) shows: median µs per step, engine minus bare.
2. **Throughput ratio** engine ÷ bare on seed 001's SimpleCNN at 16, 64, 256
   (the issue's target is ≥ 0.98 at every batch size): the median over rounds
   with a bootstrap 95 % interval, and the ratio the fixed cost of (1) implies,
   bare_step / (bare_step + cost), which does not suffer from round-to-round noise.
3. **The hardware sampler** (0.1 s) on against off, as a throughput ratio, and the
   sampler thread's own CPU time as a share of one core (``time.thread_time``).

Throughput = samples trained ÷ wall time of the measured steps (warm-up excluded
from both sides; the engine's partial batches are counted as trained samples).

    python benchmarks/overhead.py [--rounds 9] [--steps 60] [--batch-sizes 16,64,256]

Run it on a quiet machine; the intervals show how much the rounds disagreed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader

from batchscope.core.plan import TrialSpec
from batchscope.engine.trial import run_trial
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
) -> tuple[float, float | None]:
    """The engine's measured steps; returns samples/s and the sampler's CPU share."""
    spec = TrialSpec(
        workload=workload.name,
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
    assert result.total_time_s and result.samples_trained
    return result.samples_trained / result.total_time_s, result.sampler_cpu_fraction


def interleaved(runs: dict[str, Callable[[int], float]], rounds: int) -> dict[str, list[float]]:
    """Every variant once per round, the order rotated round by round."""
    got: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            got[name].append(runs[name](r))
    return got


def median_ci(values: list[float], n_boot: int = 2000) -> tuple[float, float, float]:
    """Median and its bootstrap 95 % interval (percentile method, fixed seed)."""
    rng = random.Random(0)
    boots = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(n_boot))
    return statistics.median(values), boots[int(0.025 * n_boot)], boots[int(0.975 * n_boot) - 1]


def ratio_cell(num: list[float], den: list[float]) -> str:
    med, lo, hi = median_ci([a / b for a, b in zip(num, den, strict=True)])
    return f"{med:.3f} [{lo:.3f}–{hi:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=60, help="measured steps per SimpleCNN run")
    parser.add_argument("--fixed-steps", type=int, default=2000, help="steps per linear run")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-sizes", default="16,64,256")
    args = parser.parse_args()
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds; "
        "[a–b] = bootstrap 95 % interval of the median over rounds"
    )

    linear = load_workload("linear", WorkloadOptions())
    b0, n0 = 16, args.fixed_steps
    fixed = interleaved(
        {
            "bare": lambda r: bare_loop(linear, b0, n0, args.warmup, seed=r),
            "engine": lambda r: engine_loop(linear, b0, n0, args.warmup, seed=r)[0],
        },
        args.rounds,
    )
    us = [1e6 * b0 / e - 1e6 * b0 / x for e, x in zip(fixed["engine"], fixed["bare"], strict=True)]
    cost, lo, hi = median_ci(us)
    bare_us = 1e6 * b0 / statistics.median(fixed["bare"])
    print(
        f"\n1. fixed cost per step (linear, b={b0}, {n0} steps): engine − bare = "
        f"{cost:.1f} µs [{lo:.1f}–{hi:.1f}] on a {bare_us:.0f} µs bare step"
    )

    cnn = load_workload("simplecnn", WorkloadOptions())
    print(f"\n2./3. SimpleCNN, {args.steps} measured steps per run")
    print(
        f"{'batch':>6} {'bare samples/s':>15} {'engine ÷ bare':>22} {'implied by (1)':>15} "
        f"{'sampler on ÷ off':>22} {'sampler CPU':>12}"
    )
    for b in sizes:
        sampler_share: list[float] = []

        def with_sampler(r: int, b: int = b, shares: list[float] = sampler_share) -> float:
            rate, share = engine_loop(
                cnn, b, args.steps, args.warmup, seed=r, sample_interval_s=0.1
            )
            if share is not None:
                shares.append(share)
            return rate

        got = interleaved(
            {
                "bare": lambda r, b=b: bare_loop(cnn, b, args.steps, args.warmup, seed=r),
                "off": lambda r, b=b: engine_loop(cnn, b, args.steps, args.warmup, seed=r)[0],
                "on": with_sampler,
            },
            args.rounds,
        )
        bare = statistics.median(got["bare"])
        step_us = 1e6 * b / bare
        implied = step_us / (step_us + cost)
        share = f"{100 * statistics.median(sampler_share):.2f} %" if sampler_share else "–"
        print(
            f"{b:>6} {bare:>15,.0f} {ratio_cell(got['off'], got['bare']):>22} {implied:>15.4f} "
            f"{ratio_cell(got['on'], got['off']):>22} {share:>12}"
        )


if __name__ == "__main__":
    main()
