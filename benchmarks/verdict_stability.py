"""Do batchscope's verdicts repeat? Run the same sweep N times and compare what each says.

Each run is a fresh ``batchscope`` process writing its results JSON; from its
``analysis`` object this prints, per run and series, the fastest batch size, the
sizes tied with it, the recommendation and the U-shape verdict, then how many runs
agree on the fastest set (``{fastest} ∪ tied_with``) and on the U-shape verdict.

    python benchmarks/verdict_stability.py                 # `batchscope demo`, 5 runs
    python benchmarks/verdict_stability.py --runs 3 -- sweep simplecnn -b 16..256

Run it on a quiet machine: other programs' load is exactly the drift it measures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def one_run(command: list[str], index: int, workdir: Path) -> tuple[dict, float]:
    out = workdir / f"run{index}.json"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "batchscope", *command, "--json", str(out), "--no-store", "-q"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1) or not out.exists():
        sys.exit(f"run {index + 1} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(out.read_text())["analysis"], seconds


def verdicts(analysis: dict) -> dict[str, tuple[tuple[int, ...], str, int | None]]:
    out = {}
    for series, a in analysis.items():
        fastest = a.get("fastest") or {}
        ties = tuple(sorted({fastest.get("batch_size"), *fastest.get("tied_with", [])} - {None}))
        rec = (a.get("recommendation") or {}).get("batch_size")
        out[series] = (ties, (a.get("u_shape") or {}).get("verdict", "not_judged"), rec)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="how many times to run (default 5)")
    parser.add_argument("command", nargs="*", help="batchscope arguments (default: demo)")
    args = parser.parse_args()
    command = args.command or ["demo"]
    print(f"batchscope {' '.join(command)}: {args.runs} runs")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            analysis, seconds = one_run(command, i, Path(tmp))
            v = verdicts(analysis)
            rows.append(v)
            for series, (ties, u, rec) in v.items():
                print(
                    f"  run {i + 1} ({seconds:5.0f} s) {series}: fastest set "
                    f"{{{', '.join(map(str, ties))}}}, U shape {u}, use b={rec}"
                )
    print("agreement:")
    for series in rows[0]:
        sets = Counter(r[series][0] for r in rows if series in r)
        shapes = Counter(r[series][1] for r in rows if series in r)
        recs = Counter(r[series][2] for r in rows if series in r)
        top_set, n_set = sets.most_common(1)[0]
        top_u, n_u = shapes.most_common(1)[0]
        top_rec, n_rec = recs.most_common(1)[0]
        print(
            f"  {series}: fastest set {{{', '.join(map(str, top_set))}}} in {n_set}/{len(rows)}, "
            f"U shape {top_u!r} in {n_u}/{len(rows)}, use b={top_rec} in {n_rec}/{len(rows)}"
        )


if __name__ == "__main__":
    main()
