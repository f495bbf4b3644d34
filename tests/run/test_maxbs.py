"""The batch-size search's logic, driven by simulated trials (no processes).

A simulated trial behaves like the runner's CPU trials under a memory limit: it
reports its peak memory, and is "oom" (peak kept) when the peak is over the limit,
or "oom" without a peak when it hits a hard cap. Real trials are exercised in
tests/cli/test_maxbs_cli.py.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable

import pytest

from batchscope.core.results import StepStats, TrialResult
from batchscope.errors import BatchscopeError, UsageError
from batchscope.run.maxbs import MaxBatchResult, _conclude, _Search, _search, find_max_batch_size

MiB = 1024**2


class Simulator:
    """Trials of a workload whose peak memory is ``memory(b)`` bytes."""

    def __init__(
        self,
        memory: Callable[[int], float],
        limit: int,
        *,
        hard_cap: float | None = None,
        outcome: Callable[[int, int], str | None] | None = None,
    ) -> None:
        self.memory = memory
        self.limit = limit
        self.hard_cap = hard_cap
        self.outcome = outcome  # (batch size, run index at that size) -> forced status
        self.runs: list[int] = []

    def __call__(self, batch_size: int, index: int) -> TrialResult:
        n_before = self.runs.count(batch_size)
        self.runs.append(batch_size)
        forced = self.outcome(batch_size, n_before) if self.outcome else None
        peak = int(self.memory(batch_size))
        if forced is not None:
            return TrialResult(device="cpu", batch_size=batch_size, status=forced, error="forced")
        if self.hard_cap is not None and peak > self.hard_cap:
            return TrialResult(
                device="cpu",
                batch_size=batch_size,
                status="oom",
                error="RuntimeError: DefaultCPUAllocator: can't allocate memory",
            )
        trial = TrialResult(
            device="cpu",
            batch_size=batch_size,
            peak_memory_bytes=peak,
            step_time_s=StepStats.from_samples([0.1]),
        )
        if peak > self.limit:
            trial.status = "oom"
            trial.error = "peak memory exceeded --memory-limit"
        return trial


def search(
    sim: Simulator,
    *,
    granularity: int = 1,
    start: int = 8,
    cap: int = 100_000,
    verify_repeats: int = 1,
    state_class: type[_Search] = _Search,
) -> MaxBatchResult:
    state = state_class(sim, sim.limit, granularity, lambda kind, payload: None)
    _search(state, b1=start, cap=cap, verify_repeats=verify_repeats)
    return _conclude(
        state,
        cap=cap,
        cap_source="training set",
        notes=[],
        seconds=0.0,
        budget_bytes=sim.limit,
        limit_bytes=sim.limit,
        budget_source="--memory-limit",
        workload="sim",
        device="cpu",
        margin=0.0,
    )


def linear(a: float, m: float) -> Callable[[int], float]:
    return lambda b: a + m * b


def truth(a: float, m: float, limit: float, granularity: int = 1) -> int:
    b = int((limit - a) // m)
    return b // granularity * granularity


def assert_sound(result: MaxBatchResult, sim: Simulator) -> None:
    """What every answer must satisfy, whatever the memory curve."""
    if result.max_batch_size is None:
        return
    answer = result.max_batch_size
    runs_at_answer = [t for t in result.trials if t.batch_size == answer]
    assert runs_at_answer, "the answer was never run"
    assert all(t.fits for t in runs_at_answer), "the answer failed at least once"
    assert answer % result.granularity == 0
    assert sim.runs == [t.batch_size for t in result.trials]  # the record is complete


@pytest.mark.parametrize(
    ("a", "m", "limit"),
    [
        (20 * MiB, 207 * 1024, 300 * MiB),  # simplecnn-like: big fixed part
        (150 * MiB, 16 * MiB, 4096 * MiB),  # resnet18-at-192-like
        (1 * MiB, 3 * MiB, 64 * MiB),  # per-sample part dominates
        (500 * MiB, 1000, 600 * MiB),  # tiny samples: an answer in the tens of thousands
    ],
)
def test_linear_memory_exact_answer_in_at_most_five_trials(a: float, m: float, limit: int) -> None:
    sim = Simulator(linear(a, m), limit)
    result = search(sim, cap=10**6)
    expected = truth(a, m, limit)
    assert result.max_batch_size == expected
    assert result.smallest_failure == expected + 1
    assert result.limited_by == "memory"
    assert result.uncertain_band is None
    assert result.verified_runs == 1  # a repeatable boundary is verified once
    assert len(result.trials) <= 5, [(t.batch_size, t.reason) for t in result.trials]
    assert_sound(result, sim)


def test_granularity_answer_is_the_largest_multiple_and_the_next_multiple_fails() -> None:
    a, m, limit = 40 * MiB, 2.3 * MiB, 1000 * MiB
    sim = Simulator(linear(a, m), limit)
    result = search(sim, granularity=32, start=32)
    expected = truth(a, m, limit, 32)
    assert result.max_batch_size == expected
    assert result.smallest_failure == expected + 32
    assert all(t.batch_size % 32 == 0 for t in result.trials)
    assert len(result.trials) <= 6
    assert_sound(result, sim)


def test_noisy_linear_memory_still_exact_within_six_trials() -> None:
    rng = random.Random(1)
    a, m, limit = 100 * MiB, 1.5 * MiB, 2000 * MiB
    noise = {b: rng.uniform(-0.02, 0.02) * MiB for b in range(1, 5000)}  # ±20 KiB, repeatable
    sim = Simulator(lambda b: a + m * b + noise[b], limit)
    result = search(sim)
    boundary = 0  # the last size of the first run of sizes that fit
    while a + m * (boundary + 1) + noise[boundary + 1] <= limit:
        boundary += 1
    assert result.max_batch_size == boundary
    assert len(result.trials) <= 6
    assert_sound(result, sim)


def test_convex_memory_converges_and_never_returns_an_unrun_size() -> None:
    # a quadratic term: the line keeps undershooting; bisection must still close in
    sim = Simulator(lambda b: 50 * MiB + 0.2 * MiB * b + 0.004 * MiB * b * b, 800 * MiB)
    result = search(sim)
    ok = [b for b in range(1, 10_000) if sim.memory(b) <= sim.limit]
    assert result.max_batch_size == max(ok)
    assert result.smallest_failure == max(ok) + 1
    assert len(result.trials) <= 12
    assert_sound(result, sim)


def test_hard_failures_without_a_peak_are_bisected() -> None:
    # over 1.2× the limit the allocator itself fails: no peak to learn from
    sim = Simulator(linear(30 * MiB, 4 * MiB), 500 * MiB, hard_cap=600 * MiB)
    result = search(sim)
    assert result.max_batch_size == truth(30 * MiB, 4 * MiB, 500 * MiB)
    assert_sound(result, sim)


def test_the_cap_limits_the_answer_when_everything_fits() -> None:
    sim = Simulator(linear(10 * MiB, 1000), 4096 * MiB)
    result = search(sim, cap=480)
    assert result.max_batch_size == 480
    assert result.limited_by == "training set"
    assert result.smallest_failure is None
    assert max(sim.runs) == 480  # never above the cap
    assert result.verified_runs == 1
    assert len(result.trials) <= 3
    assert_sound(result, sim)


def test_first_size_too_big_searches_downwards() -> None:
    sim = Simulator(linear(10 * MiB, 10 * MiB), 100 * MiB)
    result = search(sim, start=64)
    assert result.max_batch_size == 9
    assert result.smallest_failure == 10
    assert_sound(result, sim)


def test_nothing_fits_returns_none_and_says_so() -> None:
    sim = Simulator(linear(200 * MiB, 1 * MiB), 100 * MiB)
    result = search(sim, start=8)
    assert result.max_batch_size is None
    assert result.verified_runs == 0
    assert sorted(set(sim.runs))[0] == 1  # it tried the smallest size
    assert any("not even batch size 1 fits" in note for note in result.notes)
    assert result.to_dict()["max_batch_size"] is None


def test_a_failure_on_reverification_moves_below_and_reports_a_band() -> None:
    a, m, limit = 20 * MiB, 1 * MiB, 200 * MiB  # boundary 180

    def flaky(b: int, nth: int) -> str | None:
        # 178..180 pass the first time and fail the second: not repeatable
        return "oom" if 178 <= b <= 180 and nth >= 1 else None

    sim = Simulator(linear(a, m), limit, outcome=flaky)
    result = search(sim, verify_repeats=2)
    assert result.max_batch_size is not None and result.max_batch_size < 178
    assert result.uncertain_band is not None
    lo, hi = result.uncertain_band
    assert lo >= 178 and hi <= 180 and lo <= hi
    assert result.verified_runs == 2
    assert_sound(result, sim)


def test_the_benchmarks_boundary_case_costs_two_extra_trials_not_a_restart() -> None:
    # measured on ResNet-18 at 192×192 under 4 GiB: 252 passed by 0.2 MB, then failed by
    # 0.8 MB on re-verification; the answer must be 251, found without re-bisecting
    limit = 4 * 1024**3
    m = 15.7 * MiB
    a = limit - 0.2e6 - 252 * m  # 252 fits by 0.2 MB

    def noisy_252(b: int, nth: int) -> str | None:
        return "oom" if b == 252 and nth >= 1 else None

    sim = Simulator(linear(a, m), limit, outcome=noisy_252)
    result = search(sim, verify_repeats=2)
    assert result.max_batch_size == 251
    assert result.uncertain_band == [252, 252]
    assert sim.runs.count(251) == 2
    # 2 probes, the jump, 253 (fails), 252 again (fails), 251 twice
    assert len(result.trials) <= 8, sim.runs
    assert_sound(result, sim)


@pytest.mark.parametrize("seed", range(8))
def test_random_flakiness_near_the_boundary_never_yields_a_lucky_size(seed: int) -> None:
    # sizes 170..180 fit, but each run there fails with probability 0.3
    rng = random.Random(seed)
    a, m, limit = 20 * MiB, 1 * MiB, 200 * MiB

    def flaky(b: int, nth: int) -> str | None:
        return "oom" if 170 <= b <= 180 and rng.random() < 0.3 else None

    sim = Simulator(linear(a, m), limit, outcome=flaky)
    result = search(sim, verify_repeats=2)
    answer = result.max_batch_size
    assert answer is not None
    runs = [t for t in result.trials if t.batch_size == answer]
    assert len(runs) >= 2 and all(t.fits for t in runs)
    # every size that ever failed is above the answer
    assert all(t.batch_size > answer for t in result.trials if not t.fits)
    if any(t.batch_size == b and t.fits for t in result.trials for b in range(answer + 1, 181)):
        # something above the answer also passed: that is exactly the uncertain band
        assert result.uncertain_band is not None
        lo, hi = result.uncertain_band
        assert answer < lo <= hi <= 180
    assert_sound(result, sim)


def test_verify_repeats_one_runs_the_answer_once() -> None:
    sim = Simulator(linear(20 * MiB, 1 * MiB), 200 * MiB)
    result = search(sim, verify_repeats=1)
    assert result.max_batch_size == 180
    assert result.verified_runs == 1
    assert sim.runs.count(180) == 1


def test_verify_repeats_three() -> None:
    sim = Simulator(linear(20 * MiB, 1 * MiB), 200 * MiB)
    result = search(sim, verify_repeats=3)
    assert result.max_batch_size == 180
    assert sim.runs.count(180) == 3 and result.verified_runs == 3


def test_a_crash_at_the_first_size_is_not_a_memory_answer() -> None:
    sim = Simulator(linear(1, 1), 100, outcome=lambda b, nth: "crashed")
    with pytest.raises(BatchscopeError, match="not memory"):
        search(sim)


def test_a_crash_above_is_counted_as_not_fitting_with_a_note() -> None:
    sim = Simulator(
        linear(20 * MiB, 1 * MiB), 200 * MiB, outcome=lambda b, nth: "crashed" if b > 150 else None
    )
    result = search(sim)
    assert result.max_batch_size == 150
    assert any("crashed" in note for note in result.notes)


def test_result_to_dict_has_the_contract_keys() -> None:
    import json

    sim = Simulator(linear(20 * MiB, 1 * MiB), 200 * MiB)
    data = json.loads(json.dumps(search(sim).to_dict()))
    assert data["max_batch_size"] == 180
    assert {"max_batch_size", "trials", "seconds", "memory_fit", "uncertain_band"} <= set(data)
    assert {"budget_bytes", "limited_by", "granularity", "margin"} <= set(data)
    first = data["trials"][0]
    assert {"batch_size", "status", "peak_memory_bytes", "seconds", "error"} <= set(first)
    assert data["memory_fit"]["m_bytes_per_sample"] == pytest.approx(1 * MiB)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"granularity": 0}, "--granularity 0"),
        ({"margin": 1.0}, "--margin 1.0"),
        ({"margin": -0.1}, "--margin -0.1"),
        ({"steps": 0}, "--steps 0"),
        ({"start": 12, "granularity": 8}, "--start 12"),
        ({"verify_repeats": 0}, "--verify-repeats 0"),
        ({"memory_limit_bytes": 0}, "--memory-limit"),
        ({"trial_timeout_s": 0}, "--trial-timeout 0"),
        ({"isolation": "sideways"}, "sideways"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(kwargs: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        find_max_batch_size("linear", **kwargs)


# -- shorter searches: the line rules sizes out, a repeatable boundary is verified once


@pytest.mark.parametrize("seed", range(12))
def test_seeded_random_noisy_lines_exact_boundary_verified_once(seed: int) -> None:
    rng = random.Random(100 + seed)
    a = rng.uniform(5, 500) * MiB
    m = rng.uniform(0.05, 20) * MiB
    limit = int(a + m * rng.uniform(40, 3000))
    g = rng.choice([1, 1, 8, 32])
    # repeatable noise of up to ±0.1 % of the limit, less than half a step so that the
    # boundary is one (an over-budget peak is still measured)
    amplitude = min(1e-3 * limit, 0.45 * m * g)
    noise = {b: rng.uniform(-amplitude, amplitude) for b in range(g, 4000 * g, g)}
    sim = Simulator(lambda b: a + m * b + noise[b], limit)
    result = search(sim, granularity=g, start=g * max(1, 8 // g))
    boundary = 0  # the last multiple of g of the first run of sizes that fit
    while sim.memory(boundary + g) <= limit:
        boundary += g
    assert result.max_batch_size == boundary
    assert result.smallest_failure == boundary + g
    assert result.verified_runs == 1 and sim.runs.count(boundary) == 1
    assert len(result.trials) <= 6, [(t.batch_size, t.reason) for t in result.trials]
    assert_sound(result, sim)


class StallingLine(_Search):
    """A search whose regula falsi and jumps never help, so every step bisects."""

    def interpolated(self, lo: int, hi: int) -> int | None:
        return None

    def aimed(self) -> int | None:
        return None


def test_a_bisection_never_runs_a_size_the_line_rules_out() -> None:
    a, m, limit = 30 * MiB, 1 * MiB, 1030 * MiB  # boundary 1000
    sim = Simulator(linear(a, m), limit)
    result = search(sim, state_class=StallingLine, start=8)
    assert result.max_batch_size == 1000 and result.smallest_failure == 1001
    # the line's uncertainty is 1 % of the limit (~10 sizes): once it is known, every
    # size run is within it of the boundary — none far over, none far inside
    slack = 0.01 * limit / m
    bisected = [t.batch_size for t in result.trials if t.reason == "bisect"]
    assert bisected and all(abs(b - 1000) <= slack + 1 for b in bisected), sim.runs
    # plain bisection of the bracket [512, 1024] the doubling found takes 9 steps
    assert len(bisected) <= 5, sim.runs
    assert_sound(result, sim)


def test_a_line_a_run_contradicts_is_no_longer_trusted_and_bisection_still_closes() -> None:
    # the line says 1000 fits, but from 300 on every run fails without a peak (as a hard
    # allocator failure does): once a size it was sure of fails, plain bisection rules
    sim = Simulator(
        linear(30 * MiB, 1 * MiB), 1030 * MiB, outcome=lambda b, nth: "oom" if b >= 300 else None
    )
    state = StallingLine(sim, sim.limit, 1, lambda kind, payload: None)
    _search(state, b1=8, cap=100_000, verify_repeats=1)
    assert state.model_misled
    assert state.lo == 299 and state.hi == 300


def test_a_flaky_boundary_is_verified_a_second_time() -> None:
    # 180 is on the line over the limit, but passes on its first run with a peak 5 MiB
    # below the line (a lucky reading) and fails on its second: a peak off the line by
    # more than its headroom triggers the second verification
    a, m, limit = 20 * MiB, 1 * MiB, int(199.5 * MiB)

    def memory(b: int) -> float:
        return a + m * b - (5 * MiB if b == 180 else 0)

    def second_run_fails(b: int, nth: int) -> str | None:
        return "oom" if b == 180 and nth >= 1 else None

    sim = Simulator(memory, limit, outcome=second_run_fails)
    result = search(sim)
    assert sim.runs.count(180) == 2
    assert result.max_batch_size == 179
    assert result.uncertain_band == [180, 180]
    assert any("verified a second time" in note for note in result.notes)
    assert_sound(result, sim)


@pytest.mark.parametrize("seed", range(6))
def test_a_flipped_outcome_near_the_boundary_costs_a_second_verification(seed: int) -> None:
    # sizes 170..180 fit, but each run there fails with probability 0.3
    rng = random.Random(seed)
    a, m, limit = 20 * MiB, 1 * MiB, 200 * MiB

    def flaky(b: int, nth: int) -> str | None:
        return "oom" if 170 <= b <= 180 and rng.random() < 0.3 else None

    sim = Simulator(linear(a, m), limit, outcome=flaky)
    result = search(sim)
    answer = result.max_batch_size
    assert answer is not None
    # what the search can see: a size failed below one that passed, or one size both
    # passed and failed (one unlucky failure with nothing above it passing looks like
    # a boundary, and is one as far as any run can tell)
    outcomes: dict[int, set[bool]] = {}
    for t in result.trials:
        outcomes.setdefault(t.batch_size, set()).add(t.fits)
    passed = [b for b, seen in outcomes.items() if True in seen]
    flipped = any(len(seen) > 1 for seen in outcomes.values()) or any(
        not t.fits and t.batch_size < max(passed) for t in result.trials
    )
    runs_at_answer = sim.runs.count(answer)
    if flipped:
        assert runs_at_answer >= 2
    else:
        assert runs_at_answer == 1
    assert all(t.batch_size > answer for t in result.trials if not t.fits)
    assert_sound(result, sim)


def test_default_attempt_is_two_steps() -> None:
    from batchscope.run.maxbs import ATTEMPT_STEPS

    assert ATTEMPT_STEPS == 2
    assert inspect.signature(find_max_batch_size).parameters["verify_repeats"].default == 1


def test_a_peak_off_the_line_but_far_under_the_limit_is_not_run_again() -> None:
    # a cap answer whose peak is far off a poor line (fixed costs at small sizes) and
    # far under the limit: nothing near the limit could flip, so it runs once
    sim = Simulator(lambda b: 50 * MiB + 1 * MiB * b + (40 * MiB if b >= 400 else 0), 1000 * MiB)
    result = search(sim, cap=480)
    assert result.max_batch_size == 480 and result.limited_by == "training set"
    assert sim.runs.count(480) == 1
    assert not any("verified a second time" in note for note in result.notes)


def test_a_jump_that_fails_without_a_peak_is_not_followed_by_one_size_steps_down() -> None:
    # resnet18-at-32×32-like (measured: 8, 11, 480 ✗, 479 ✗, 478 ✗, 244, …): a big fixed
    # part, so the probes barely move the peak;
    # the line allows the cap; the first sizes' peaks are flatter than the rest (fixed
    # costs that are not quite fixed), and an over-budget attempt is stopped before its
    # peak is known
    a, m, limit = 180 * MiB, 0.3 * MiB, 256 * MiB
    sim = Simulator(lambda b: a + m * max(b - 10, 0.5), limit, hard_cap=limit)
    result = search(sim, cap=480)
    expected = max(b for b in range(1, 481) if sim.memory(b) <= limit)
    assert result.max_batch_size == expected and result.smallest_failure == expected + 1
    far = [b for b in sim.runs if b > 1.5 * expected]
    assert len(far) <= 1, sim.runs  # one failed jump, then halving: not 480, 479, 478, …
    assert len(result.trials) <= 9, sim.runs
    assert_sound(result, sim)
