"""``batchscope maxbs``: the largest batch size under a memory limit, end to end.

The answer is checked the only way that counts: in fresh child processes, the
answer trains within the limit and one granularity step above it does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from batchscope.core.plan import TrialSpec
from batchscope.run.isolation import run_isolated
from batchscope.units import parse_bytes
from conftest import CliResult, run_cli

#: simplecnn, 2 steps (maxbs's default attempt) and a validation step, 1 thread,
#: MALLOC_MMAP_THRESHOLD_=65536:
#: peak ≈ 21 MiB + 207 KiB × b, measured 99.3–99.4 MiB at 384 and 105.5–105.8 MiB at
#: 416. The limit sits half-way, so the boundary is ~3 MiB from either side — 20 times
#: the run-to-run noise of a peak (±0.15 MiB).
LIMIT = "102.5MiB"
GRANULARITY = 32
PROTOCOL = ("--threads", "1")  # --steps left to its default: ATTEMPT_STEPS


class Search:
    def __init__(self, folder: Path, result: CliResult) -> None:
        self.folder = folder
        self.code, self.out, self.err = result
        self.data = json.loads((folder / "m.json").read_text()) if self.code == 0 else {}


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> Search:
    folder = tmp_path_factory.mktemp("maxbs")
    result = run_cli(
        "maxbs", "simplecnn", "--device", "cpu", "--memory-limit", LIMIT,
        "--granularity", str(GRANULARITY), *PROTOCOL, "--json", "m.json",
        cwd=folder,
    )  # fmt: skip
    return Search(folder, result)


def _trial(batch_size: int) -> TrialSpec:
    """The search's own protocol for one attempt, as a fresh trial."""
    return TrialSpec(
        workload="simplecnn",
        workload_options={"data": None, "weights": None, "images": None, "seed": 0, "extra": {}},
        device="cpu",
        batch_size=batch_size,
        steps=2,
        warmup=0,
        threads=1,
        validation_steps=1,
        memory_limit_bytes=parse_bytes(LIMIT),
    )


def test_the_answer_runs_and_the_next_size_does_not_in_fresh_processes(search: Search) -> None:
    assert search.code == 0, search.err
    answer = search.data["max_batch_size"]
    assert answer is not None and answer % GRANULARITY == 0
    fits = run_isolated(_trial(answer))
    assert fits.status == "ok", fits.error
    assert fits.peak_memory_bytes is not None
    assert fits.peak_memory_bytes <= parse_bytes(LIMIT)
    over = run_isolated(_trial(answer + GRANULARITY))
    assert over.status == "oom", (over.status, over.peak_memory_bytes)
    assert "exceeded --memory-limit" in (over.error or "")


def test_the_search_ran_both_sides_of_the_boundary(search: Search) -> None:
    data = search.data
    answer = data["max_batch_size"]
    by_size: dict[int, list[dict]] = {}
    for t in data["trials"]:
        by_size.setdefault(t["batch_size"], []).append(t)
    # the answer ran and passed every time: once on a repeatable boundary, twice only
    # when the search said why; the next multiple failed
    twice = any("verified a second time" in note for note in data["notes"])
    assert len(by_size[answer]) == (2 if twice else 1)
    assert all(t["fits"] for t in by_size[answer])
    assert [t["status"] for t in by_size[answer + GRANULARITY]] == ["oom"]
    assert data["smallest_failure"] == answer + GRANULARITY
    assert data["limited_by"] == "memory" and data["uncertain_band"] is None
    assert all(t["batch_size"] % GRANULARITY == 0 for t in data["trials"])
    # memory is linear here: the exact answer in at most 6 trials, verification included
    # (usually 4–5: two probes, the jump, the boundary's two sides)
    assert len(data["trials"]) <= 6, [(t["batch_size"], t["reason"]) for t in data["trials"]]
    fit = data["memory_fit"]
    assert fit["r2"] > 0.99 and fit["m_bytes_per_sample"] > 128 * 1024


def test_the_json_contract(search: Search) -> None:
    data = search.data
    assert set(data) >= {"max_batch_size", "trials", "seconds", "memory_fit", "uncertain_band"}
    assert data["budget_bytes"] == data["limit_bytes"] == parse_bytes(LIMIT)
    assert data["budget_source"] == "--memory-limit"
    assert data["granularity"] == GRANULARITY and data["margin"] == 0
    assert data["seconds"] >= sum(t["seconds"] for t in data["trials"])
    for t in data["trials"]:
        assert {"batch_size", "status", "peak_memory_bytes", "seconds", "error"} <= set(t)
        if t["status"] == "ok":
            assert t["peak_memory_bytes"] <= data["limit_bytes"]


def test_stdout_has_the_answer_the_trials_and_the_time(search: Search) -> None:
    answer = search.data["max_batch_size"]
    n = len(search.data["trials"])
    assert f"Largest batch size: {answer}" in search.out
    assert f"batch size {answer + GRANULARITY} does not" in search.out
    assert "Peak memory" in search.out and "oom" in search.out
    assert f"{n} trials in " in search.out
    # progress and messages go to stderr, one verdict per trial
    assert search.err.count("batch size") >= n
    assert "wrote m.json" in search.err


# ----------------------------------------------------------------------- bad inputs

CASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "limit not a size": (("--memory-limit", "lots"), ("--memory-limit", "'lots'")),
    "limit below the model": (
        ("--memory-limit", "100KiB"),
        ("--memory-limit 100 KiB", "simplecnn", "weights and gradients"),
    ),
    "margin eats the model": (
        ("--memory-limit", "400KiB", "--margin", "0.5"),
        ("margin", "simplecnn"),
    ),
    "granularity 0": (("--granularity", "0"), ("--granularity 0",)),
    "margin 1": (("--margin", "1"), ("--margin 1", "[0, 1)")),
    "margin negative": (("--margin", "-0.2"), ("--margin -0.2",)),
    "start not a multiple": (("--start", "12", "--granularity", "8"), ("--start 12",)),
    "steps 0": (("--steps", "0"), ("--steps 0",)),
    "threads 0": (("--threads", "0"), ("--threads 0",)),
    "json folder missing": (("--json", "no/such/dir/m.json"), ("--json", "no/such/dir")),
    "device absent": (("--device", "cuda"), ("'cuda'", "not present")),
    "device unknown": (("--device", "tpu"), ("'tpu'",)),
}


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[CliResult]]]:
    root = tmp_path_factory.mktemp("maxbs_bad")
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield {
            name: pool.submit(run_cli, "maxbs", "simplecnn", *args, cwd=root)
            for name, (args, _) in CASES.items()
        }


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line(bad: dict[str, Future[CliResult]], name: str) -> None:
    import torch

    if name == "device absent" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    code, out, err = bad[name].result()
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("batchscope: error: ")
    for text in CASES[name][1]:
        assert text in lines[0], (text, lines[0])
    assert out == ""  # nothing was searched


def test_help_explains_the_search(tmp_path: Path) -> None:
    code, out, _ = run_cli("maxbs", "--help", cwd=tmp_path)
    assert code == 0
    for flag in ("--memory-limit", "--granularity", "--margin", "--json", "--verify-repeats"):
        assert flag in out
