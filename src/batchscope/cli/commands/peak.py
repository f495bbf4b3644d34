"""``batchscope peak``: the device's measured matmul peak and copy bandwidth."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated, Any

import typer

from batchscope.cli.app import app
from batchscope.cli.console import stderr, stdout
from batchscope.cli.options import StoreOpt
from batchscope.hardware.peak import DEFAULT_MIN_RUN_TIME_S

if TYPE_CHECKING:
    from rich.console import Console

    from batchscope.hardware.peak import PeakResult

PEAK_EPILOG = """\
What it measures: square matmuls a @ b of several sizes n (CPU 256..2048, GPU
2048..8192; 2·n³ FLOPs each), timed with torch.utils.benchmark's blocked_autorange;
the peak is the size with the highest rate. Each rate has the Maritz–Jarrett 95 %
interval of its median block time. Also the copy bandwidth: bytes read + written per
second by dst.copy_(src) of a buffer larger than the caches.

Why: a batch size's MFU (model FLOPs utilisation) is its achieved FLOP/s divided by
this measured peak, so "40 % MFU" means 40 % of what this device, dtype, thread count
and torch reach here, not of a datasheet. A vendor figure, where batchscope knows the
GPU, is shown beside it for comparison only.

It runs in a fresh process and is cached in the results store per machine, device,
dtype and threads (a new CPU, GPU or torch measures again); --refresh measures anew.

Examples:

  batchscope peak
  batchscope peak --device cuda --dtype bf16
  batchscope peak --threads 1 --json peak.json
"""


def _scale(value: float) -> tuple[float, str]:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return scale, prefix
    return 1.0, ""


def si(value: float | None, unit: str) -> str:
    """``value`` with an SI prefix, 3 significant digits: ``112 GFLOP/s``, ``17.4 GB/s``."""
    if value is None:
        return "–"
    scale, prefix = _scale(value)
    return f"{value / scale:.3g} {prefix}{unit}"


def _interval(low: float, high: float, value: float) -> str:
    """``[108–115]``, in the prefix of ``value``."""
    scale, _ = _scale(value)
    return f"[{low / scale:.3g}–{high / scale:.3g}]"


def _open_store(store_path: str | None, no_store: bool) -> tuple[Any, str | None]:
    """(store or None, a note): a store we may not write is read, not written."""
    from pathlib import Path

    from batchscope.errors import StoreError, UsageError
    from batchscope.run.store import DEFAULT_STORE, Store

    if no_store:
        if store_path is not None:
            raise UsageError("--store and --no-store contradict each other")
        return None, None
    path = Path(store_path).expanduser() if store_path else Path(DEFAULT_STORE)
    try:
        return Store(path, create_parent=store_path is None), None
    except StoreError:
        if not path.is_file():
            raise
        store = Store(path, readonly=True)  # not writable: read the cache, write nothing
        return store, f"{path} is read-only: the peak is not cached there"


@app.command(epilog=PEAK_EPILOG)
def peak(
    device: Annotated[
        str, typer.Option("--device", "-d", help="cpu, cuda, cuda:N or mps.")
    ] = "cpu",
    dtype: Annotated[
        str, typer.Option("--dtype", help="fp32, bf16 or fp16: the matmuls' dtype.")
    ] = "fp32",
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            help="torch.set_num_threads (default: all cores, as a sweep uses); CPU only.",
            show_default=False,
            min=1,
        ),
    ] = None,
    store_path: StoreOpt = None,
    no_store: Annotated[
        bool, typer.Option("--no-store", help="Neither read nor write a cached peak.")
    ] = False,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Measure again even if a cached peak matches.")
    ] = False,
    json_path: Annotated[
        str | None,
        typer.Option(
            "--json",
            metavar="FILE",
            help="Write the peak as JSON ('-': standard output; the summary goes to stderr).",
            show_default=False,
        ),
    ] = None,
    min_run_time: Annotated[
        float,
        typer.Option(
            "--min-run-time",
            metavar="SECONDS",
            help="Timing per matmul size (at least 8 blocks each): shorter is quicker, "
            "with wider intervals.",
            min=0.001,
        ),
    ] = DEFAULT_MIN_RUN_TIME_S,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No spinner.")] = False,
) -> None:
    """Measure the device's peak matmul FLOP/s and copy bandwidth: what MFU is measured against."""
    import json

    from batchscope.cli.common import default_threads
    from batchscope.hardware.peak import canonical_device, check_dtype
    from batchscope.report.export import check_writable, write_text
    from batchscope.run.peak_cache import cached_peak, measure_in_child, save_peak

    device = canonical_device(device)
    dtype = check_dtype(dtype)
    if json_path:
        check_writable(json_path, "--json")
    if threads is None and device == "cpu":
        threads = default_threads()
    store, note = _open_store(store_path, no_store)
    err = stderr()
    try:
        result = None if refresh else cached_peak(store, device, dtype, threads)
        cached = result is not None
        if result is None:
            with (
                err.status(f"measuring the {device} {dtype} peak (a few seconds)…", spinner="dots")
                if not quiet
                else contextlib.nullcontext()
            ):
                result = measure_in_child(device, dtype, threads, min_run_time_s=min_run_time)
            save_peak(store, result, threads)
    finally:
        if store is not None:
            store.close()
    out = err if json_path == "-" else stdout()
    print_peak(result, cached, out)
    if note and not quiet:
        err.print(f"note: {note}", markup=False, highlight=False)
    if json_path:
        payload = {**result.to_dict(), "cached": cached}
        write_text(json_path, json.dumps(payload, indent=2) + "\n", "--json")
        if json_path != "-" and not quiet:
            err.print(f"wrote {json_path}", highlight=False)


def print_peak(result: PeakResult, cached: bool, out: Console) -> None:
    """The peak with its interval, the per-size table, the copy bandwidth, the vendor figure."""
    from rich.table import Table

    def say(line: str) -> None:
        out.print(line, markup=False, highlight=False, soft_wrap=True)

    where = f", {result.threads} thread{'s' if result.threads != 1 else ''}"
    if not result.device.startswith("cpu"):
        where = ""
        if result.tf32 is not None and result.dtype == "fp32":
            where = ", TF32 on" if result.tf32 else ", TF32 off"
    n = result.best_n
    say(
        f"{result.device} {result.dtype} matmul peak: {si(result.flops_per_s, 'FLOP/s')} "
        f"{_interval(result.flops_per_s_low, result.flops_per_s_high, result.flops_per_s)}"
        f"{f', at n={n}' if n else ''}{where}"
    )
    table = Table(box=None, pad_edge=False)
    for col in ("n", "FLOP/s", "95 % interval"):
        table.add_column(col, justify="right")
    for row in result.sizes:
        table.add_row(
            str(int(row["n"])),
            si(row["flops_per_s"], "FLOP/s"),
            _interval(row["low"], row["high"], row["flops_per_s"]),
        )
    out.print(table)
    copy = result.copy_bytes_per_s
    copy_interval = _interval(result.copy_bytes_per_s_low, result.copy_bytes_per_s_high, copy)
    say(
        f"copy bandwidth: {si(copy, 'B/s')} {copy_interval} "
        "(bytes read + written per second by dst.copy_(src))"
    )
    if result.vendor_flops_per_s:
        share = result.flops_per_s / result.vendor_flops_per_s
        say(
            f"vendor figure: {si(result.vendor_flops_per_s, 'FLOP/s')} ({result.vendor_name}; "
            f"for comparison only: measured = {share:.0%} of it)"
        )
    elif not result.device.startswith("cpu"):
        say("vendor figure: none known for this device")
    when = result.measured_at.replace("T", " ").replace("+00:00", " UTC")
    if cached:
        say(f"from the cache (measured {when}); --refresh measures again")
    else:
        say(f"measured now ({when}); MFU of each batch size is measured against this peak")
