"""The full report as a document model, and its Markdown rendering.

:func:`report_document` turns a run and its analysis into a renderer-neutral list
of blocks (headings, fields, tables, figures ...), holding *plain text only*. The
Markdown renderer here and the HTML renderer in :mod:`.html` escape every string
they emit, so a workload name, note, error message or environment value can never
turn into markup. :func:`compare_document` does the same for ``batchscope compare``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchscope.core.results import RunResult
from batchscope.report.rows import device_rows, headers
from batchscope.report.wording import (
    INTERVAL_NAME,
    describe_fit,
    machine_lines,
    memory_line,
    samples_per_s,
    speedup_line,
    step_time,
)
from batchscope.units import format_bytes, format_seconds

if TYPE_CHECKING:
    from batchscope.analyse.explain import DeviceAnalysis, RunAnalysis
    from batchscope.analyse.speedup import Speedup

# ---------------------------------------------------------------- the document model


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Paragraph:
    text: str
    #: "text", "warning" (shown in yellow / as a quote), "muted" or "verdict" (the one
    #: line a reader must not miss: which batch size to use; bold, boxed in HTML)
    kind: str = "text"


@dataclass
class Bullets:
    items: list[str]
    kind: str = "text"


@dataclass
class Fields:
    """A list of ``label: value`` lines."""

    items: list[tuple[str, str]]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    #: "left" or "right" per column
    align: list[str]
    #: indexes of rows to show as failed (red)
    failed_rows: set[int] = field(default_factory=set)
    #: indexes of rows to highlight: the recommended batch size
    chosen_rows: set[int] = field(default_factory=set)
    #: the first column labels its row (a two-column "label | value" table)
    row_headers: bool = False


@dataclass
class Figure:
    """A plot, by the file name of its PNG (``time_per_sample.png``).

    ``title`` names it (alt text); ``caption`` says what it shows and what its bars are.
    """

    filename: str
    title: str
    caption: str = ""


Block = Heading | Paragraph | Bullets | Fields | Table | Figure


@dataclass
class Document:
    title: str
    blocks: list[Block]


# ---------------------------------------------------------------- formatting helpers


def environment_fields(env: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every recorded environment value, in a readable form."""
    out: list[tuple[str, str]] = []
    for key, value in env.items():
        out.append((str(key), _env_value(str(key), value)))
    return out


def _env_value(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key.endswith("_bytes") and isinstance(value, (int, float)):
        return format_bytes(value)
    if key == "gpus" and isinstance(value, list):
        if not value:
            return "none"
        return "; ".join(
            f"{g.get('name')} ({format_bytes(g.get('memory_bytes'))})"
            if isinstance(g, dict)
            else str(g)
            for g in value
        )
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "–"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) if value else "–"
    return str(value)


# Readable Environment and Settings tables: a human label per known key, values in units.
# Unknown keys still show (a prettified key), so nothing recorded is hidden.

Formatter = Callable[[Any, Mapping[str, Any]], str]


def _yes_no(value: Any, _all: Mapping[str, Any]) -> str:
    return "yes" if value else "no"


def _bytes_or(none: str) -> Formatter:
    return lambda v, _all: none if v is None else format_bytes(v)


def _seconds_or(none: str) -> Formatter:
    return lambda v, _all: none if v is None else format_seconds(float(v))


def _or(none: str) -> Formatter:
    return lambda v, _all: none if v is None else _plain(v)


def _gpus(value: Any, _all: Mapping[str, Any]) -> str:
    if not value:
        return "none"
    if not isinstance(value, list):
        return _plain(value)
    parts = []
    for g in value:
        if not isinstance(g, dict):
            parts.append(str(g))
            continue
        text = f"{g.get('index', '?')}: {g.get('name')}, {format_bytes(g.get('memory_bytes'))}"
        if g.get("capability"):
            text += f", compute capability {g['capability']}"
        if g.get("multiprocessors"):
            text += f", {g['multiprocessors']} multiprocessors"
        parts.append(text)
    return "; ".join(parts)


def _steps(value: Any, settings: Mapping[str, Any]) -> str:
    if value is not None:
        return str(value)
    return "– (epochs)" if settings.get("epochs") is not None else "adaptive"


def _accumulate(value: Any, _all: Mapping[str, Any]) -> str:
    if value in (None, 1):
        return "none (one micro-batch per step)"
    return f"{value} micro-batches per step"


def _interval(value: Any, _all: Mapping[str, Any]) -> str:
    if value is None or not float(value):
        return "off"
    return format_seconds(float(value))


def _max_error(value: Any, _all: Mapping[str, Any]) -> str:
    if not isinstance(value, (int, float)):
        return _plain(value)
    return f"±{100 * value:.3g} % of the median step"


def _child_env(value: Any, _all: Mapping[str, Any]) -> str:
    return _plain(value) if value else "nothing added"


#: environment key -> (label, formatter or None for the plain value), in display order
def _peaks(value: Any, _all: Mapping[str, Any]) -> str:
    """``cpu fp32: 112 GFLOP/s [109–114] (2 threads)``, one per measured device peak."""
    from batchscope.units import format_flops

    if not isinstance(value, list) or not value:
        return "not measured"
    parts = []
    for p in value:
        if not isinstance(p, dict):
            continue
        head = f"{p.get('device')} {p.get('dtype')}"
        if p.get("error"):
            parts.append(f"{head}: not measured ({p['error']})")
            continue
        text = f"{head}: {format_flops(p.get('flops_per_s'))}"
        if p.get("flops_per_s_low") and p.get("flops_per_s_high"):
            low, high = format_flops(p["flops_per_s_low"]), format_flops(p["flops_per_s_high"])
            text += f" [{low.split()[0]}–{high}]" if low.split()[1:] == high.split()[1:] else ""
        if p.get("threads") and str(p.get("device", "")).startswith("cpu"):
            text += f" ({p['threads']} threads)"
        if p.get("vendor_flops_per_s"):
            text += f"; datasheet {format_flops(p['vendor_flops_per_s'])}"
        parts.append(text)
    return "; ".join(parts) or "not measured"


ENV_LABELS: dict[str, tuple[str, Formatter | None]] = {
    "hostname": ("Host name", None),
    "os": ("Operating system", None),
    "platform": ("Platform", None),
    "machine": ("Architecture", None),
    "cpu_model": ("CPU model", None),
    "cpu_cores_logical": ("CPU cores (logical)", None),
    "cpu_cores_physical": ("CPU cores (physical)", None),
    "cpu_affinity": ("CPU cores this process may use", None),
    "memory_bytes": ("Memory", _bytes_or("–")),
    "gpus": ("GPUs", _gpus),
    "mps": ("Apple MPS available", _yes_no),
    "devices": ("Devices available", None),
    "python": ("Python", None),
    "torch": ("PyTorch", None),
    "torchvision": ("torchvision", None),
    "cuda_build": ("CUDA (PyTorch build)", _or("none (CPU-only build)")),
    "cudnn": ("cuDNN", _or("none")),
    "torch_threads_default": ("PyTorch threads (default)", None),
    "device_peaks": ("Measured matmul peak (for MFU)", _peaks),
}

#: settings key -> (label, formatter), in display order
SETTINGS_LABELS: dict[str, tuple[str, Formatter | None]] = {
    "source": ("Source", None),
    "framework": ("Framework", None),
    "fit": ("fastai fit call", _or("–")),
    "batch_sizes": ("Batch sizes", None),
    "devices": ("Devices", None),
    "precisions": ("Precisions", None),
    "steps": ("Measured steps per trial", _steps),
    "epochs": ("Epochs", _or("–")),
    "freeze_epochs": ("Frozen epochs", None),
    "max_error": ("Adaptive steps: precision sought", _max_error),
    "max_time_s": ("Adaptive steps: time limit per trial", _seconds_or("none")),
    "min_steps": ("Adaptive steps: at least", lambda v, _all: f"{v} steps"),
    "warmup": ("Warm-up steps", None),
    "threads": ("Threads", _or("PyTorch default")),
    "seed": ("Seed", None),
    "repeats": ("Rounds (repeats)", None),
    "repeats_auto": ("Rounds chosen automatically", _yes_no),
    "max_rounds": ("Most rounds (automatic)", None),
    "auto_stopped_by": ("Automatic rounds stopped by", _or("–")),
    "time_budget_s": ("Time budget", _seconds_or("none")),
    "memory_limit_bytes": ("Memory limit", _bytes_or("none")),
    "drop_last": ("Drop the last partial batch", _yes_no),
    "workers": ("Data-loader workers", None),
    "breakdown": ("Step breakdown (--breakdown)", _yes_no),
    "sample_interval_s": ("Hardware sampling interval", _interval),
    "target": ("Target", _or("none")),
    "channels_last": ("Channels-last memory format", _yes_no),
    "compile": ("torch.compile", _yes_no),
    "accumulate": ("Gradient accumulation", _accumulate),
    "lr_scaling": ("Learning-rate scaling", None),
    "base_batch_size": ("Base batch size (learning-rate scaling)", _or("smallest planned")),
    "lr_warmup_steps": ("Learning-rate warm-up steps", None),
    "isolation": ("Isolation", None),
    "trial_timeout_s": ("Trial timeout", _seconds_or("none")),
    "child_env_cpu": ("Environment added for CPU trials", _child_env),
    "notes": ("Notes", lambda v, _all: "; ".join(map(str, v)) if v else "none"),
}


def _plain(value: Any) -> str:
    """A value without a known meaning, readably: lists joined, booleans as yes/no."""
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items()) if value else "none"
    return str(value)


def pretty_key(key: str) -> str:
    """``memory_limit_bytes`` → ``Memory limit``: a label for a key with no known one."""
    for suffix in ("_bytes", "_s"):
        if key.endswith(suffix) and len(key) > len(suffix):
            key = key[: -len(suffix)]
            break
    words = key.replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else key


def _guess(key: str, value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if key.endswith("_bytes"):
            return format_bytes(value)
        if key.endswith("_s"):
            return format_seconds(float(value))
    return _plain(value)


def readable_rows(
    values: Mapping[str, Any], labels: Mapping[str, tuple[str, Formatter | None]]
) -> list[list[str]]:
    """``[label, value]`` for every recorded key: the known ones first, in ``labels`` order."""
    keys = [k for k in labels if k in values]
    keys += [str(k) for k in values if k not in labels]
    rows = []
    for key in keys:
        label, fmt = labels.get(key, (pretty_key(key), None))
        value = values[key]
        rows.append([label, fmt(value, values) if fmt is not None else _guess(key, value)])
    return rows


def environment_rows(env: Mapping[str, Any]) -> list[list[str]]:
    """The machine and software, as readable ``[label, value]`` rows."""
    return readable_rows(env, ENV_LABELS)


def settings_rows(settings: Mapping[str, Any]) -> list[list[str]]:
    """The protocol, as readable ``[label, value]`` rows."""
    return readable_rows(settings, SETTINGS_LABELS)


def machine_summary(env: Mapping[str, Any]) -> str:
    parts = [str(env.get("cpu_model") or "unknown CPU")]
    if env.get("cpu_cores_logical") is not None:
        parts.append(f"{env.get('cpu_cores_logical')} logical cores")
    if env.get("memory_bytes") is not None:
        parts.append(f"{format_bytes(env.get('memory_bytes'))} memory")
    if env.get("os"):
        parts.append(str(env.get("os")))
    if env.get("hostname"):
        parts.append(f"host {env.get('hostname')}")
    return ", ".join(parts)


def software_summary(env: Mapping[str, Any]) -> str:
    return (
        f"Python {env.get('python') or '–'}, torch {env.get('torch') or '–'}, "
        f"torchvision {env.get('torchvision') or '–'}, CUDA {env.get('cuda_build') or '–'}"
    )


def protocol_summary(settings: Mapping[str, Any]) -> str:
    parts = []
    framework = settings.get("framework")
    if framework == "fastai":
        parts.append(f"fastai Learner, learn.{settings.get('fit') or 'fine_tune(1)'}")
    elif framework == "keras":
        parts.append(f"Keras model.fit, {settings.get('epochs') or 1} epoch(s)")
    elif framework == "lightning":
        epochs, steps = settings.get("epochs"), settings.get("steps")
        what = (
            f"{epochs} epoch(s)"
            if epochs is not None
            else f"{steps} measured steps per trial"
            if steps is not None
            else "adaptive steps"
        )
        parts.append(f"Lightning Trainer.fit, {what}")
    elif settings.get("epochs") is not None:
        parts.append(f"{settings.get('freeze_epochs') or 0} frozen + {settings['epochs']} epochs")
    elif settings.get("steps") is not None:
        parts.append(f"{settings['steps']} measured steps per trial")
    if settings.get("warmup") is not None:
        parts.append(f"after {settings['warmup']} warm-up steps")
    text = " ".join(parts) or "protocol not recorded"
    if settings.get("threads"):
        text += f", {settings['threads']} threads"
    if settings.get("seed") is not None:
        text += f", seed {settings['seed']}"
    text += f", {settings.get('repeats') or 1} repeat(s)"
    if settings.get("drop_last"):
        text += ", drop_last"
    if settings.get("memory_limit_bytes"):
        text += f", memory limit {format_bytes(settings['memory_limit_bytes'])}"
    if settings.get("isolation"):
        text += f", isolation {settings['isolation']}"
    return text


# ---------------------------------------------------------------- the run report


def _gpu_summary(env: Mapping[str, Any]) -> str | None:
    """'2 × NVIDIA H200 (139 GiB)': the GPUs in one phrase, for the header."""
    gpus = [g for g in env.get("gpus") or [] if isinstance(g, dict)]
    if not gpus:
        return None
    kinds = Counter(f"{g.get('name')} ({format_bytes(g.get('memory_bytes'))})" for g in gpus)
    return ", ".join(f"{n} × {k}" if n > 1 else k for k, n in kinds.items())


def _header_fields(run: RunResult) -> list[tuple[str, str]]:
    """The few lines above the verdict: what was trained, where, and how."""
    w, env = run.workload, run.environment
    machine = machine_summary(env)
    gpus = _gpu_summary(env)
    if gpus:
        machine += f"; GPU: {gpus}"
    return [
        ("Workload", f"{w.get('name', '?')} — {w.get('description') or 'no description'}"),
        ("Machine", machine),
        ("Protocol", protocol_summary(run.settings)),
    ]


def _run_fields(run: RunResult) -> list[tuple[str, str]]:
    """The rest of what identifies the run, shown after the plots."""
    w, env = run.workload, run.environment
    fields = [("Run", f"{run.run_id}, created {run.created}")]
    if w.get("spec") and w.get("spec") != w.get("name"):
        fields.append(("Workload spec", str(w.get("spec"))))
    if w.get("parameters") is not None:
        fields.append(("Parameters", f"{w.get('parameters'):,}"))
    options = {k: v for k, v in (w.get("options") or {}).items() if v not in (None, {}, [], "")}
    if options:
        fields.append(("Workload options", ", ".join(f"{k}={v}" for k, v in options.items())))
    for gpu in env.get("gpus") or []:
        if isinstance(gpu, dict):
            fields.append(
                (
                    f"GPU {gpu.get('index', '')}".strip(),
                    f"{gpu.get('name')}, {format_bytes(gpu.get('memory_bytes'))}",
                )
            )
    fields.append(("Software", software_summary(env)))
    fields.append(("Devices", ", ".join(run.devices) or "–"))
    return fields


def _run_notes(run: RunResult) -> list[str]:
    """The workload's and the sweep's notes (e.g. a busy machine): caveats on every number."""
    notes = [str(n) for n in run.workload.get("notes") or []]
    notes += [str(n) for n in run.settings.get("notes") or [] if str(n) not in notes]
    return notes + machine_lines(run)


#: the recommendation's choices after the first ("Use"), in the order they are listed
_OTHER_CHOICES = (
    ("Fastest", "best_throughput"),
    ("Largest that fits", "largest_that_fits"),
    ("Smallest within 5 % of the fastest", "smallest_near_best"),
    ("Reaches the target soonest", "reaches_target_soonest"),
)


def _recommendation_fields(d: DeviceAnalysis) -> list[tuple[str, str]]:
    """Every choice but "Use" (the verdict above the table says that one)."""
    out = []
    for label, attr in _OTHER_CHOICES:
        choice = getattr(d.recommendation, attr)
        if choice is not None:
            out.append((label, f"batch size {choice.batch_size} — {choice.reason}"))
    return out


def _verdict(d: DeviceAnalysis) -> tuple[str, int | None]:
    """The "use batch size …" line of a series, and that batch size."""
    use = d.recommendation.recommended or d.recommendation.best_throughput
    if use is None:
        return "no successful trial: no batch size to recommend", None
    return f"Use batch size {use.batch_size} — {use.reason}", use.batch_size


def _glance_blocks(run: RunResult, d: DeviceAnalysis, *, titled: bool) -> list[Block]:
    """A series' verdict and its results table: the first thing the report shows."""
    verdict, chosen = _verdict(d)
    blocks: list[Block] = [Heading(3, d.device)] if titled else []
    if not titled:  # the only series: say which it is in the line itself
        verdict = f"On {d.device}: {verdict[0].lower()}{verdict[1:]}"
    blocks.append(Paragraph(verdict, kind="verdict"))
    rows = device_rows(run, d.device, d)
    if rows:
        cols = headers(run)
        blocks.append(
            Table(
                headers=cols,
                rows=[r.cells() for r in rows],
                align=["right"] * (len(cols) - 1) + ["left"],
                failed_rows={i for i, r in enumerate(rows) if r.status != "ok"},
                chosen_rows={i for i, r in enumerate(rows) if r.batch_size == str(chosen)},
            )
        )
    return blocks


def _device_blocks(d: DeviceAnalysis) -> list[Block]:
    """A series' details: the other choices, shape and fits, causes, failures, warnings."""
    blocks: list[Block] = [Heading(2, f"Device {d.device}")]
    recs = _recommendation_fields(d)
    if recs:
        blocks += [Heading(3, "Recommendation"), Fields(recs)]
    fits: list[tuple[str, str]] = []
    if d.u_shape is not None:
        fits.append(("U shape", d.u_shape.message))
    for label, fit in (("Time per sample", d.time_fit), ("Throughput", d.throughput_fit)):
        text = describe_fit(fit) if fit is not None else "not fitted (too few batch sizes)"
        fits.append((label, text))
    if d.memory_fit is not None:
        fits.append(("Memory", memory_line(d.memory_fit).removeprefix("memory: ")))
    if d.memory_limit_bytes:
        fits.append(("Memory limit", format_bytes(d.memory_limit_bytes)))
    if d.efficiency_verdict is not None:
        fits.append(("Efficiency (MFU)", d.efficiency_verdict.reason))
    blocks += [Heading(3, "Shape and fits"), Fields(fits)]
    if d.causes:
        blocks += [Heading(3, "Measured causes"), Bullets(list(d.causes))]
    if d.notes:
        blocks.append(Bullets(list(d.notes), kind="muted"))
    if d.failed:
        blocks.append(
            Paragraph(
                "Failed batch sizes: "
                + "; ".join(
                    f"{b} ({status}: {d.errors[b]})" if d.errors.get(b) else f"{b} ({status})"
                    for b, status in sorted(d.failed.items())
                ),
                kind="muted",
            )
        )
    if d.warnings:
        blocks += [Heading(3, "Warnings"), Bullets(list(d.warnings), kind="warning")]
    return blocks


def _scaling_blocks(run: RunResult) -> list[Block]:
    """The data-parallel section (table with its world-size column, verdicts), when more
    than one world size ran."""
    from batchscope.report.scaling import HEADERS, scaling_lines, scaling_rows

    rows = scaling_rows(run)
    if not rows:
        return []
    return [
        Heading(2, "Data-parallel scaling"),
        Bullets(scaling_lines(run)),
        Table(HEADERS, rows, ["left", "left", *["right"] * (len(HEADERS) - 2)]),
        Paragraph(
            "Efficiency: samples/s ÷ (world size × the one-rank trial's samples/s of the same "
            "round, at the same per-device batch (weak) or global batch (strong)). Exposed "
            "comm: 1 − median step under no_sync() ÷ median synchronised step, from extra "
            "interleaved steps after the protocol; not determined when within the noise.",
            kind="muted",
        ),
    ]


def _key_value_table(rows: list[list[str]], what: str) -> Table:
    return Table(headers=[what, "Value"], rows=rows, align=["left", "left"], row_headers=True)


def report_document(
    run: RunResult, analysis: RunAnalysis | None = None, *, figures: Iterable[str] = ()
) -> Document:
    """The whole report; ``figures`` are the PNG file names to show (see :mod:`.plots`).

    Ordered for a reader with one question, "which batch size?": the verdict and the
    results table of every series come first (one screen), then speedups between
    series, the details behind each verdict, the plots, and last the full record of
    the machine and the protocol.
    """
    from batchscope.analyse.explain import analyse_run
    from batchscope.core.series import series_view
    from batchscope.report.plots import plot_caption, plot_title

    raw = run  # the scaling section reads the trials' world sizes, which the view folds in
    run = series_view(run)  # one section per (device, variant): "cpu bf16"
    if analysis is None:
        analysis = analyse_run(run)
    name = str(run.workload.get("name", "?"))
    blocks: list[Block] = [Fields(_header_fields(run)), Heading(2, "At a glance")]
    if not analysis.devices:
        blocks.append(Fields([("Trials", "none finished yet")]))
    titled = len(analysis.devices) > 1
    for d in analysis.devices:
        blocks += _glance_blocks(run, d, titled=titled)
    if any(device_rows(run, d.device, d) for d in analysis.devices):
        blocks.append(
            Paragraph(
                f"Brackets: the {INTERVAL_NAME} (95 % CI); (n): the measured steps, "
                "rounds × steps. Relative: samples/s as a share of the series' fastest."
                + (
                    " MFU: counted model FLOPs per second as a share of the device's matmul "
                    "peak measured on this machine."
                    if any(d.efficiency_verdict for d in analysis.devices)
                    else ""
                ),
                kind="muted",
            )
        )

    speed = [speedup_line(run, s) for s in [*analysis.speedups, *analysis.best_vs_best]]
    if speed:
        blocks += [Heading(2, "Speedups"), Bullets(speed)]
    blocks += _scaling_blocks(raw)
    notes = _run_notes(run)
    if notes:
        blocks += [Heading(2, "Notes"), Bullets(notes, kind="muted")]

    for d in analysis.devices:
        blocks += _device_blocks(d)

    figures = list(figures)
    if figures:
        blocks.append(Heading(2, "Plots"))
        blocks += [Figure(f, plot_title(f), plot_caption(f)) for f in figures]

    blocks += [Heading(2, "Run"), Fields(_run_fields(run))]
    for title, rows, what in (
        ("Environment", environment_rows(run.environment), "Machine and software"),
        ("Settings", settings_rows(run.settings), "Setting"),
    ):
        blocks.append(Heading(2, title))
        blocks.append(
            _key_value_table(rows, what) if rows else Paragraph("not recorded", kind="muted")
        )
    return Document(title=f"batchscope report: {name} — run {run.run_id}", blocks=blocks)


# ---------------------------------------------------------------- compare two runs

#: Environment keys worth showing first when two runs' machines differ.
_ENV_KEYS = (
    "hostname",
    "cpu_model",
    "cpu_cores_logical",
    "cpu_cores_physical",
    "cpu_affinity",
    "memory_bytes",
    "gpus",
    "os",
    "python",
    "torch",
    "torchvision",
    "cuda_build",
    "cudnn",
    "torch_threads_default",
)
_SETTINGS_KEYS = (
    "steps",
    "epochs",
    "freeze_epochs",
    "warmup",
    "threads",
    "seed",
    "repeats",
    "drop_last",
    "workers",
    "isolation",
    "memory_limit_bytes",
)
_WORKLOAD_KEYS = ("name", "spec", "options")


def workload_differences(a: RunResult, b: RunResult) -> list[tuple[str, str, str]]:
    """(key, A's, B's) for the workload fields that say *what* was trained."""
    return [
        (f"workload {k}", _env_value(k, a.workload.get(k)), _env_value(k, b.workload.get(k)))
        for k in _WORKLOAD_KEYS
        if a.workload.get(k) != b.workload.get(k)
    ]


def _differences(
    a: Mapping[str, Any], b: Mapping[str, Any], first: Sequence[str], prefix: str
) -> list[tuple[str, str, str]]:
    keys = [k for k in first if k in a or k in b]
    keys += sorted(k for k in set(a) | set(b) if k not in first)
    return [
        (f"{prefix}{k}", _env_value(k, a.get(k)), _env_value(k, b.get(k)))
        for k in keys
        if a.get(k) != b.get(k)
    ]


def device_pairs(a: RunResult, b: RunResult) -> list[tuple[str, str]]:
    """Which device of A to set against which of B: same names, else in order."""
    common = [d for d in a.devices if d in b.devices]
    if common:
        return [(d, d) for d in common]
    return list(zip(a.devices, b.devices, strict=False))


def b_versus_a(s: Speedup | None, b_name: str) -> str:
    """B against A per sample: '1.52× [1.48–1.56] faster', 'slower', or within the noise."""
    if s is None:
        return "–"
    faster = s.fast == b_name
    word = "faster" if faster else "slower"
    if s.low is None or s.high is None:
        return f"{s.ratio:.3g}× {word} (interval not determined)"
    span = f"[{s.low:.3g}–{s.high:.3g}]"
    if not s.faster_beyond_noise:
        return f"{s.ratio:.3g}× {span}: no difference beyond the noise"
    return f"{s.ratio:.3g}× {span} {word}"


def compare_document(a: RunResult, b: RunResult) -> Document:
    """``batchscope compare A B``: per batch size side by side, B's speedup over A.

    Rounds are combined as everywhere (:mod:`batchscope.analyse.points`) and variants are
    series of their own ("cpu bf16"), so a bf16 trial is never set against an fp32 one.
    """
    from batchscope.analyse.explain import analyse_run, side
    from batchscope.analyse.speedup import compare
    from batchscope.core.series import series_view

    a, b = series_view(a), series_view(b)
    ana_a, ana_b = analyse_run(a), analyse_run(b)
    blocks: list[Block] = []
    wdiff = workload_differences(a, b)
    if wdiff:
        what = "; ".join(f"{k}: {va} vs {vb}" for k, va, vb in wdiff)
        blocks.append(
            Paragraph(
                f"the workloads differ ({what}): A and B trained different things, "
                "so these ratios are not like for like",
                kind="warning",
            )
        )
    blocks.append(
        Table(
            headers=["", "A", "B"],
            rows=[
                ["Run", a.run_id, b.run_id],
                ["Created", a.created, b.created],
                ["Workload", str(a.workload.get("name", "?")), str(b.workload.get("name", "?"))],
                ["Devices", ", ".join(a.devices) or "–", ", ".join(b.devices) or "–"],
                ["Machine", machine_summary(a.environment), machine_summary(b.environment)],
                ["Software", software_summary(a.environment), software_summary(b.environment)],
                ["Protocol", protocol_summary(a.settings), protocol_summary(b.settings)],
            ],
            align=["left", "left", "left"],
        )
    )
    pairs = device_pairs(a, b)
    if not pairs:
        blocks.append(Paragraph("nothing to compare: a run has no trials", kind="warning"))
    bests: list[str] = []
    for da, db in pairs:
        name = da if da == db else f"A {da} vs B {db}"
        sa, sb = ana_a.device(da), ana_b.device(db)
        if sa is None or sb is None:
            continue
        sizes = sorted(
            {p.batch_size for p in sa.points}
            | {p.batch_size for p in sb.points}
            | set(sa.failed)
            | set(sb.failed)
        )
        rows = []
        failed = set()
        for i, bs in enumerate(sizes):
            pa, pb = sa.point(bs), sb.point(bs)
            if bs in sa.failed or bs in sb.failed:
                failed.add(i)
            ratio = None
            if pa is not None and pb is not None:
                ratio = compare(side(a, sa, pa, "A"), side(b, sb, pb, "B"), bs)
            rows.append(
                [
                    str(bs),
                    samples_per_s(pa) if pa else sa.failed.get(bs, "–"),
                    samples_per_s(pb) if pb else sb.failed.get(bs, "–"),
                    step_time(pa) if pa else "–",
                    step_time(pb) if pb else "–",
                    b_versus_a(ratio, "B"),
                ]
            )
        blocks += [
            Heading(2, f"Device {name}"),
            Table(
                headers=[
                    "Batch size",
                    "A samples/s [95 % CI]",
                    "B samples/s [95 % CI]",
                    "A step time [95 % CI]",
                    "B step time [95 % CI]",
                    "B vs A (per sample)",
                ],
                rows=rows,
                align=["right"] * 6,
                failed_rows=failed,
            ),
        ]
        best_a, best_b = sa.best_point(), sb.best_point()
        if best_a is not None and best_b is not None:
            s_best = compare(side(a, sa, best_a, "A"), side(b, sb, best_b, "B"), None)
            bests.append(
                f"{name}: B at its best (batch size {best_b.batch_size}, "
                f"{samples_per_s(best_b)} samples/s) is {b_versus_a(s_best, 'B')} than A at "
                f"its best (batch size {best_a.batch_size}, {samples_per_s(best_a)} samples/s)"
            )
    if bests:
        blocks += [Heading(2, "Best vs best"), Bullets(bests)]
    diffs = (
        wdiff
        + _differences(a.settings, b.settings, _SETTINGS_KEYS, "")
        + _differences(a.environment, b.environment, _ENV_KEYS, "")
    )
    diffs = [d for d in diffs if d[0] not in ("batch_sizes", "devices")]
    blocks.append(Heading(2, "What differs between A and B"))
    if diffs:
        blocks.append(
            Table(
                headers=["Setting", "A", "B"],
                rows=[list(d) for d in diffs],
                align=["left", "left", "left"],
            )
        )
    else:
        blocks.append(Paragraph("same workload, protocol, machine and software"))
    return Document(title=f"batchscope compare: A {a.run_id} vs B {b.run_id}", blocks=blocks)


# ---------------------------------------------------------------- Markdown rendering

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|&#~!])")
#: what would start a list, quote or heading when it opens a line: "1. ", "- ", "+ ", "= "
_MD_LEADING = re.compile(r"^(\s*)(?:(\d{1,9})([.)])|([-+=]))(?=\s|$)")


def md_escape(text: object, *, line_start: bool = False) -> str:
    """Plain text → Markdown that shows exactly that text, on one line.

    ``line_start``: the text opens a line (a bullet's or paragraph's first words), so a
    leading '1. ' or '- ' is escaped too, lest it start a nested list.
    """
    s = " ".join(str(text).replace("\r", " ").split("\n"))
    s = _MD_SPECIAL.sub(r"\\\1", s)
    if not line_start:
        return s
    return _MD_LEADING.sub(
        lambda m: (
            f"{m.group(1)}{m.group(2)}\\{m.group(3)}"
            if m.group(2)
            else f"{m.group(1)}\\{m.group(4)}"
        ),
        s,
        count=1,
    )


def _md_table(t: Table) -> list[str]:
    lines = ["| " + " | ".join(md_escape(h) for h in t.headers) + " |"]
    lines.append("|" + "|".join("---:" if a == "right" else ":---" for a in t.align) + "|")
    for row in t.rows:
        lines.append("| " + " | ".join(md_escape(c) for c in row) + " |")
    return lines


def render_markdown(doc: Document, *, images: bool = True) -> str:
    """The document as Markdown; figures link their PNG files (relative paths)."""
    lines = [f"# {md_escape(doc.title)}"]
    for block in doc.blocks:
        lines.append("")
        if isinstance(block, Heading):
            lines.append(f"{'#' * min(6, block.level)} {md_escape(block.text)}")
        elif isinstance(block, Paragraph):
            prefix = "> **Warning:** " if block.kind == "warning" else ""
            text = md_escape(block.text, line_start=True)
            if block.kind == "muted":
                text = f"*{text}*"
            elif block.kind == "verdict":
                text = f"**{text}**"
            lines.append(f"{prefix}{text}")
        elif isinstance(block, Bullets):
            prefix = "⚠ " if block.kind == "warning" else ""
            lines += [f"- {prefix}{md_escape(item, line_start=True)}" for item in block.items]
        elif isinstance(block, Fields):
            lines += [f"- **{md_escape(k)}:** {md_escape(v)}" for k, v in block.items]
        elif isinstance(block, Table):
            lines += _md_table(block)
        elif isinstance(block, Figure):
            if images:
                lines.append(f"![{md_escape(block.title)}]({block.filename})")
                if block.caption:
                    lines += ["", f"*{md_escape(block.caption, line_start=True)}*"]
            else:
                lines.pop()
    return "\n".join(lines) + "\n"


def to_markdown(
    run: RunResult,
    analysis: RunAnalysis | None = None,
    *,
    figures: Iterable[str] = (),
) -> str:
    """The full Markdown report. ``figures``: PNG file names lying next to the file."""
    return render_markdown(report_document(run, analysis, figures=figures))
