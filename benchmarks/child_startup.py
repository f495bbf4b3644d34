"""How long a trial's child takes to start: Popen (``python -m batchscope.run.child``)
against a fork of the zygote that has already imported torch.

Run by hand (not part of the tests)::

    .venv/bin/python benchmarks/child_startup.py --rounds 8 [--json out.json]

Each round starts one tiny trial (``linear``, 1 step, no warm-up, 2 threads, a
``--memory-limit`` so the CPU child gets ``MALLOC_MMAP_THRESHOLD_``) in each arm, in
alternating order (ABBA), so slow drift of the shared machine spreads over both. Per arm
it reports, over rounds, the median and the 25–75 % range of: the time from the request
to the child's first event (``setup``, sent once torch is imported and the device
checked), the whole trial's wall time, and the trial's measured peak memory (growth of
resident memory over its post-setup baseline), which must not depend on how the child
was started. The zygote's own start (paid once per parent process) is timed apart: it is
the first zygote trial's time to its first event.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

from batchscope.core.plan import TrialSpec
from batchscope.run import forkserver
from batchscope.run import isolation as runner
from batchscope.units import format_bytes

ARMS = ("popen", "zygote")


def one(arm: str, spec: TrialSpec) -> dict[str, Any]:
    os.environ[forkserver.ENV_SWITCH] = "1" if arm == "zygote" else "0"
    first: list[float] = []

    def progress(event: str, payload: dict[str, Any]) -> None:
        if not first:
            first.append(time.perf_counter())

    start = time.perf_counter()
    result = runner.run_isolated(spec, progress=progress)
    end = time.perf_counter()
    if arm == "zygote" and forkserver.unavailable_reason():
        raise SystemExit(f"the zygote did not serve: {forkserver.unavailable_reason()}")
    if result.status != "ok" or not first:
        raise SystemExit(f"{arm}: trial {result.status}: {result.error}")
    return {
        "arm": arm,
        "to_first_event_s": first[0] - start,
        "trial_s": end - start,
        "peak_memory_bytes": result.peak_memory_bytes,
    }


def spread(values: list[float]) -> tuple[float, float, float]:
    """(median, 25 %, 75 %) of ``values``."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), q1, q3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    spec = TrialSpec(
        workload="linear",
        workload_options={"data": None, "weights": None, "images": None, "seed": 0, "extra": {}},
        device="cpu",
        batch_size=32,
        steps=1,
        warmup=0,
        threads=2,
        memory_limit_bytes=1024**3,
    )
    zygote_start = one("zygote", spec)["to_first_event_s"]  # starts the zygote
    rows: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        order = ARMS if round_ % 2 == 0 else ARMS[::-1]
        for arm in order:
            rows.append({"round": round_, **one(arm, spec)})
            print(json.dumps(rows[-1]), file=sys.stderr)
    forkserver.shutdown()
    summary: dict[str, Any] = {"zygote_start_s": zygote_start, "rounds": args.rounds, "arms": {}}
    print(f"zygote start (once per parent, to its first child's first event): {zygote_start:.2f} s")
    print(f"{'arm':8} {'to first event (s)':>24} {'trial wall (s)':>22} {'peak memory':>26}")
    for arm in ARMS:
        mine = [r for r in rows if r["arm"] == arm]
        first = spread([r["to_first_event_s"] for r in mine])
        trial = spread([r["trial_s"] for r in mine])
        peak = spread([float(r["peak_memory_bytes"] or 0) for r in mine])
        summary["arms"][arm] = {"to_first_event_s": first, "trial_s": trial, "peak_bytes": peak}
        print(
            f"{arm:8} {first[0]:>8.3f} [{first[1]:.3f}–{first[2]:.3f}] "
            f"{trial[0]:>8.3f} [{trial[1]:.3f}–{trial[2]:.3f}] "
            f"{format_bytes(int(peak[0])):>10} [{format_bytes(int(peak[1]))}–"
            f"{format_bytes(int(peak[2]))}]"
        )
    ratio = summary["arms"]["popen"]["trial_s"][0] / summary["arms"]["zygote"]["trial_s"][0]
    print(f"trial wall time, popen ÷ zygote (medians): {ratio:.1f}×")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
