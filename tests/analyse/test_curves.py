"""Tests for batchscope.analyse.curves: known parameters recovered within their intervals, intervals
that shrink with more data, the U-shape test, and reading tables for ``batchscope fit``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from batchscope.analyse.curves import fit_throughput_model, fit_time_model
from batchscope.analyse.fit_table import fit_table, parse_value, read_table
from batchscope.analyse.ushape import detect_u_shape
from batchscope.errors import UsageError

TRUE_TIME = {"c": 0.5, "alpha": 0.8, "t_min": 0.002}
TRUE_THROUGHPUT = {"x_max": 5000.0, "b_half": 60.0}
B8 = 2.0 ** np.arange(3, 11)  # 8 .. 1024, 8 points
SEEDS = Path(__file__).resolve().parents[2] / "examples" / "seed_tables"


def time_curve(b: np.ndarray) -> np.ndarray:
    return TRUE_TIME["c"] / b ** TRUE_TIME["alpha"] + TRUE_TIME["t_min"]


def throughput_curve(b: np.ndarray) -> np.ndarray:
    return TRUE_THROUGHPUT["x_max"] * b / (b + TRUE_THROUGHPUT["b_half"])


def noisy(y: np.ndarray, rel: float, seed: int) -> np.ndarray:
    return y * (1 + rel * np.random.default_rng(seed).standard_normal(len(y)))


def width(fit, name: str) -> float:  # type: ignore[no-untyped-def]
    return fit.params[name].high - fit.params[name].low


# ---------------------------------------------------------------- known parameters


def test_time_model_recovers_known_parameters_within_95_intervals() -> None:
    y = time_curve(B8)
    fit = fit_time_model(B8, noisy(y, 0.02, seed=1), 0.02 * y)
    assert fit.model == "time_per_sample" and fit.n == 8 and fit.dof == 5
    assert fit.weighted and fit.covariance_ok and fit.ok, fit.verdict
    for name, true in TRUE_TIME.items():
        e = fit.params[name]
        assert e.low <= true <= e.high, (name, e)
        assert e.low < e.value < e.high
    assert fit.r2 > 0.99
    assert "fits within the noise" in fit.verdict


def test_throughput_model_recovers_known_parameters_within_95_intervals() -> None:
    x = throughput_curve(B8)
    fit = fit_throughput_model(B8, noisy(x, 0.02, seed=2), 0.02 * x)
    assert fit.model == "throughput" and fit.dof == 6 and fit.ok, fit.verdict
    for name, true in TRUE_THROUGHPUT.items():
        e = fit.params[name]
        assert e.low <= true <= e.high, (name, e)


@pytest.mark.parametrize("model", ["time", "throughput"])
def test_intervals_cover_the_truth_about_95_percent_of_the_time(model: str) -> None:
    """Over 200 noisy draws each 95 % interval holds the true value in ~95 % of them."""
    covered = {k: 0 for k in (TRUE_TIME if model == "time" else TRUE_THROUGHPUT)}
    runs = 200
    for seed in range(runs):
        if model == "time":
            y = time_curve(B8)
            fit = fit_time_model(B8, noisy(y, 0.02, seed), 0.02 * y)
            truth = TRUE_TIME
        else:
            y = throughput_curve(B8)
            fit = fit_throughput_model(B8, noisy(y, 0.02, seed), 0.02 * y)
            truth = TRUE_THROUGHPUT
        for name, true in truth.items():
            covered[name] += fit.params[name].low <= true <= fit.params[name].high
    for name, hits in covered.items():
        # binomial sd at 95 % over 200 draws is 1.5 %: 88 % .. 99.5 % is > 4 sd wide
        assert 0.88 <= hits / runs <= 0.995, (name, hits / runs)


def test_exact_data_gives_the_exact_parameters() -> None:
    fit = fit_time_model(B8, time_curve(B8))
    for name, true in TRUE_TIME.items():
        assert fit.params[name].value == pytest.approx(true, rel=1e-5)
    assert fit.predict(100.0) == pytest.approx(float(time_curve(np.array([100.0]))[0]), rel=1e-6)
    assert not fit.weighted and fit.chi2_p is None
    assert fit.ok and "no standard errors given" in fit.verdict


def test_intervals_shrink_with_more_points_and_less_noise() -> None:
    many = np.geomspace(8, 1024, 32)
    few_fit = fit_time_model(B8, noisy(time_curve(B8), 0.02, 3), 0.02 * time_curve(B8))
    many_fit = fit_time_model(many, noisy(time_curve(many), 0.02, 3), 0.02 * time_curve(many))
    quiet_fit = fit_time_model(B8, noisy(time_curve(B8), 0.005, 3), 0.005 * time_curve(B8))
    for name in TRUE_TIME:
        assert width(many_fit, name) < width(few_fit, name), name
        assert width(quiet_fit, name) < 0.5 * width(few_fit, name), name
    x_few = fit_throughput_model(B8, noisy(throughput_curve(B8), 0.02, 4))
    x_many = fit_throughput_model(many, noisy(throughput_curve(many), 0.02, 4))
    for name in TRUE_THROUGHPUT:
        assert width(x_many, name) < width(x_few, name), name


def test_three_points_have_no_intervals_and_the_verdict_says_so() -> None:
    b = np.array([8.0, 64.0, 512.0])
    fit = fit_time_model(b, time_curve(b))
    assert fit.dof == 0 and not fit.covariance_ok
    for e in fit.params.values():
        assert math.isinf(e.low) and math.isinf(e.high) and not e.known
        assert e.to_dict()["low"] is None  # JSON has no infinity
    assert "no 95 % intervals" in fit.verdict and "at least 4" in fit.verdict
    four = fit_time_model(
        np.array([8.0, 32.0, 128.0, 512.0]),
        noisy(time_curve(np.array([8.0, 32.0, 128.0, 512.0])), 0.01, 5),
    )
    assert four.covariance_ok and all(e.known for e in four.params.values())


def test_to_dict_is_the_contract_and_json_safe() -> None:
    fit = fit_time_model(B8, noisy(time_curve(B8), 0.02, 6))
    d = fit.to_dict()
    assert {"model", "formula", "params", "r2", "n", "ok", "verdict"} <= set(d)
    assert set(d["params"]) == {"c", "alpha", "t_min"}
    assert {"value", "low", "high", "determined"} <= set(d["params"]["alpha"])
    assert d["formula"] == "T(b) = c / b^alpha + t_min"
    json.dumps(d, allow_nan=False)
    x = fit_throughput_model(B8, throughput_curve(B8)).to_dict()
    assert set(x["params"]) == {"x_max", "b_half"}
    assert x["formula"] == "X(b) = x_max * b / (b + b_half)"


def test_bad_input_raises_value_error() -> None:
    with pytest.raises(ValueError, match="positive"):
        fit_time_model([8, 16, 32], [0.1, -0.1, 0.1])
    with pytest.raises(ValueError, match="batch sizes"):
        fit_time_model([8, 16], [0.1, 0.2, 0.3])


# ---------------------------------------------------------------- the U shape

U_B = np.array([8.0, 16.0, 32.0, 64.0, 128.0, 256.0])


def test_a_clear_u_shape_is_detected_and_the_time_model_does_not_fit() -> None:
    times = np.array([10.0, 8.0, 6.0, 5.0, 6.5, 8.0])
    spreads = np.full(6, 0.2)
    u = detect_u_shape(U_B, times, spreads)
    assert u.present and u.judged and u.b_min == 64 and u.b_rise == 256
    assert u.rise == pytest.approx(0.6)
    assert u.message.startswith("a U shape: the time per sample falls from b=8 to b=64 (-50%)")
    fit = fit_time_model(U_B, times, spreads)
    assert not fit.ok and not fit.meaningful
    assert fit.verdict.startswith("does not fit: the time rises again after b=64")
    assert "(a U shape)" in fit.verdict and "cannot express" in fit.verdict
    x = fit_throughput_model(U_B, 1 / times, spreads / times**2)
    assert not x.ok and "falls again after b=64" in x.verdict


def test_a_wiggle_within_the_noise_is_not_a_u() -> None:
    times = np.array([10.0, 8.0, 6.0, 5.0, 5.1, 5.05])
    u = detect_u_shape(U_B, times, np.full(6, 0.3))
    assert not u.present and u.judged
    assert "falls to b=64, and the rise after it (+2% by b=128) is within the noise" in u.message


def test_a_monotone_curve_is_not_a_u() -> None:
    u = detect_u_shape(B8, time_curve(B8), 0.02 * time_curve(B8))
    assert not u.present and u.rise == 0.0 and u.b_rise is None
    assert "keeps falling" in u.message


def test_a_bump_before_a_lower_minimum_is_not_a_u() -> None:
    times = np.array([10.0, 8.0, 9.0, 6.0, 5.0, 4.0])
    u = detect_u_shape(U_B, times, np.full(6, 0.1))
    assert not u.present and u.verdict == "no_u"
    assert "falls on to the largest batch size (b=256), with a bump on the way" in u.message


def test_without_spreads_a_rise_is_described_not_judged() -> None:
    times = np.array([10.0, 8.0, 6.0, 5.0, 6.5, 8.0])
    for spreads in (None, np.zeros(6)):
        u = detect_u_shape(U_B, times, spreads)
        assert not u.present and not u.judged and u.verdict == "not_judged"
        assert u.message.startswith("not judged: 0 batch sizes with a 95 % interval")
        assert "lowest at b=64 and rises +60% by b=256" in u.message
        assert u.b_min == 64 and u.rise == pytest.approx(0.6)


def test_rising_from_the_smallest_size_has_no_falling_arm() -> None:
    u = detect_u_shape(U_B, np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), np.full(6, 0.1))
    assert not u.present and "no falling arm" in u.message


# ---------------------------------------------------------------- the seeds' GPU tables


@pytest.mark.parametrize(
    ("name", "b_min", "rise"),
    [("seed000_gpu.csv", 64, 12.8 / 9.3 - 1), ("seed003_gpu.csv", 64, 11.35 / 7.18 - 1)],
)
def test_seed_tables_rise_after_64_but_without_error_bars_nothing_is_judged(
    name: str, b_min: int, rise: float
) -> None:
    result = fit_table(read_table(str(SEEDS / name)))
    assert result.table.kind == "per-epoch" and result.table.batch_sizes == [16, 32, 64, 128, 256]
    u = result.u_shape
    assert u.b_min == b_min and u.rise == pytest.approx(rise) and not u.judged and not u.present
    assert not result.time.ok and result.time.r2 < 0.6
    assert "cannot be told whether that is a U shape or noise" in result.time.verdict
    assert not result.throughput.ok


# ---------------------------------------------------------------- tables


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("14.1 seconds", "per-epoch", 14.1),
        ("9.44s", "per-epoch", 9.44),
        ("250 ms", "per-step", 0.25),
        ("2 min", "per-epoch", 120.0),
        ("1,234.5 samples/s", "throughput", 1234.5),
        ("7", "per-sample", 7.0),
        ("abc", "per-epoch", None),
        ("9.44 parsecs", "per-epoch", None),
        ("12 ms", "throughput", None),
    ],
)
def test_parse_value(text: str, kind: str, value: float | None) -> None:
    got = parse_value(text, kind)
    assert got == (pytest.approx(value) if value is not None else None)


def test_read_table_averages_duplicates_with_a_note_and_uses_spreads(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "batch_size,step_time_s,step_time_iqr_s\n8,0.1,0.01\n16,0.15,0.01\n16,0.17,0.03\n"
        "32,0.3,0.02\n"
    )
    t = read_table(str(path))
    assert t.kind == "per-step" and t.spread_column == "step_time_iqr_s"
    assert t.batch_sizes == [8, 16, 32]
    assert t.values[1] == pytest.approx(0.16) and t.spreads == pytest.approx([0.01, 0.02, 0.02])
    assert any("batch size 16 appears 2 times (lines 3, 4): averaged" in n for n in t.notes)
    result = fit_table(t)
    # per-step times are divided by the batch size before the fit
    assert result.time.model == "time_per_sample" and result.time.weighted


def test_read_table_reads_the_seeds_markdown_table(tmp_path: Path) -> None:
    path = tmp_path / "seed000.md"
    path.write_text(
        "| **Batch Size** | **Training Time (GPU)** |\n|----|----|\n| 16 | 14.1 seconds |\n"
        "| 32 | 9.7 seconds |\n| 64 | 9.3 seconds |\n"
    )
    t = read_table(str(path))
    assert t.value_column == "**Training Time (GPU)**" and t.kind == "per-epoch"
    assert t.values == pytest.approx([14.1, 9.7, 9.3])


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("bs_x,time_s\n1,2\n", "no batch_size column"),
        ("batch_size,foo\n1,2\n2,3\n3,4\n", "no time or throughput column"),
        ("batch_size,time_s\n8,1\n16,fast\n32,2\n", "line 3 \\(batch size 16\\): 'fast'"),
        ("batch_size,time_s\n8,1\n16,2\n", "3 parameters.*at least 3 points.*at least 4"),
        ("batch_size,time_s\n8,1\n16,-2\n32,3\n", "greater than zero"),
        ("batch_size,time_s\n8.5,1\n16,2\n32,3\n", "'8.5' is not a whole number"),
        ("batch_size,time_s\n8,1\n16\n32,3\n", "line 3 has 1 field"),
        ("", "is empty"),
    ],
)
def test_read_table_rejects_bad_input_in_one_line(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(UsageError, match=match) as info:
        read_table(str(path))
    assert "\n" not in str(info.value)


def test_read_table_rejects_missing_binary_and_unknown_columns(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        read_table(str(tmp_path / "nope.csv"))
    with pytest.raises(UsageError, match="is a folder"):
        read_table(str(tmp_path))
    binary = tmp_path / "x.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    with pytest.raises(UsageError, match="not a CSV"):
        read_table(str(binary))
    ok = tmp_path / "ok.csv"
    ok.write_text("batch_size,time_s,wall\n8,1,2\n16,2,3\n32,3,4\n")
    with pytest.raises(UsageError, match="--time-column 'nope' is not a column"):
        read_table(str(ok), time_column="nope")
    with pytest.raises(UsageError, match="cannot tell what column 'wall' holds"):
        read_table(str(ok), time_column="wall")
    assert read_table(str(ok), time_column="wall", kind="per-sample").values == [2, 3, 4]
    with pytest.raises(UsageError, match="--kind 'fast' is not one of"):
        read_table(str(ok), kind="fast")


def test_a_bump_that_falls_back_is_not_called_a_u() -> None:
    # falls beyond the noise to b=32, rises +25 % at b=64, back near the minimum at b=128
    b = np.array([16, 32, 64, 128])
    errors = np.array([1.0, 1.0, 1.0, 1.0])
    u = detect_u_shape(b, np.array([80.0, 65.0, 81.0, 66.0]), errors)
    assert not u.present and u.judged
    assert "a bump" in u.message and "back within the noise" in u.message and "b=128" in u.message
    # the same rise that stays up at the largest size is a U
    u = detect_u_shape(b, np.array([80.0, 65.0, 81.0, 90.0]), errors)
    assert u.present and u.message.startswith("a U shape")


def test_a_rise_without_a_falling_arm_is_not_a_u() -> None:
    """The old demo's shape: flat to b=32 within the noise, then up: no U, whatever the rise."""
    b = np.array([16, 32, 64, 128])
    u = detect_u_shape(b, np.array([65.5, 65.0, 81.0, 90.0]), np.array([6.6, 6.1, 3.3, 2.0]))
    assert not u.present and "no falling arm" in u.message
