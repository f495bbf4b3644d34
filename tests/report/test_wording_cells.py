"""Table cells stay short enough for an 80-column table whatever the data."""

from __future__ import annotations

from batchscope.analyse.points import Point
from batchscope.report.wording import step_time, steps_count


def _point(step: float, low: float, high: float, rounds: list[int]) -> Point:
    return Point(
        batch_size=8,
        n_trials=len(rounds),
        step_time_s=step,
        step_time_low_s=low,
        step_time_high_s=high,
        log_se=0.1,
        n_steps=sum(rounds),
        steps_per_round=rounds,
    )


def test_rounds_of_equal_length_read_as_a_product_and_unequal_ones_as_a_total() -> None:
    assert steps_count(_point(0.1, 0.09, 0.11, [20, 20, 20])) == "3×20"
    assert steps_count(_point(0.1, 0.09, 0.11, [25, 20, 22])) == "67"
    assert steps_count(_point(0.1, 0.09, 0.11, [12])) == "12"


def test_a_wide_interval_is_written_without_an_exponent() -> None:
    text = step_time(_point(0.504, 0.123, 2.06, [10, 10, 10]))
    assert text == "504 ms [123–2,060]"
    assert "e+" not in step_time(_point(12.5, 11.0, 13_400.0, [10]))
