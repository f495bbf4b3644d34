"""``batchscope fit``'s input: a table measured elsewhere, read, checked, and fitted.

:func:`read_table` reads a CSV or Markdown table of batch sizes and times (or
throughputs), with units in the cells ("14.1 seconds", "250 ms") and an optional
standard-error column; :func:`fit_table` fits both curve models
(:mod:`batchscope.analyse.curves`) and the U-shape test to it. Every problem with
the file is one :class:`~batchscope.errors.UsageError` line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from batchscope.analyse.curves import CurveFit, fit_throughput_model, fit_time_model
from batchscope.analyse.ushape import UShape, detect_u_shape

# ---------------------------------------------------------------- fitting a table (the CLI)

#: what a value column can hold; "per-step" times are divided by the batch size
KINDS = ("per-sample", "per-step", "per-epoch", "throughput")

#: auto-detected value columns, in order of preference, and what each holds
VALUE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("time_per_sample_s", "per-sample"),
    ("time_per_sample", "per-sample"),
    ("step_time_s", "per-step"),
    ("step_time", "per-step"),
    ("epoch_time_s", "per-epoch"),
    ("epoch_time", "per-epoch"),
    ("training_time_s", "per-epoch"),
    ("training_time", "per-epoch"),
    ("total_time_s", "per-epoch"),
    ("time_s", "per-epoch"),
    ("time", "per-epoch"),
    ("seconds", "per-epoch"),
    ("samples_per_s", "throughput"),
    ("samples_s", "throughput"),
    ("throughput", "throughput"),
)
BATCH_COLUMNS = ("batch_size", "bs", "batch")
SPREAD_COLUMNS = ("stderr", "sem", "spread", "iqr", "stdev", "std", "sd", "sigma", "error", "err")

_TIME_UNITS = {
    "": 1.0,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "msec": 1e-3,
    "millisecond": 1e-3,
    "milliseconds": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "microsecond": 1e-6,
    "microseconds": 1e-6,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}
_RATE_UNITS = (
    "",
    "/s",
    "samples/s",
    "sample/s",
    "samples/sec",
    "samples per second",
    "img/s",
    "images/s",
    "it/s",
)
_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?"


def _normalise(name: str) -> str:
    import re

    text = re.sub(r"[*`]+", "", name.strip())  # Markdown **bold** and `code`
    text = re.sub(r"[^0-9a-zA-Zµμ]+", "_", text.lower())
    return text.strip("_")


def parse_value(text: str, kind: str) -> float | None:
    """'14.1 seconds' → 14.1, '9.44s' → 9.44, '250 ms' → 0.25, '1,234.5 samples/s' → 1234.5.

    Returns None when ``text`` is not a number with a unit this kind accepts.
    """
    import re

    match = re.fullmatch(rf"\s*({_NUMBER})\s*(.*?)\s*", text)
    # the digits must be in the mantissa: "e5" alone is no number (float() refuses it)
    if not match or not re.search(r"\d", re.split(r"[eE]", match.group(1), maxsplit=1)[0]):
        return None
    number = float(match.group(1).replace(",", ""))
    unit = match.group(2).lower()
    if kind == "throughput":
        return number if unit in _RATE_UNITS else None
    scale = _TIME_UNITS.get(unit)
    return None if scale is None else number * scale


@dataclass
class FitTable:
    """A table of batch sizes and times (or throughputs), read and checked."""

    path: str
    batch_size_column: str
    value_column: str
    spread_column: str | None
    #: one of KINDS
    kind: str
    #: how the kind was chosen: "--kind" or "column name"
    kind_source: str
    #: distinct batch sizes, ascending
    batch_sizes: list[int]
    #: the column's values in seconds (times) or samples/s, duplicates averaged
    values: list[float]
    spreads: list[float] | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "batch_size_column": self.batch_size_column,
            "value_column": self.value_column,
            "spread_column": self.spread_column,
            "kind": self.kind,
            "kind_source": self.kind_source,
            "n": len(self.batch_sizes),
            "batch_sizes": list(self.batch_sizes),
            "values": list(self.values),
            "spreads": list(self.spreads) if self.spreads is not None else None,
            "notes": list(self.notes),
        }


def _kind_for(name: str) -> str | None:
    norm = _normalise(name)
    for col, kind in VALUE_COLUMNS:
        if norm == col or norm.startswith(col + "_"):
            return kind
    if "per_s" in norm or "throughput" in norm:
        return "throughput"
    if "sample" in norm and "time" in norm:
        return "per-sample"
    if "step" in norm and "time" in norm:
        return "per-step"
    if "time" in norm or "sec" in norm:
        return "per-epoch"
    return None


def _read_rows(path: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every non-empty row: CSV, or a Markdown pipe table."""
    import csv
    from pathlib import Path

    from batchscope.errors import UsageError

    p = Path(path)
    if not p.exists():
        raise UsageError(f"{path!r}: no such file: give a CSV table of batch_size and times")
    if p.is_dir():
        raise UsageError(f"{path!r} is a folder: give a CSV file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path!r}: {exc.strerror}") from exc
    if b"\0" in raw[:4096]:
        raise UsageError(f"{path!r} is not a CSV file (it is binary)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path!r} is not a CSV text file (not UTF-8)") from exc
    lines = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]
    if not lines:
        raise UsageError(
            f"{path!r} is empty: expected a header row with batch_size and a time or "
            "throughput column"
        )
    if lines[0][1].lstrip().startswith("|"):
        import re

        rows = []
        for number, line in lines:
            if not line.lstrip().startswith("|"):
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
                continue  # the |---|---| separator
            rows.append((number, cells))
    else:
        sample = "\n".join(line for _, line in lines[:20])
        try:
            dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        try:
            rows = [
                (number, [c.strip() for c in cells])
                for number, line in lines
                for cells in csv.reader([line], dialect)
            ]
        except csv.Error as exc:
            raise UsageError(f"{path!r} is not a readable CSV file: {exc}") from exc
    if not rows:  # e.g. a Markdown table that is only its |---| separator
        raise UsageError(
            f"{path!r} has no table rows: expected a header row with batch_size and a time "
            "or throughput column"
        )
    return rows


def read_table(path: str, *, time_column: str | None = None, kind: str | None = None) -> FitTable:
    """Read a CSV (or Markdown) table with a ``batch_size`` column and a time column.

    The value column is ``time_column`` or the first of :data:`VALUE_COLUMNS` present
    (a name may carry a suffix: ``training_time_gpu``); ``kind`` overrides what the
    column name says it holds. A ``spread``/``iqr``/``stdev`` column, in the value
    column's unit, becomes the fit's sigmas. Values may carry units ("14.1 seconds",
    "9.44s", "250 ms"). Duplicate batch sizes are averaged, with a note. Raises
    :class:`~batchscope.errors.UsageError` (one line) for anything unusable.
    """
    from batchscope.errors import UsageError

    if kind is not None and kind not in KINDS:
        raise UsageError(f"--kind {kind!r} is not one of {', '.join(KINDS)}")
    rows = _read_rows(path)
    (header_line, header), body = rows[0], rows[1:]
    norm = [_normalise(h) for h in header]
    found = ", ".join(repr(h) for h in header)
    b_idx = next((norm.index(c) for c in BATCH_COLUMNS if c in norm), None)
    if b_idx is None:
        raise UsageError(
            f"{path!r} has no batch_size column (its header, line {header_line}, has {found})"
        )
    v_idx: int | None = None
    if time_column is not None:
        wanted = _normalise(time_column)
        matches = [i for i, h in enumerate(header) if h == time_column or norm[i] == wanted]
        if not matches:
            raise UsageError(f"--time-column {time_column!r} is not a column of {path!r} ({found})")
        v_idx = matches[0]
    else:
        for col, _ in VALUE_COLUMNS:
            hits = [
                i
                for i, h in enumerate(norm)
                if i != b_idx and (h == col or h.startswith(col + "_"))
            ]
            if hits:
                v_idx = hits[0]
                break
        if v_idx is None:
            names = ", ".join(c for c, _ in VALUE_COLUMNS)
            raise UsageError(
                f"{path!r} has no time or throughput column ({found}); name one with "
                f"--time-column, or use one of: {names}"
            )
    column = header[v_idx]
    if kind is not None:
        chosen, source = kind, "--kind"
    else:
        detected = _kind_for(column)
        if detected is None:
            raise UsageError(
                f"cannot tell what column {column!r} holds: give --kind ({', '.join(KINDS)})"
            )
        chosen, source = detected, "column name"
    s_idx = next(
        (
            i
            for i, h in enumerate(norm)
            if i not in (b_idx, v_idx)
            and any(h == s or h.startswith(s + "_") or f"_{s}" in h for s in SPREAD_COLUMNS)
        ),
        None,
    )
    if not body:
        raise UsageError(f"{path!r} has a header but no rows")
    by_b: dict[int, list[tuple[int, float, float | None]]] = {}
    for number, cells in body:
        if len(cells) != len(header):
            raise UsageError(
                f"{path!r} line {number} has {len(cells)} field(s), the header has {len(header)}"
            )
        b_text = cells[b_idx]
        try:
            b_value = float(b_text.replace(",", ""))
        except ValueError:
            b_value = math.nan
        if not (math.isfinite(b_value) and b_value >= 1 and b_value.is_integer()):
            raise UsageError(
                f"{path!r} line {number}: batch size {b_text!r} is not a whole number ≥ 1"
            )
        value = parse_value(cells[v_idx], chosen)
        example = (
            "e.g. 1234.5 or 1234.5 samples/s"
            if chosen == "throughput"
            else ("e.g. 9.44, 9.44s, 14.1 seconds, 250 ms")
        )
        if value is None:
            raise UsageError(
                f"{path!r} line {number} (batch size {int(b_value)}): {cells[v_idx]!r} in column "
                f"{column!r} is not a number ({example})"
            )
        if not (math.isfinite(value) and value > 0):
            raise UsageError(
                f"{path!r} line {number} (batch size {int(b_value)}): {cells[v_idx]!r} in column "
                f"{column!r} must be greater than zero"
            )
        spread: float | None = None
        if s_idx is not None and cells[s_idx] != "":
            spread = parse_value(cells[s_idx], chosen)
            if spread is None or not math.isfinite(spread) or spread < 0:
                raise UsageError(
                    f"{path!r} line {number} (batch size {int(b_value)}): {cells[s_idx]!r} in "
                    f"spread column {header[s_idx]!r} is not a number ≥ 0 ({example})"
                )
        by_b.setdefault(int(b_value), []).append((number, value, spread))
    notes: list[str] = []
    sizes = sorted(by_b)
    values: list[float] = []
    spreads: list[float] = []
    for b in sizes:
        entries = by_b[b]
        vals = [v for _, v, _ in entries]
        mean = math.fsum(vals) / len(vals)
        values.append(mean)
        ss = [s for _, _, s in entries if s is not None]
        spreads.append(math.fsum(ss) / len(ss) if ss else 0.0)
        if len(entries) > 1:
            lines = ", ".join(str(n) for n, _, _ in entries)
            notes.append(
                f"batch size {b} appears {len(entries)} times (lines {lines}): averaged "
                f"({', '.join(f'{v:g}' for v in vals)} → {mean:.4g})"
            )
    if len(sizes) < 3:
        raise UsageError(
            f"{path!r} has {len(sizes)} distinct batch size(s): T(b) = c/b^α + T_min has 3 "
            "parameters, so a fit needs at least 3 points (and its 95 % intervals at least 4)"
        )
    if len(sizes) == 3:
        notes.append(
            "3 batch sizes for 3 parameters: the time fit has no intervals (they need at least 4)"
        )
    has_spread = s_idx is not None and any(s > 0 for s in spreads)
    return FitTable(
        path=str(path),
        batch_size_column=header[b_idx],
        value_column=column,
        spread_column=header[s_idx] if s_idx is not None else None,
        kind=chosen,
        kind_source=source,
        batch_sizes=sizes,
        values=values,
        spreads=spreads if has_spread else None,
        notes=notes,
    )


@dataclass
class TableFit:
    """Both models fitted to a table, and the U-shape verdict on its times."""

    table: FitTable
    time: CurveFit
    throughput: CurveFit
    u_shape: UShape
    #: what the time model's T means, e.g. "time per epoch (s)"
    time_quantity: str
    #: what the throughput model's X means, e.g. "samples/s"
    throughput_quantity: str

    def to_dict(self) -> dict[str, Any]:
        time = self.time.to_dict()
        time["quantity"] = self.time_quantity
        throughput = self.throughput.to_dict()
        throughput["quantity"] = self.throughput_quantity
        return {
            "models": {"time": time, "throughput": throughput},
            "u_shape": self.u_shape.to_dict(),
            "input": self.table.to_dict(),
        }


def fit_table(table: FitTable) -> TableFit:
    """Fit the time model and the throughput model to a table read by :func:`read_table`.

    Per-step times are divided by the batch size (time per sample). For per-epoch
    times of a fixed data set the throughput is seed 003's "relative performance":
    best time / time, so ``x_max`` is relative to the fastest measured.
    """
    b = np.asarray(table.batch_sizes, dtype=float)
    v = np.asarray(table.values, dtype=float)
    s = np.asarray(table.spreads, dtype=float) if table.spreads is not None else None
    if table.kind == "throughput":
        x, xs = v, s
        t = 1.0 / v
        ts = None if s is None else s / v**2
        time_quantity, quantity = "time per sample (s), 1 / throughput", "time_per_sample"
        throughput_quantity = "samples/s"
    elif table.kind == "per-epoch":
        t, ts = v, s
        best = float(np.min(v))
        x = best / v
        xs = None if s is None else best * s / v**2
        time_quantity, quantity = "time per epoch or protocol (s)", "time_per_epoch"
        throughput_quantity = "relative performance (fastest measured = 1)"
    else:
        per = b if table.kind == "per-step" else np.ones_like(b)
        t = v / per
        ts = None if s is None else s / per
        x = 1.0 / t
        xs = None if ts is None else ts / t**2
        time_quantity, quantity = "time per sample (s)", "time_per_sample"
        throughput_quantity = "samples/s"
    time_fit = fit_time_model(b, t, ts, quantity=quantity)
    throughput_fit = fit_throughput_model(b, x, xs)
    u = time_fit.u_shape or detect_u_shape(b, t, ts)
    return TableFit(
        table=table,
        time=time_fit,
        throughput=throughput_fit,
        u_shape=u,
        time_quantity=time_quantity,
        throughput_quantity=throughput_quantity,
    )
