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
    return int(value)


def format_bytes(n: float | None) -> str:
    """Binary units, three significant figures: 1.23 GiB."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "–"
    sign = "-" if n < 0 else ""
    n = abs(float(n))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            if unit == "B":
                return f"{sign}{n:.0f} B"
            return f"{sign}{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_seconds(s: float | None) -> str:
    """A duration in the unit that keeps 3 significant figures readable."""
    if s is None or math.isnan(s):
        return "–"
    if s < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    if s < 120:
        return f"{s:.3g} s"
    minutes, seconds = divmod(s, 60)
    return f"{int(minutes)} min {seconds:02.0f} s"


def format_with_spread(value: float, spread: float, unit_scale: float = 1.0) -> str:
    """'12.3 ± 0.4': the value rounded to the precision its spread supports."""
    value *= unit_scale
    spread *= unit_scale
    if spread <= 0 or not math.isfinite(spread):  # no spread (n=1): 4 significant figures
        return f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    # two significant figures of the spread decide the decimals of both numbers
    decimals = max(0, 1 - int(math.floor(math.log10(spread))))
    return f"{value:.{decimals}f} ± {spread:.{decimals}f}"
