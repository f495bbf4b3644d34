"""Parsing and formatting of sizes and durations, shared by the CLI and reports."""

from __future__ import annotations

import math
import re

from batchscope.errors import UsageError

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_bytes(text: str, *, what: str = "size") -> int:
    """Parse '4GiB', '512MB', '1.5 GiB' or a plain byte count."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise UsageError(
            f"{what} {text!r} is not a size: use a number with a unit, e.g. 4GiB, 512MiB, 2GB"
        )
    value = float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if value <= 0:
        raise UsageError(f"{what} {text!r} must be greater than zero")
    if value < 1:  # int() would make it 0 bytes
        raise UsageError(f"{what} {text!r} is less than one byte: use e.g. 4GiB, 512MiB, 2GB")
    if not math.isfinite(value):  # more digits than a float holds
        raise UsageError(f"{what} {text!r} is too large: use e.g. 4GiB, 512MiB, 2GB")
    return int(value)


def format_bytes(n: float | None) -> str:
    """Binary units, three significant figures: 1.23 GiB."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "–"
    sign = "-" if n < 0 else ""
    n = abs(float(n))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            # 1000-1023 of a unit (and 1000+ TiB) would read "1.02e+03" in .3g
            if unit == "B" or n >= 999.5:
                return f"{sign}{n:.0f} {unit}"
            return f"{sign}{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_seconds(s: float | None) -> str:
    """A duration in the unit that keeps 3 significant figures readable."""
    if s is None or math.isnan(s):
        return "–"
    # the bounds are where .3g rounds up to 1000 of the smaller unit ("1e+03 µs")
    if s < 0.9995e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 0.9995:
        return f"{s * 1e3:.3g} ms"
    if s < 120:
        return f"{s:.3g} s"
    minutes, seconds = divmod(s, 60)
    return f"{int(minutes)} min {seconds:02.0f} s"


def format_flops(x: float | None, *, per_s: bool = True) -> str:
    """Decimal units, three significant figures: '112 GFLOP/s' (or '8.06 MFLOP')."""
    unit = "FLOP/s" if per_s else "FLOP"
    if x is None or not math.isfinite(x):
        return "–"
    value = float(x)
    for prefix in ("", "k", "M", "G", "T", "P"):
        if abs(value) < 999.5 or prefix == "P":
            return f"{value:.3g} {prefix}{unit}"
        value /= 1000
    raise AssertionError("unreachable")


def format_with_spread(value: float, spread: float, unit_scale: float = 1.0) -> str:
    """'12.3 ± 0.4': the value rounded to the precision its spread supports."""
    value *= unit_scale
    spread *= unit_scale
    if spread <= 0 or not math.isfinite(spread):  # no spread (n=1): 4 significant figures
        return f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    # two significant figures of the spread decide the decimals of both numbers
    decimals = max(0, 1 - int(math.floor(math.log10(spread))))
    return f"{value:.{decimals}f} ± {spread:.{decimals}f}"


_DURATION_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Seconds from '15', '15s', '1.5m', '500ms' or '1h'; a one-line UsageError otherwise."""
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _DURATION_UNITS:
        raise UsageError(f"{what} {text!r} is not a duration: use e.g. 15s, 500ms, 2m or 1h")
    seconds = float(match.group(1)) * _DURATION_UNITS[unit]
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"{what} {text!r} must be more than 0 seconds")
    return seconds


def parse_fraction(text: str, *, what: str = "fraction") -> float:
    """A fraction from '2%' or '0.02' (strictly between 0 and 1); a UsageError otherwise."""
    raw = str(text).strip()
    percent = raw.endswith("%")
    number = raw[:-1].strip() if percent else raw
    try:
        value = float(number)
    except ValueError:
        raise UsageError(f"{what} {text!r} is not a fraction: use e.g. 2% or 0.02") from None
    if percent:
        value /= 100.0
    if not math.isfinite(value) or not 0 < value < 1:
        raise UsageError(f"{what} {text!r} must be between 0 and 100 % (e.g. 2% or 0.02)")
    return value
