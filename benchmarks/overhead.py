"""Does measuring slow training down? The engine and ``batchscope.measure`` against a bare loop.

Every measurement runs in interleaved rounds (the variants alternate, who goes
first rotates) so that drift of the machine hits all of them alike:

1. **Fixed cost per step** on the ``linear`` workload, whose step is so short
   (~0.25 ms) that the instruments' own per-step work (clock reads, batch-length
   checks, the no-op sync, ``measure``'s loss bookkeeping) shows: median µs per
   step, engine minus bare and ``measure`` minus bare (hardware sampler off).
2. **Throughput ratio** engine ÷ bare on seed 001's SimpleCNN at 16, 64, 256
   (the target is ≥ 0.98 at every batch size, sampler on): the median over rounds
   with a bootstrap 95 % interval, and the ratio the fixed cost of (1) implies,
   bare_step / (bare_step + cost), which does not suffer from round-to-round noise.
3. **The hardware sampler** at its default interval, on against off, as a
   throughput ratio, and the sampler thread's own CPU time as a share of one core
   (``time.thread_time``).
4. **``batchscope.measure``** around the same SimpleCNN loop (``m.batches`` and
   ``m.step(loss)``, ``store=False``), with its defaults (sampler on) and with
   ``sample_interval=0``, ÷ the bare loop.

All of it with as many torch threads as the process has cores (``--threads``).
Throughput = samples trained ÷ wall time of the measured steps (warm-up excluded
from both sides; the engine's partial batches are counted as trained samples).

    python benchmarks/overhead.py [--quick] [--rounds 9] [--steps 60] [--min-samples 4096]
                                  [--batch-sizes 16,64,256] [--threads N]

``--quick`` (3 rounds, short runs, ~1 minute) checks that it works; its figures
are too noisy to quote. Run it on a quiet machine; the intervals show how much
the rounds disagreed, and the last line says how much CPU other processes took
meanwhile (with as many torch threads as cores, any of it stalls the training).
"""

from __future__ import annotations

import argparse
import inspect
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader

import batchscope
from batchscope.core.plan import TrialSpec
from batchscope.engine.trial import run_trial
from batchscope.workloads import Workload, WorkloadOptions, load_workload


def bare_loop(workload: Workload, batch_size: int, steps: int, warmup: int, seed: int) -> float:
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

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
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


#: the instruments' own default sampling intervals (what a user gets)
ENGINE_INTERVAL_S = float(TrialSpec.__dataclass_fields__["sample_interval_s"].default)
MEASURE_INTERVAL_S = inspect.signature(batchscope.measure).parameters["sample_interval"].default


def cores() -> int:
    """The cores this process may run on (its affinity), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def measure_loop(
    workload: Workload,
    batch_size: int,
    steps: int,
    warmup: int,
    seed: int,
    sample_interval: float | None = None,
) -> tuple[float, float | None]:
    """The bare loop inside ``batchscope.measure``; returns samples/s and the sampler's CPU share.

    ``sample_interval=None`` keeps ``measure``'s default. The clock is the same as
    the bare loop's: wall time of the steps after the warm-up, read from outside.
    """
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
    options = {} if sample_interval is None else {"sample_interval": sample_interval}
    with batchscope.measure(
        batch_size=batch_size, warmup=warmup, store=False, workload="overhead", **options
    ) as m:

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            while True:
                for x, y in m.batches(loader):
                    if len(y) == batch_size:
                        yield x, y

        it = batches()
        for _ in range(warmup):
            x, y = next(it)
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            m.step(loss)
        start = time.perf_counter()
        for _ in range(steps):
            x, y = next(it)
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            m.step(loss)
        elapsed = time.perf_counter() - start
    assert m.result is not None and m.result.status == "ok", m.result
    return batch_size * steps / elapsed, m.result.sampler_cpu_fraction


def engine_loop(
    workload: Workload,
    batch_size: int,
    steps: int,
    warmup: int,
    seed: int,
    sample_interval_s: float = 0.0,
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


#: cores' worth of CPU that other processes (and the hypervisor: steal) used during each run
OTHERS: list[float] = []


def _machine_busy_s() -> float | None:
    """CPU seconds the whole machine has been busy since boot (Linux ``/proc/stat``), else None."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def _own_s() -> float:
    times = os.times()
    return times.user + times.system


def interleaved(runs: dict[str, Callable[[int], float]], rounds: int) -> dict[str, list[float]]:
    """Every variant once per round, the order rotated round by round.

    Also notes, in ``OTHERS``, how busy the rest of the machine was during each run.
    """
    got: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            busy, own, start = _machine_busy_s(), _own_s(), time.perf_counter()
            got[name].append(runs[name](r))
            busy_after = _machine_busy_s()
            if busy is not None and busy_after is not None:
                others = (busy_after - busy) - (_own_s() - own)
                OTHERS.append(max(0.0, others) / (time.perf_counter() - start))
    return got


def median_ci(values: list[float], n_boot: int = 2000) -> tuple[float, float, float]:
    """Median and its bootstrap 95 % interval (percentile method, fixed seed)."""
    rng = random.Random(0)
    boots = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(n_boot))
    return statistics.median(values), boots[int(0.025 * n_boot)], boots[int(0.975 * n_boot) - 1]


def ratio_cell(num: list[float], den: list[float]) -> str:
    med, lo, hi = median_ci([a / b for a, b in zip(num, den, strict=True)])
    return f"{med:.3f} [{lo:.3f}–{hi:.3f}]"


def _share(values: list[float]) -> str:
    return f"{100 * statistics.median(values):.2f} %" if values else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=60, help="measured steps per SimpleCNN run")
    parser.add_argument(
        "--min-samples",
        type=int,
        default=4096,
        help="more steps at small batch sizes, so that a run trains at least this many samples",
    )
    parser.add_argument("--fixed-steps", type=int, default=2000, help="steps per linear run")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-sizes", default="16,64,256")
    parser.add_argument("--threads", type=int, default=cores(), help="torch threads (cores)")
    parser.add_argument(
        "--quick", action="store_true", help="3 rounds of short runs (~1 min): does it work?"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps, args.min_samples, args.fixed_steps = 3, 16, 768, 300
        args.warmup = 3
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads on {cores()} cores, "
        f"{args.rounds} rounds{' (--quick)' if args.quick else ''}; load average {load}; "
        f"sampler default: engine {ENGINE_INTERVAL_S:g} s, measure {MEASURE_INTERVAL_S:g} s; "
        "[a–b] = bootstrap 95 % interval of the median over rounds"
    )

    linear = load_workload("linear", WorkloadOptions())
    b0, n0 = 16, args.fixed_steps
    fixed = interleaved(
        {
            "bare": lambda r: bare_loop(linear, b0, n0, args.warmup, seed=r),
            "engine": lambda r: engine_loop(linear, b0, n0, args.warmup, seed=r)[0],
            "measure": lambda r: measure_loop(linear, b0, n0, args.warmup, r, 0.0)[0],
        },
        args.rounds,
    )
    bare_us = 1e6 * b0 / statistics.median(fixed["bare"])
    costs: dict[str, float] = {}
    print(f"\n1. fixed cost per step (linear, b={b0}, {n0} steps, sampler off)")
    for name in ("engine", "measure"):
        us = [1e6 * b0 / e - 1e6 * b0 / x for e, x in zip(fixed[name], fixed["bare"], strict=True)]
        costs[name], lo, hi = median_ci(us)
        print(
            f"   {name} − bare = {costs[name]:.1f} µs [{lo:.1f}–{hi:.1f}] "
            f"on a {bare_us:.0f} µs bare step"
        )

    cnn = load_workload("simplecnn", WorkloadOptions())
    rows: list[tuple[int, dict[str, list[float]], list[float], list[float]]] = []
    steps_at = {b: max(args.steps, -(-args.min_samples // b)) for b in sizes}
    w = args.warmup
    for b in sizes:
        engine_share: list[float] = []
        measure_share: list[float] = []
        n = steps_at[b]

        def engine_on(r: int, b: int = b, n: int = n, shares: list[float] = engine_share) -> float:
            rate, share = engine_loop(cnn, b, n, w, seed=r, sample_interval_s=ENGINE_INTERVAL_S)
            if share is not None:
                shares.append(share)
            return rate

        def measure_on(
            r: int, b: int = b, n: int = n, shares: list[float] = measure_share
        ) -> float:
            rate, share = measure_loop(cnn, b, n, w, r)
            if share is not None:
                shares.append(share)
            return rate

        def bare_run(r: int, b: int = b, n: int = n) -> float:
            return bare_loop(cnn, b, n, w, seed=r)

        def engine_off(r: int, b: int = b, n: int = n) -> float:
            return engine_loop(cnn, b, n, w, seed=r)[0]

        def measure_off(r: int, b: int = b, n: int = n) -> float:
            return measure_loop(cnn, b, n, w, r, 0.0)[0]

        got = interleaved(
            {
                "bare": bare_run,
                "off": engine_off,
                "on": engine_on,
                "measure": measure_on,
                "measure_off": measure_off,
            },
            args.rounds,
        )
        rows.append((b, got, engine_share, measure_share))

    print(
        f"\n2./3. the engine on SimpleCNN, measured steps per run "
        f"{', '.join(f'{n} at b={b}' for b, n in steps_at.items())}, "
        f"sampler at {ENGINE_INTERVAL_S:g} s"
    )
    print(
        f"{'batch':>6} {'bare samples/s':>15} {'engine ÷ bare':>22} {'implied by (1)':>15} "
        f"{'sampler on ÷ off':>22} {'on ÷ bare':>22} {'sampler CPU':>12}"
    )
    for b, got, engine_share, _ in rows:
        bare = statistics.median(got["bare"])
        step_us = 1e6 * b / bare
        implied = step_us / (step_us + costs["engine"])
        print(
            f"{b:>6} {bare:>15,.0f} {ratio_cell(got['off'], got['bare']):>22} {implied:>15.4f} "
            f"{ratio_cell(got['on'], got['off']):>22} {ratio_cell(got['on'], got['bare']):>22} "
            f"{_share(engine_share):>12}"
        )

    print(
        f"\n4. batchscope.measure around the same loop (m.batches, m.step(loss)), "
        f"sampler at {MEASURE_INTERVAL_S:g} s (default) and off"
    )
    print(
        f"{'batch':>6} {'bare samples/s':>15} {'measure ÷ bare':>22} {'implied by (1)':>15} "
        f"{'measure, no sampler':>22} {'sampler CPU':>12}"
    )
    for b, got, _, measure_share in rows:
        bare = statistics.median(got["bare"])
        step_us = 1e6 * b / bare
        implied = step_us / (step_us + costs["measure"])
        print(
            f"{b:>6} {bare:>15,.0f} {ratio_cell(got['measure'], got['bare']):>22} "
            f"{implied:>15.4f} {ratio_cell(got['measure_off'], got['bare']):>22} "
            f"{_share(measure_share):>12}"
        )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"\n{time.perf_counter() - began:.0f} s; load average now {load}")
    if OTHERS:
        print(
            f"other processes used {statistics.median(OTHERS):.2f} cores during the median run "
            f"(the busiest run: {max(OTHERS):.2f}) of the {cores()} this benchmark ran on"
        )


if __name__ == "__main__":
    main()
