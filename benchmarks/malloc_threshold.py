"""Does ``MALLOC_MMAP_THRESHOLD_=65536`` slow CPU training steps, and does it sharpen memory?

Run by hand (not part of the tests)::

    .venv/bin/python benchmarks/malloc_threshold.py --rounds 5

Each round runs every (workload, batch size) twice in fresh child processes, once with
the variable set and once without, in alternating order (ABBA), so slow drift of the
machine spreads over both arms. Reports, per case and arm: the median over rounds of the
trial's median step time, their ratio, and the peak memory (RSS growth over the
post-setup baseline) with its spread over rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from batchscope.core.plan import TrialSpec
from batchscope.run import isolation as runner
from batchscope.units import format_bytes

ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}

CASES: list[tuple[str, dict[str, Any], int]] = [
    ("simplecnn", {"images": 2048}, 64),
    ("simplecnn", {"images": 2048}, 256),
    ("resnet18", {"images": 160, "extra": {"image_size": 64}}, 32),
    ("resnet18", {"images": 160, "extra": {"image_size": 64}}, 64),
]


def one(workload: str, options: dict[str, Any], bs: int, with_env: bool, steps: int) -> Any:
    # the runner sets it only for trials with a memory limit; here, set it or not by hand
    runner.cpu_child_env = lambda limit: dict(ENV) if with_env else {}  # type: ignore[assignment]
    opts = {"data": None, "weights": None, "images": None, "seed": 0, "extra": {}}
    opts.update(options)
    spec = TrialSpec(
        workload=workload,
        workload_options=opts,
        device="cpu",
        batch_size=bs,
        steps=steps,
        warmup=2,
        threads=2,
    )
    return runner.run_isolated(spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for r in range(args.rounds):
        for workload, options, bs in CASES:
            order = (True, False) if r % 2 == 0 else (False, True)
            for with_env in order:
                t = one(workload, options, bs, with_env, args.steps)
                assert t.ok, (workload, bs, t.status, t.error)
                assert t.step_time_s is not None
                rows.append(
                    {
                        "round": r,
                        "workload": workload,
                        "batch_size": bs,
                        "env": with_env,
                        "step_median_s": t.step_time_s.median,
                        "peak_memory_bytes": t.peak_memory_bytes,
                        "peak_rss_bytes": t.peak_rss_bytes,
                    }
                )
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"{len(rows)} trials in {time.perf_counter() - start:.0f} s")
    print(
        f"{'case':<18} {'step, env set':>14} {'step, unset':>12} {'ratio':>7} "
        f"{'peak, env set':>20} {'peak, unset':>20}"
    )
    for workload, _, bs in CASES:

        def pick(flag: bool, key: str, w: str = workload, b: int = bs) -> list[float]:
            return [
                x[key]
                for x in rows
                if x["workload"] == w and x["batch_size"] == b and x["env"] is flag
            ]

        on, off = pick(True, "step_median_s"), pick(False, "step_median_s")
        pon, poff = pick(True, "peak_memory_bytes"), pick(False, "peak_memory_bytes")
        # paired ratio per round (same round, adjacent in time)
        ratios = [a / b for a, b in zip(on, off, strict=True)]

        def spread(v: list[float]) -> str:
            mid, low, high = statistics.median(v), min(v), max(v)
            return f"{format_bytes(mid)} ({format_bytes(low)}–{format_bytes(high)})"

        print(
            f"{workload + ' bs=' + str(bs):<18} {statistics.median(on) * 1e3:>11.1f} ms "
            f"{statistics.median(off) * 1e3:>9.1f} ms {statistics.median(ratios):>7.3f} "
            f"{spread(pon):>20} {spread(poff):>20}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
