"""Machine-readable exports: JSON (the contract), CSV (one row a trial), Markdown."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from batchscope.core.results import RunResult
from batchscope.errors import ExportError

CSV_FIELDS = (
    "run_id",
    "workload",
    "device",
    "batch_size",
    "repeat",
    "status",
    "step_time_median_s",
    "step_time_iqr_s",
    "step_time_mean_s",
    "step_time_stdev_s",
    "step_time_min_s",
    "step_time_max_s",
    "step_time_n",
    "step_time_median_low_s",
    "step_time_median_high_s",
    "precision_reached",
    "stopped_by",
    "samples_per_s",
    "data_wait_fraction",
    "samples_per_epoch",
    "total_time_s",
    "final_train_loss",
    "peak_memory_bytes",
    "peak_rss_bytes",
    "threads",
    "seed",
    "error",
    # variants, accumulation and learning rate (batchscope.engine.variants, batchscope.engine.lr)
    "precision",
    "channels_last",
    "compile",
    "compile_time_s",
    "accumulate",
    "effective_batch_size",
    "lr",
    "lr_scaling",
    # energy (batchscope.hardware.monitor) and time-to-target (--target)
    "energy_j",
    "energy_per_sample_j",
    "sampler_cpu_fraction",
    # FLOPs and MFU (batchscope.engine.flops, batchscope.analyse.efficiency)
    "flops_per_step",
    "flops_per_sample",
    "achieved_flops_per_s",
    "device_peak_flops",
    "device_peak_dtype",
    "mfu",
    "mfu_low",
    "mfu_high",
    "bytes_per_step",
    "device_copy_bytes_per_s",
    "bandwidth_fraction",
    # a sequence workload's tokens (batchscope.core.tokens)
    "seq_len",
    "tokens_per_step",
    "tokens_per_s",
    "tokens_per_s_low",
    "tokens_per_s_high",
    "flops_per_token",
    "val_perplexity",
    # where it ran (batchscope.run.executors, batchscope.hardware.machine)
    "executor",
    "hostname",
    "machine_fingerprint",
    # data parallel (--world-sizes: batchscope.engine.ddp, batchscope.analyse.scaling)
    "world_size",
    "per_device_batch_size",
    "global_batch_size",
    "samples_per_s_per_device",
    "scaling_mode",
    "scaling_efficiency",
    "scaling_efficiency_low",
    "scaling_efficiency_high",
    "comm_fraction",
    "comm_fraction_low",
    "comm_fraction_high",
    "target",
    "target_reached",
    "time_to_target_s",
    "samples_to_target",
    "epochs_to_target",
    # the last epoch's validation, then final_<metric> per metric the run recorded
    "final_val_loss",
)


def _final_metric_names(run: RunResult) -> list[str]:
    """Every validation metric a trial's last epoch recorded (accuracy, error_rate...)."""
    names: dict[str, None] = {}
    for t in run.trials:
        if t.epochs:
            names.update(dict.fromkeys(t.epochs[-1].metrics))
    return list(names)


def check_writable(path: str | os.PathLike[str], flag: str) -> Path:
    """Fail before a sweep starts, not after it, when an export path cannot be written.

    ``-`` is standard output, always writable.
    """
    p = Path(path)
    if str(path) == "-":
        return p
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise ExportError(f"{flag} {str(p)!r} is a folder: give a file name")
    if not parent.is_dir():
        raise ExportError(f"{flag} {str(p)!r}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ExportError(f"{flag} {str(p)!r} is not writable")
    return p


def write_text(path: str | os.PathLike[str], text: str, flag: str) -> None:
    """Write ``text`` to ``path`` (``-``: standard output), one-line errors."""
    if str(path) == "-":
        import sys

        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"cannot write {flag} {str(path)!r}: {exc.strerror}") from exc


def to_json(run: RunResult) -> str:
    """The results JSON: the run as stored, plus the ``analysis`` object — per series, the
    verdicts the terminal prints (fastest and ties, recommendation, U shape, fits, memory).

    Valid JSON whatever a trial holds: NaN and ±infinity become ``null``, and a top-level
    ``notes`` list says which fields (a diverged loss is NaN).
    """
    from batchscope.analyse.explain import analyse_run
    from batchscope.core.results import json_safe

    found: list[str] = []
    data = json_safe(run.to_dict(), "", found)
    data["analysis"] = analyse_run(run).verdicts()
    scaling = scaling_summary(run)
    if scaling:  # data parallel (--world-sizes): what the scaling table and lines show
        data["scaling"] = json_safe(scaling, "scaling", found)
    if found:
        data["notes"] = [
            f"{len(found)} non-finite number(s) written as null (JSON has no NaN or infinity): "
            + ", ".join(found[:20])
            + (", …" if len(found) > 20 else "")
        ]
    return json.dumps(data, indent=2, allow_nan=False, default=str) + "\n"


def scaling_summary(run: RunResult) -> dict[str, Any] | None:
    """``{"figures": [...], "verdicts": [...]}`` for a data-parallel run, else None: per
    (series, batch, world size) the figures of :mod:`batchscope.analyse.scaling`."""
    import dataclasses

    from batchscope.analyse.scaling import scaling_figures
    from batchscope.report.scaling import scaling_lines

    figures = scaling_figures(run)
    if not figures:
        return None
    return {
        "figures": [dataclasses.asdict(f) for f in figures],
        "verdicts": scaling_lines(run),
    }


def csv_rows(run: RunResult) -> list[dict[str, Any]]:
    """One flat row per trial: the CSV's columns (and ``RunResult.to_pandas``'s)."""
    metrics = _final_metric_names(run)
    rows = []
    for t in run.trials:
        s = t.step_time_s
        target = t.target or {}
        last = t.epochs[-1] if t.epochs else None
        reached = target.get("reached")
        rows.append(
            {
                "run_id": run.run_id,
                "workload": run.workload.get("name"),
                "device": t.device,
                "batch_size": t.batch_size,
                "repeat": t.repeat,
                "status": t.status,
                "step_time_median_s": s.median if s else None,
                "step_time_iqr_s": s.iqr if s else None,
                "step_time_median_low_s": s.median_low if s else None,
                "step_time_median_high_s": s.median_high if s else None,
                "precision_reached": t.precision_reached,
                "stopped_by": t.stopped_by,
                "step_time_mean_s": s.mean if s else None,
                "step_time_stdev_s": s.stdev if s else None,
                "step_time_min_s": s.min if s else None,
                "step_time_max_s": s.max if s else None,
                "step_time_n": s.n if s else None,
                "samples_per_s": t.samples_per_s,
                "data_wait_fraction": t.data_wait_fraction,
                "samples_per_epoch": t.samples_per_epoch,
                "total_time_s": t.total_time_s,
                "final_train_loss": t.final_train_loss,
                "peak_memory_bytes": t.peak_memory_bytes,
                "peak_rss_bytes": t.peak_rss_bytes,
                "threads": t.threads,
                "seed": t.seed,
                "error": t.error,
                **{
                    k: getattr(t, k)
                    for k in CSV_FIELDS[CSV_FIELDS.index("precision") : CSV_FIELDS.index("target")]
                },
                "target": f"{target['metric']}={target['value']:g}" if target else None,
                "target_reached": reached,
                "time_to_target_s": target.get("time_s") if reached else None,
                "samples_to_target": target.get("samples") if reached else None,
                "epochs_to_target": target.get("epoch") if reached else None,
                "final_val_loss": last.val_loss if last else None,
                **{f"final_{m}": (last.metrics.get(m) if last else None) for m in metrics},
            }
        )
    order = [*CSV_FIELDS, *(f"final_{m}" for m in metrics)]
    return [{k: row.get(k) for k in order} for row in rows]


def to_csv(run: RunResult) -> str:
    buffer = io.StringIO()
    metrics = _final_metric_names(run)
    writer = csv.DictWriter(buffer, fieldnames=[*CSV_FIELDS, *(f"final_{m}" for m in metrics)])
    writer.writeheader()
    writer.writerows(csv_rows(run))
    return buffer.getvalue()


def to_markdown(run: RunResult) -> str:
    """The full Markdown report (see :mod:`.markdown`), without the plots: one file."""
    from batchscope.report.markdown import to_markdown as full_report

    return full_report(run)


def write_exports(
    run: RunResult,
    *,
    json_path: str | None = None,
    csv_path: str | None = None,
    markdown_path: str | None = None,
) -> list[Path]:
    written = []
    for path, flag, render in (
        (json_path, "--json", to_json),
        (csv_path, "--csv", to_csv),
        (markdown_path, "--markdown", to_markdown),
    ):
        if path:
            write_text(path, render(run), flag)
            written.append(Path(path))
    return written
