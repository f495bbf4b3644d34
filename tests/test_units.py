"""Sizes and durations: parsing what users type, formatting what reports show."""

from __future__ import annotations

import math

import pytest

from batchscope.errors import UsageError
from batchscope.units import format_bytes, format_seconds, format_with_spread, parse_bytes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GiB", 4 * 1024**3),
        ("512MB", 512 * 1000**2),
        ("512MiB", 512 * 1024**2),
        ("1.5 GiB", 3 * 1024**3 // 2),
        ("100", 100),
        ("100B", 100),
        ("2k", 2000),
        ("1kib", 1024),
        ("3 TB", 3 * 1000**4),
        (" 2gb ", 2 * 1000**3),
        (".5KiB", 512),
    ],
)
def test_parse_bytes(text: str, expected: int) -> None:
    value = parse_bytes(text)
    assert value == expected
    assert isinstance(value, int)


@pytest.mark.parametrize("text", ["lots", "-1GB", "0", "0 GiB", "", "4 GiBs", "1e9", "4 G iB"])
def test_parse_bytes_rejects_with_the_value_and_flag(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_bytes(text, what="--memory-limit")
    message = str(info.value)
    assert "--memory-limit" in message
    assert repr(text) in message


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (10**6, "977 KiB"),
        (1.5 * 1024**3, "1.5 GiB"),
        (123.4 * 1024**2, "123 MiB"),
        (2 * 1024**4, "2 TiB"),
        (-2048, "-2 KiB"),
        (None, "–"),
        (math.nan, "–"),
    ],
)
def test_format_bytes(n: float | None, expected: str) -> None:
    assert format_bytes(n) == expected


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        (None, "–"),
        (math.nan, "–"),
        (5e-7, "0.5 µs"),
        (1e-4, "100 µs"),
        (0.0123, "12.3 ms"),
        (0.5, "500 ms"),
        (1, "1 s"),
        (12.345, "12.3 s"),
        (120, "2 min 00 s"),
        (3725, "62 min 05 s"),
    ],
)
def test_format_seconds(s: float | None, expected: str) -> None:
    assert format_seconds(s) == expected


@pytest.mark.parametrize(
    ("value", "spread", "scale", "expected"),
    [
        # two significant figures of the spread set the decimals of both numbers
        (12.3456, 0.4, 1.0, "12.35 ± 0.40"),
        (12.3456, 0.04, 1.0, "12.346 ± 0.040"),
        (12.3456, 1.234, 1.0, "12.3 ± 1.2"),
        (1234.56, 56, 1.0, "1235 ± 56"),
        (98765.0, 4321.0, 1.0, "98765 ± 4321"),
        # unit_scale converts seconds to milliseconds before rounding
        (0.0123, 0.00045, 1e3, "12.30 ± 0.45"),
        # no usable spread: four significant figures of the value
        (1234.56, 0.0, 1.0, "1235"),
        (0.012345, 0.0, 1e3, "12.35"),
        (5.0, math.inf, 1.0, "5"),
        (5.0, math.nan, 1.0, "5"),
    ],
)
def test_format_with_spread(value: float, spread: float, scale: float, expected: str) -> None:
    assert format_with_spread(value, spread, scale) == expected
