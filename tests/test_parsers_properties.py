"""Property-based tests of the parsers users type into: whatever the input, it either
parses to what it says or is a one-line :class:`~batchscope.errors.UsageError`, never
another exception (a traceback); and formatting then parsing gives the value back.

Covered: ``--batch-sizes`` (``parse_batch_sizes``), sizes (``parse_bytes`` and the
round trip from ``format_bytes``), durations and fractions (``parse_duration``,
``parse_fraction``, and the table reader's ``parse_value``, each with the round trip
from ``format_seconds``), ``--fit`` (``parse_fit``), ``--target`` (``parse_target``)
and the fit command's table reader (``read_table``). Example counts are kept small so the file
runs in seconds.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from batchscope.analyse.fit_table import KINDS, read_table
from batchscope.analyse.fit_table import parse_value as curves_parse_value
from batchscope.core.plan import parse_batch_sizes
from batchscope.core.target import Target, parse_target
from batchscope.errors import UsageError
from batchscope.units import format_bytes, format_seconds, parse_bytes

T = TypeVar("T")

#: examples per property; BATCHSCOPE_PROPERTY_EXAMPLES=5000 hunts harder
N = int(os.environ.get("BATCHSCOPE_PROPERTY_EXAMPLES", "150"))
FAST = settings(max_examples=N, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(
    max_examples=max(1, N * 2 // 5),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

#: characters that matter to the parsers, plus anything else text() draws
SYNTAX = "0123456789.,;:|=+-_ eE()[]'\"/\\\t*`%µ"
UNIT_LETTERS = "bkmgtiBKMGTIsSnu"


def typed(extra: str = "") -> st.SearchStrategy[str]:
    """What a user might type: mostly syntax characters, sometimes any Unicode."""
    focused = st.text(alphabet=SYNTAX + UNIT_LETTERS + extra, max_size=40)
    return st.one_of(focused, st.text(max_size=40))


def outcome(parse: Callable[[], T]) -> T | UsageError:
    """The parse's result, or its UsageError, which must be one line; anything else fails."""
    try:
        return parse()
    except UsageError as exc:
        message = str(exc)
        assert message, "an empty error message"
        assert "\n" not in message and "\r" not in message, repr(message)
        return exc


# ---------------------------------------------------------------- --batch-sizes


@FAST
@given(typed())
@example("9" * 5000)  # more digits than int() converts: was a ValueError traceback
@example("1.." + "9" * 5000)
@example("16..256,,32")
@example("0..4")
def test_batch_sizes_parse_or_say_why(text: str) -> None:
    result = outcome(lambda: parse_batch_sizes(text))
    if isinstance(result, UsageError):
        return
    assert result == sorted(set(result)) and result
    assert all(isinstance(b, int) and b >= 1 for b in result)


@FAST
@given(st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=12))
def test_batch_size_list_round_trips(sizes: list[int]) -> None:
    assert parse_batch_sizes(",".join(map(str, sizes))) == sorted(set(sizes))
    spaced = " , ".join(f" {b} " for b in sizes)
    assert parse_batch_sizes(spaced) == sorted(set(sizes))


@FAST
@given(
    st.integers(min_value=1, max_value=2**20),
    st.integers(min_value=0, max_value=2**21),
    st.lists(st.integers(min_value=1, max_value=4096), max_size=4),
)
def test_batch_size_ranges_are_powers_of_two_steps(lo: int, extra: int, more: list[int]) -> None:
    hi = lo + extra
    text = ",".join([f"{lo}..{hi}", *map(str, more)])
    expected = {lo * 2**k for k in range(64) if lo * 2**k <= hi} | set(more)
    assert parse_batch_sizes(text) == sorted(expected)
    if extra:
        backwards = outcome(lambda: parse_batch_sizes(f"{hi}..{lo}"))
        assert isinstance(backwards, UsageError) and "backwards" in str(backwards)


# ---------------------------------------------------------------- sizes


UNITS = {
    "": 1,
    "B": 1,
    "k": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}


@FAST
@given(typed())
@example("9" * 400)  # a float too large for int(): was an OverflowError traceback
@example("0.1")  # less than a byte: parsed to 0 bytes
@example("0.0004 KB")
def test_sizes_parse_or_say_why(text: str) -> None:
    result = outcome(lambda: parse_bytes(text, what="--memory-limit"))
    if isinstance(result, UsageError):
        assert "--memory-limit" in str(result)
        return
    assert isinstance(result, int) and result >= 1


@FAST
@given(
    st.decimals(min_value="0.001", max_value="100000", places=3, allow_nan=False),
    st.sampled_from(sorted(UNITS)),
    st.sampled_from(["", " ", "  "]),
    st.booleans(),
)
def test_sizes_say_what_they_mean(number: Any, unit: str, gap: str, lower: bool) -> None:
    expected = float(number) * UNITS[unit]
    assume(expected >= 1)
    text = f"{number}{gap}{unit.lower() if lower else unit}"
    assert parse_bytes(text) == int(expected)


@FAST
@given(st.integers(min_value=1, max_value=2**62))
@example(1000 * 1024)  # formatted as "1e+03 KiB", which did not parse back
@example(1152)  # "1.12 KiB": the half-way rounding and int() together
@example(1023 * 1024**4 + 1)
@example(5000 * 1024**4)
def test_format_bytes_parses_back_within_rounding(n: int) -> None:
    text = format_bytes(n)
    assert "e+" not in text, text
    back = parse_bytes(text)
    # half a unit of the third significant figure, plus int()'s truncation to whole bytes
    assert abs(back - n) <= 0.005 * n + 1, (n, text, back)


# ---------------------------------------------------------------- durations


TIME_UNITS = {"": 1.0, "s": 1.0, "seconds": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "min": 60.0}


@FAST
@given(typed("msecondinuthr"), st.sampled_from(KINDS))
@example("E0", "per-sample")  # an exponent without a mantissa: was a ValueError traceback
@example("-e5 ms", "per-step")
def test_table_values_parse_or_are_refused(text: str, kind: str) -> None:
    value = curves_parse_value(text, kind)
    assert value is None or isinstance(value, float)


@FAST
@given(
    st.floats(min_value=1e-3, max_value=1e6, allow_nan=False),
    st.sampled_from(sorted(TIME_UNITS)),
    st.sampled_from(["", " "]),
)
def test_durations_with_units_mean_what_they_say(number: float, unit: str, gap: str) -> None:
    text = f"{number:.6g}{gap}{unit}"
    value = curves_parse_value(text, "per-epoch")
    assert value is not None
    assert math.isclose(value, float(f"{number:.6g}") * TIME_UNITS[unit], rel_tol=1e-12)


@FAST
@given(st.floats(min_value=1e-9, max_value=119.0, allow_nan=False))
@example(0.0009996)  # "1e+03 µs"
@example(0.99996)  # "1e+03 ms"
def test_format_seconds_parses_back_within_rounding(seconds: float) -> None:
    text = format_seconds(seconds)
    assert "e+" not in text, text
    value = curves_parse_value(text, "per-epoch")
    assert value is not None, text
    assert math.isclose(value, seconds, rel_tol=0.006), (seconds, text, value)


def units_parser(name: str) -> Callable[..., Any]:
    """A parser of ``batchscope.units`` added alongside this file; skipped where absent."""
    import batchscope.units

    parser = getattr(batchscope.units, name, None)
    if parser is None:
        pytest.skip(f"batchscope.units has no {name}")
    return parser


DURATION_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "m": 60.0, "min": 60.0, "h": 3600.0}


@FAST
@given(typed("msecinh%"))
@example("1e999s")
@example("0ms")
@example("." * 3)
def test_durations_parse_or_say_why(text: str) -> None:
    parse_duration = units_parser("parse_duration")
    result = outcome(lambda: parse_duration(text, what="--max-time"))
    if isinstance(result, UsageError):
        assert "--max-time" in str(result)
        return
    assert isinstance(result, float) and math.isfinite(result) and result > 0


@FAST
@given(
    st.floats(min_value=1e-3, max_value=1e6, allow_nan=False),
    st.sampled_from(sorted(DURATION_UNITS)),
    st.sampled_from(["", " "]),
)
def test_typed_durations_mean_what_they_say(number: float, unit: str, gap: str) -> None:
    parse_duration = units_parser("parse_duration")
    text = f"{number:.6g}{gap}{unit}"
    expected = float(f"{number:.6g}") * DURATION_UNITS[unit]
    assert math.isclose(parse_duration(text), expected, rel_tol=1e-12)


@FAST
@given(st.floats(min_value=1e-3, max_value=119.0, allow_nan=False))
def test_format_seconds_parses_back_as_a_duration(seconds: float) -> None:
    """What a report shows in ms or s, --max-time and friends accept back."""
    parse_duration = units_parser("parse_duration")
    text = format_seconds(seconds)
    assert math.isclose(parse_duration(text), seconds, rel_tol=0.006), (seconds, text)


@FAST
@given(typed("%nafi"))
@example("%")
@example("50%%")
@example("nan%")
@example("1e-400")
def test_fractions_parse_or_say_why(text: str) -> None:
    parse_fraction = units_parser("parse_fraction")
    result = outcome(lambda: parse_fraction(text, what="--max-error"))
    if isinstance(result, UsageError):
        assert "--max-error" in str(result)
        return
    assert isinstance(result, float) and 0 < result < 1


@FAST
@given(st.decimals(min_value="0.001", max_value="99.999", places=3))
def test_percentages_and_fractions_agree(percent: Any) -> None:
    parse_fraction = units_parser("parse_fraction")
    as_percent = parse_fraction(f"{percent}%")
    assert math.isclose(as_percent, float(percent) / 100, rel_tol=1e-12)
    assert math.isclose(parse_fraction(repr(as_percent)), as_percent, rel_tol=1e-15)


# ---------------------------------------------------------------- --target


@FAST
@given(typed("acuryloss"))
@example("accuracy=nan")
@example("accuracy=1e999")
@example("=0.5")
def test_targets_parse_or_say_why(text: str) -> None:
    result = outcome(lambda: parse_target(text))
    if isinstance(result, UsageError):
        assert "--target" in str(result)
        return
    assert isinstance(result, Target) and math.isfinite(result.value)


@FAST
@given(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,20}", fullmatch=True),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["=", " = ", "= ", " ="]),
)
def test_targets_round_trip(metric: str, value: float, eq: str) -> None:
    assert parse_target(f"{metric}{eq}{value!r}") == Target(metric, value)


# ---------------------------------------------------------------- --fit


def parse_fit(text: str) -> Any:
    from batchscope.integrations.fastai import parse_fit as parse

    return parse(text)


FIT_CALLS = st.builds(
    lambda method, args: f"{method}({args})",
    st.sampled_from(["fine_tune", "fit_one_cycle", "fit", "fit_flat_cos", "fit_sgdr", "fitx"]),
    st.text(alphabet="0123456789,. =-_()[]'\"abcdefilnrstxyz", max_size=30),
)


@FAST
@given(st.one_of(FIT_CALLS, typed("fintuecyl"), st.text(max_size=60)))
@example("fine_tune(3)")
@example("fit(1)\x00")
@example("fit_sgdr(2, 1, cycle_mult=1e308)")
@example("a:b")
def test_fit_protocols_parse_or_say_why(text: str) -> None:
    result = outcome(lambda: parse_fit(text))
    if isinstance(result, UsageError):
        assert "--fit" in str(result)
        return
    assert result.text == text.strip()
    if result.method is not None:
        assert isinstance(result.epochs, int) and result.epochs >= 1


@FAST
@given(
    st.sampled_from(["fine_tune", "fit_one_cycle", "fit", "fit_flat_cos"]),
    st.integers(min_value=1, max_value=1000),
    st.sampled_from(["", ", lr=1e-3", ", wd=0.1", ", cbs=None", ", start_epoch=0"]),
)
def test_fit_calls_count_their_epochs(method: str, epochs: int, kw: str) -> None:
    if "lr=" in kw:  # each method names its learning rate its own way
        kw = {"fine_tune": ", base_lr=1e-3", "fit_one_cycle": ", lr_max=1e-3"}.get(method, kw)
    protocol = parse_fit(f"{method}({epochs}{kw})")
    assert protocol.method == method and protocol.args == (epochs,)
    assert protocol.epochs == (epochs + 1 if method == "fine_tune" else epochs)


def test_parse_fit_does_not_need_fastai() -> None:
    """--fit is parsed in the parent, where fastai need not be installed."""
    code = (
        "import sys\n"
        "sys.modules['fastai'] = None  # any import of fastai now fails\n"
        "from batchscope.integrations.fastai import parse_fit\n"
        "p = parse_fit('fine_tune(2, freeze_epochs=1)')\n"
        "assert p.epochs == 3, p\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_fit_deep_nesting_is_a_usage_error() -> None:
    for text in ("fit(1, lr=" + "1+" * 100_000 + "1)", "fit(" + "-" * 100_000 + "1)"):
        outcome(functools.partial(parse_fit, text))


@pytest.fixture
def alarm() -> Iterator[Callable[[float], None]]:
    """``alarm(s)``: a TimeoutError in this thread after s seconds."""

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError("parse_fit did not return")

    def start(seconds: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, seconds)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        yield start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_fit_sgdr_with_a_huge_cycle_count_returns(alarm: Callable[[float], None]) -> None:
    alarm(1.0)
    outcome(lambda: parse_fit("fit_sgdr(1000000000, 1)"))


# ---------------------------------------------------------------- the fit command's table


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tables")


def read(folder: Path, content: str | bytes, **kwargs: Any) -> Any:
    path = folder / "table.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return outcome(lambda: read_table(str(path), **kwargs))


TABLE_TEXT = st.text(alphabet="batch_size,time;step|-: \t\n\r\"'0123456789.eEms/", max_size=200)


@FEW
@given(st.one_of(TABLE_TEXT, st.text(max_size=200)))
@example("|---|\n")  # a Markdown table that is only a separator: was an IndexError
@example("|\n")
@example('batch_size,time\n"\n')
@example("batch_size,time\n8,1\n16,1\n32,inf\n")
@example("batch_size,time\n8,1\n16,e5\n32,1\n")
def test_any_text_table_is_read_or_refused(table_dir: Path, text: str) -> None:
    result = read(table_dir, text)
    if isinstance(result, UsageError):
        return
    assert len(result.batch_sizes) >= 3
    assert result.batch_sizes == sorted(set(result.batch_sizes))
    assert all(math.isfinite(v) and v > 0 for v in result.values)


@FEW
@given(st.binary(max_size=200))
def test_any_bytes_table_is_read_or_refused(table_dir: Path, raw: bytes) -> None:
    read(table_dir, raw)


@FEW
@given(
    st.dictionaries(
        st.integers(min_value=1, max_value=10**5),
        st.floats(min_value=1e-3, max_value=1e4, allow_nan=False),
        min_size=3,
        max_size=10,
    ),
    st.sampled_from([("time_s", "", 1.0), ("step_time", " ms", 1e-3), ("epoch_time", "s", 1.0)]),
    st.sampled_from(["csv", "semicolon", "markdown"]),
)
def test_a_table_of_times_reads_back(
    table_dir: Path, points: dict[int, float], column: tuple[str, str, float], style: str
) -> None:
    name, unit, scale = column
    rows = [(b, f"{v:.6g}{unit}") for b, v in points.items()]
    if style == "markdown":
        lines = [f"| batch_size | {name} |", "|---:|---:|"] + [f"| {b} | {v} |" for b, v in rows]
    else:
        sep = "," if style == "csv" else ";"
        lines = [f"batch_size{sep}{name}"] + [f"{b}{sep}{v}" for b, v in rows]
    table = read(table_dir, "\n".join(lines) + "\n")
    assert not isinstance(table, UsageError), table
    assert table.batch_sizes == sorted(points)
    expected = [float(f"{points[b]:.6g}") * scale for b in sorted(points)]
    assert all(
        math.isclose(got, want, rel_tol=1e-12)
        for got, want in zip(table.values, expected, strict=True)
    )
