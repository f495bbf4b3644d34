"""Tests for batchscope.analyse.stats: MAD outliers, warm-up and noise warnings, merged repeats.

Every expected figure below is worked out by hand in the comments.
"""

from __future__ import annotations

import math
import statistics

import pytest

from batchscope.analyse.stats import (
    group_findings,
    iqr,
    mad,
    merge_repeats,
    modified_z_scores,
    outlier_indices,
    repeat_warnings,
    slow_first_step,
    step_findings,
    step_warnings,
)
from batchscope.core.results import StepStats, TrialResult


def trial(
    times: list[float], *, batch_size: int = 32, repeat: int = 0, **kw: object
) -> TrialResult:
    stats = StepStats.from_samples(times)
    return TrialResult(
        device="cpu",
        batch_size=batch_size,
        repeat=repeat,
        step_time_s=stats,
        step_times_s=list(times),
        samples_per_s=batch_size / stats.median,
        **{"warmup_steps": 1, **kw},  # type: ignore[arg-type]
    )


#: 20 steps within ±1 % of 100 ms, no outlier, first step ordinary
CLEAN = [0.100 * (1 + 0.005 * ((i * 7) % 5 - 2)) for i in range(20)]


def test_mad_and_modified_z_by_hand() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 100.0]
    # median 3; |x - 3| = 2, 1, 0, 1, 97 -> MAD 1
    assert mad(values) == 1.0
    z = modified_z_scores(values)
    assert z[4] == pytest.approx(0.6745 * 97)
    assert z[0] == pytest.approx(-0.6745 * 2)
    assert outlier_indices(values) == [4]


def test_zero_mad_falls_back_to_mean_absolute_deviation() -> None:
    values = [5.0, 5.0, 5.0, 5.0, 9.0]
    # MAD 0; mean |x - 5| = 4/5 = 0.8; z(9) = 4 / (1.253314 * 0.8) = 3.99 > 3.5
    assert mad(values) == 0.0
    assert modified_z_scores(values)[4] == pytest.approx(4 / (1.253314 * 0.8))
    assert outlier_indices(values) == [4]
    assert modified_z_scores([2.0] * 6) == [0.0] * 6
    assert outlier_indices([2.0] * 6) == []


def test_too_few_values_have_no_outliers() -> None:
    assert outlier_indices([1.0, 1.0, 50.0]) == []


def test_slow_first_step_needs_both_the_z_score_and_the_ratio() -> None:
    rest = [0.10, 0.11, 0.09, 0.10, 0.12, 0.08]
    # median of the rest 0.10; |dev| sorted 0, 0, .01, .01, .02, .02 -> MAD 0.01
    # 0.16: z = 0.6745 * 0.06 / 0.01 = 4.05 > 3.5 and 1.6x the median -> slow
    assert slow_first_step([0.16, *rest]) == pytest.approx(1.6)
    # 0.14: z = 2.7 -> not far enough
    assert slow_first_step([0.14, *rest]) is None
    # a tight rest makes 0.13 a huge z-score, but 1.3x the median is not "far slower"
    assert slow_first_step([0.13] + [0.1, 0.1001, 0.0999, 0.1, 0.1002, 0.0998]) is None


def test_clean_trial_has_no_warnings() -> None:
    assert step_warnings(trial(CLEAN)) == []


def test_noisy_trial_warns_with_the_figure() -> None:
    times = [0.100, 0.130] * 10
    # quartiles 0.100 and 0.130: IQR 0.030 of median 0.115 = 26 %
    (warning,) = step_warnings(trial(times))
    assert warning.startswith("cpu, batch size 32: noisy machine")
    assert "26%" in warning
    assert "--repeats" in warning


def test_outlier_trial_counts_outliers_and_hints() -> None:
    times = list(CLEAN)
    times[7] = 0.5
    (warning,) = step_warnings(trial(times, repeat=1))
    assert warning.startswith("cpu, batch size 32, repeat 2: 1 of 20 step times")
    assert "outlier" in warning and "close them" in warning
    assert "500 ms" in warning


def test_slow_first_step_warns_warmup_and_is_not_also_an_outlier() -> None:
    times = [0.5, *CLEAN[1:]]
    warnings = step_warnings(trial(times, warmup_steps=0))
    assert len(warnings) == 1
    assert "warm-up too short" in warnings[0] and "raise --warmup" in warnings[0]
    assert "5.0×" in warnings[0]


def test_one_slow_step_after_a_warm_up_is_the_optimizer_set_up_not_a_short_warm_up() -> None:
    # after warm-up the optimizer is restored and builds its state again in step 1
    assert step_warnings(trial([0.5, *CLEAN[1:]], warmup_steps=3)) == []
    # two slow steps: the warm-up was too short after all
    warnings = step_warnings(trial([0.5, 0.45, *CLEAN[2:]], warmup_steps=3))
    assert len(warnings) == 1 and "warm-up too short" in warnings[0]


def test_failed_trial_has_no_step_warnings() -> None:
    assert step_warnings(TrialResult(device="cpu", batch_size=8, status="oom")) == []


def test_merge_repeats_by_hand() -> None:
    trials = [
        trial([1.0, 2.0, 3.0], repeat=0),  # median 2, IQR 1
        trial([2.0, 3.0, 4.0], repeat=1),  # median 3, IQR 1
        trial([4.0, 5.0, 6.0, 7.0], repeat=2),  # median 5.5, IQR 6.25 - 4.75 = 1.5
        TrialResult(device="cpu", batch_size=32, status="oom", repeat=3),  # left out
    ]
    m = merge_repeats(trials)
    assert m.n_repeats == 3
    assert m.medians_s == [2.0, 3.0, 5.5]
    assert m.median_s == 3.0
    assert m.within_iqr_s == 1.0  # median of 1, 1, 1.5
    assert m.across_range_s == 3.5
    assert m.across_iqr_s == pytest.approx(4.25 - 2.5)  # quartiles of 2, 3, 5.5
    assert m.spread_s == pytest.approx(1.75)
    every = [1.0, 2.0, 3.0, 2.0, 3.0, 4.0, 4.0, 5.0, 6.0, 7.0]
    assert m.n_steps == 10
    assert m.mean_s == pytest.approx(statistics.fmean(every))
    assert m.stdev_s == pytest.approx(statistics.stdev(every))


def test_merge_repeats_without_raw_times_pools_from_step_stats() -> None:
    a = trial([1.0, 2.0, 3.0])
    b = trial([2.0, 3.0, 4.0], repeat=1)
    a.step_times_s = []
    b.step_times_s = []
    m = merge_repeats([a, b])
    assert m.mean_s == pytest.approx(2.5)
    assert m.stdev_s == pytest.approx(statistics.stdev([1, 2, 3, 2, 3, 4]))


def test_merge_repeats_refuses_mixed_or_empty_input() -> None:
    with pytest.raises(ValueError, match="several"):
        merge_repeats([trial([1.0]), trial([1.0], batch_size=64)])
    with pytest.raises(ValueError, match="no successful"):
        merge_repeats([TrialResult(device="cpu", batch_size=8, status="oom")])


def test_repeat_warnings_fire_only_when_repeats_disagree() -> None:
    steady = merge_repeats([trial(CLEAN), trial(CLEAN, repeat=1)])
    assert repeat_warnings(steady) == []
    shifted = [t * 1.2 for t in CLEAN]
    m = merge_repeats([trial(CLEAN), trial(shifted, repeat=1)])
    (warning,) = repeat_warnings(m)
    # medians 100 ms and 120 ms: range 20 ms of median 110 ms = 18 %
    assert "2 repeats disagree" in warning and "18%" in warning


def test_iqr_matches_numpy_default() -> None:
    import numpy as np

    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    q75, q25 = np.percentile(values, [75, 25])
    assert iqr(values) == pytest.approx(q75 - q25)
    assert math.isclose(mad([1.0]), 0.0)


def test_findings_of_one_kind_are_grouped_into_one_line() -> None:
    noisy = [0.100, 0.130] * 10  # IQR 26 % of the median
    very = [0.100, 0.150] * 10  # quartiles 0.100 and 0.150: IQR 40 % of 0.125
    findings = step_findings(trial(noisy)) + step_findings(trial(very, batch_size=64, repeat=1))
    findings += step_findings(trial([0.5, *CLEAN[1:]], batch_size=128, warmup_steps=0))
    lines = group_findings(findings)
    assert len(lines) == 2
    assert lines[0] == (
        "cpu: noisy machine: step-time IQR/median = 26% at b=32, 40% at b=64 (repeat 2); "
        "rerun with more --steps or --repeats, on a quieter machine"
    )
    # a kind found once keeps its full sentence
    assert lines[1].startswith("cpu, batch size 128: the first measured step took 500 ms")
