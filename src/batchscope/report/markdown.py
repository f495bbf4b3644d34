"""The full report as a document model, and its Markdown rendering.

:func:`report_document` turns a run and its analysis into a renderer-neutral list
of blocks (headings, fields, tables, figures ...), holding *plain text only*. The
Markdown renderer here and the HTML renderer in :mod:`.html` escape every string
they emit, so a workload name, note, error message or environment value can never
turn into markup. :func:`compare_document` does the same for ``batchscope compare``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchscope.analyse.speedup import Speedup, best_throughput, ok_trials, per_sample, speedup
from batchscope.core.results import RunResult, TrialResult
from batchscope.report.rows import device_rows, headers
from batchscope.units import format_bytes, format_seconds, format_with_spread

if TYPE_CHECKING:
    from batchscope.analyse.curves import CurveFit, Estimate
    from batchscope.analyse.explain import DeviceAnalysis, RunAnalysis

# ---------------------------------------------------------------- the document model


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Paragraph:
    text: str
    #: "text", "warning" (shown in yellow / as a quote) or "muted"
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


@dataclass
class Figure:
    """A plot, by the file name of its PNG (``time_per_sample.png``)."""

    filename: str
    title: str


Block = Heading | Paragraph | Bullets | Fields | Table | Figure


@dataclass
class Document:
    title: str
    blocks: list[Block]


# ---------------------------------------------------------------- formatting helpers


def _finite(v: float | None) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _fmt_param(name: str, value: float, *, unit: bool = True) -> str:
    if not _finite(value):
        return "–"
    if name in ("c", "t_min"):
        return "0" if value == 0 else format_seconds(value)
    if name == "alpha":
        return f"{value:.3g}"
    if name == "x_max":
        return f"{value:,.4g}" + (" samples/s" if unit else "")
    if name == "b_half":
        return f"{value:.3g}"
    return f"{value:.4g}"


_PARAM_NAMES = {"alpha": "α", "t_min": "T_min", "x_max": "x_max", "b_half": "b½", "c": "c"}


def format_estimate(name: str, est: Estimate) -> str:
    """'α = 0.62 (95 % CI 0.55 – 0.70)', or '(95 % CI unknown)'."""
    label = _PARAM_NAMES.get(name, name)
    text = f"{label} = {_fmt_param(name, est.value)}"
    if _finite(est.low) and _finite(est.high):
        low = _fmt_param(name, est.low, unit=False)
        high = _fmt_param(name, est.high, unit=False)
        return f"{text} (95 % CI {low} – {high})"
    return f"{text} (95 % CI unknown)"


def format_fit(fit: CurveFit) -> str:
    """Parameters with 95 % intervals, R² and the verdict; only the verdict if it does not fit."""
    if not fit.ok:
        return f"{fit.formula}: {fit.verdict}"
    params = "; ".join(format_estimate(k, v) for k, v in fit.params.items())
    r2 = f"R² = {fit.r2:.4f}" if _finite(fit.r2) else "R² –"
    return f"{fit.formula}: {params}; {r2}, n = {fit.n} — {fit.verdict}"


def speedup_text(s: Speedup) -> str:
    """hyperfine's phrasing: 'cuda:0 ran 45.8 ± 0.6 times faster than cpu at batch size 64'."""
    text = f"{s.fast} ran {s.ratio:.3g} ± {s.error:.2g} times faster than {s.slow}"
    if s.batch_size is not None:
        return f"{text} at batch size {s.batch_size} (per sample)"
    fast_b = getattr(s, "fast_batch_size", None)
    slow_b = getattr(s, "slow_batch_size", None)
    where = f"b={fast_b} vs b={slow_b}, " if fast_b is not None and slow_b is not None else ""
    return f"{text}, best against best ({where}per sample)"


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


def _header_fields(run: RunResult) -> list[tuple[str, str]]:
    w, env = run.workload, run.environment
    fields = [
        ("Run", f"{run.run_id}, created {run.created}"),
        ("Workload", f"{w.get('name', '?')} — {w.get('description') or 'no description'}"),
    ]
    if w.get("spec") and w.get("spec") != w.get("name"):
        fields.append(("Workload spec", str(w.get("spec"))))
    if w.get("parameters") is not None:
        fields.append(("Parameters", f"{w.get('parameters'):,}"))
    options = {k: v for k, v in (w.get("options") or {}).items() if v not in (None, {}, [], "")}
    if options:
        fields.append(("Workload options", ", ".join(f"{k}={v}" for k, v in options.items())))
    for note in w.get("notes") or []:
        fields.append(("Note", str(note)))
    fields.append(("Machine", machine_summary(env)))
    for gpu in env.get("gpus") or []:
        if isinstance(gpu, dict):
            fields.append(
                (
                    f"GPU {gpu.get('index', '')}".strip(),
                    f"{gpu.get('name')}, {format_bytes(gpu.get('memory_bytes'))}",
                )
            )
    fields.append(("Software", software_summary(env)))
    fields.append(("Protocol", protocol_summary(run.settings)))
    fields.append(("Devices", ", ".join(run.devices) or "–"))
    return fields


def _recommendation_fields(d: DeviceAnalysis) -> list[tuple[str, str]]:
    rec = d.recommendation
    out = []
    for label, choice in (
        ("Best throughput", rec.best_throughput),
        ("Largest that fits", rec.largest_that_fits),
        ("Smallest within 5 % of the best", rec.smallest_near_best),
        ("Reaches the target soonest", rec.reaches_target_soonest),
    ):
        if choice is not None:
            out.append((label, f"batch size {choice.batch_size} — {choice.reason}"))
    return out


def _bytes_interval(ci: object) -> str:
    if isinstance(ci, (tuple, list)) and len(ci) == 2 and all(_finite(v) for v in ci):
        return f" (95 % CI {format_bytes(ci[0])} – {format_bytes(ci[1])})"
    return ""


def _device_blocks(run: RunResult, d: DeviceAnalysis) -> list[Block]:
    blocks: list[Block] = [Heading(2, f"Device {d.device}")]
    rows = device_rows(run, d.device)
    if rows:
        cols = headers(run)
        blocks.append(
            Table(
                headers=cols,
                rows=[list(vars(r).values()) for r in rows],
                align=["right"] * (len(cols) - 1) + ["left"],
                failed_rows={i for i, r in enumerate(rows) if r.status != "ok"},
            )
        )
    fits: list[tuple[str, str]] = []
    if d.time_fit is not None:
        fits.append(("Time per sample", format_fit(d.time_fit)))
    else:
        fits.append(("Time per sample", "not fitted (too few successful batch sizes)"))
    if d.throughput_fit is not None:
        fits.append(("Throughput", format_fit(d.throughput_fit)))
    else:
        fits.append(("Throughput", "not fitted (too few successful batch sizes)"))
    if d.memory_fit is not None:
        m = d.memory_fit
        a_ci = _bytes_interval(getattr(m, "a_ci95_bytes", None))
        m_ci = _bytes_interval(getattr(m, "m_ci95_bytes", None))
        fits.append(
            (
                "Memory",
                f"peak ≈ a + m·b with a = {format_bytes(m.a_bytes)}{a_ci}, "
                f"m = {format_bytes(m.m_bytes_per_sample)} per sample{m_ci}; "
                f"R² = {m.r2:.4f}, n = {m.n}",
            )
        )
    if d.memory_limit_bytes:
        fits.append(("Memory limit", format_bytes(d.memory_limit_bytes)))
    if d.u_shape is not None:
        fits.append(("U shape", d.u_shape.message))
    blocks += [Heading(3, "Curve fits"), Fields(fits)]
    if d.causes:
        blocks += [Heading(3, "Measured causes"), Bullets(list(d.causes))]
    recs = _recommendation_fields(d)
    blocks.append(Heading(3, "Recommendation"))
    blocks.append(Fields(recs) if recs else Paragraph("no recommendation: no trial succeeded"))
    if d.failed:
        blocks.append(
            Paragraph(
                "Failed batch sizes: "
                + ", ".join(f"{b} ({status})" for b, status in sorted(d.failed.items())),
                kind="muted",
            )
        )
    if d.warnings:
        blocks += [Heading(3, "Warnings"), Bullets(list(d.warnings), kind="warning")]
    return blocks


def report_document(
    run: RunResult, analysis: RunAnalysis | None = None, *, figures: Iterable[str] = ()
) -> Document:
    """The whole report; ``figures`` are the PNG file names to show (see :mod:`.plots`)."""
    from batchscope.analyse.explain import analyse_run
    from batchscope.engine.variants import series_view
    from batchscope.report.plots import plot_title

    run = series_view(run)  # one section per (device, variant): "cpu bf16"
    if analysis is None:
        analysis = analyse_run(run)
    name = str(run.workload.get("name", "?"))
    blocks: list[Block] = [Fields(_header_fields(run))]

    glance: list[tuple[str, str]] = [] if analysis.devices else [("Trials", "none finished yet")]
    for d in analysis.devices:
        best = d.recommendation.best_throughput
        if best is not None:
            glance.append((d.device, f"use batch size {best.batch_size} — {best.reason}"))
        else:
            glance.append((d.device, "no successful trial"))
    blocks += [Heading(2, "At a glance"), Fields(glance)]

    speed = [speedup_text(s) for s in [*analysis.speedups, *analysis.best_vs_best]]
    if speed:
        blocks += [Heading(2, "Speedups"), Bullets(speed)]

    figures = list(figures)
    if figures:
        blocks.append(Heading(2, "Plots"))
        blocks += [Figure(f, plot_title(f)) for f in figures]

    for d in analysis.devices:
        blocks += _device_blocks(run, d)

    for title, values in (("Environment", run.environment), ("Settings", run.settings)):
        blocks.append(Heading(2, title))
        if values:
            blocks.append(Fields(environment_fields(values)))
        else:
            blocks.append(Paragraph("not recorded", kind="muted"))
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


def _trial_map(run: RunResult, device: str) -> dict[int, TrialResult]:
    """Batch size -> trial of ``device`` in a run already merged (one trial per size)."""
    return {t.batch_size: t for t in run.trials if t.device == device}


def _sps(t: TrialResult | None) -> str:
    if t is None:
        return "–"
    if not t.ok:
        return t.status
    return f"{t.samples_per_s:,.1f}" if t.samples_per_s else "–"


def _step(t: TrialResult | None) -> str:
    if t is None or not t.ok or t.step_time_s is None:
        return "–"
    s = t.step_time_s
    return f"{format_with_spread(s.median, s.iqr, 1e3)} ms"


def _ratio(ta: TrialResult | None, tb: TrialResult | None) -> str:
    """B against A per sample: '1.52 ± 0.04× faster' (or slower), hyperfine's formula."""
    if ta is None or tb is None or not ta.ok or not tb.ok:
        return "–"
    if ta.step_time_s is None or tb.step_time_s is None:
        return "–"
    am, asd = per_sample(ta)
    bm, bsd = per_sample(tb)
    if am <= 0 or bm <= 0:
        return "–"
    if am >= bm:
        ratio, err = speedup(am, asd, bm, bsd)
        return f"{ratio:.3g} ± {err:.2g}× faster"
    ratio, err = speedup(bm, bsd, am, asd)
    return f"{ratio:.3g} ± {err:.2g}× slower"


def _best_trial(run: RunResult, device: str) -> TrialResult | None:
    trials = ok_trials(run, device)
    best = best_throughput(trials)
    if best is None:
        return None
    return next(t for t in trials if t.samples_per_s == best)


def compare_document(a: RunResult, b: RunResult) -> Document:
    """``batchscope compare A B``: per batch size side by side, B's speedup over A.

    Repeats are pooled and variants are series of their own ("cpu bf16"), so every
    measured step counts and a bf16 trial is never set against an fp32 one.
    """
    from batchscope.analyse.speedup import merge_repeats
    from batchscope.engine.variants import series_view

    a, b = merge_repeats(series_view(a)), merge_repeats(series_view(b))
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
        ta_by, tb_by = _trial_map(a, da), _trial_map(b, db)
        sizes = sorted(set(ta_by) | set(tb_by))
        rows = []
        failed = set()
        for i, bs in enumerate(sizes):
            ta, tb = ta_by.get(bs), tb_by.get(bs)
            if (ta is not None and not ta.ok) or (tb is not None and not tb.ok):
                failed.add(i)
            rows.append([str(bs), _sps(ta), _sps(tb), _step(ta), _step(tb), _ratio(ta, tb)])
        blocks += [
            Heading(2, f"Device {name}"),
            Table(
                headers=[
                    "Batch size",
                    "A samples/s",
                    "B samples/s",
                    "A step time (median ± IQR)",
                    "B step time (median ± IQR)",
                    "B vs A (per sample)",
                ],
                rows=rows,
                align=["right"] * 6,
                failed_rows=failed,
            ),
        ]
        best_a, best_b = _best_trial(a, da), _best_trial(b, db)
        if best_a is not None and best_b is not None:
            bests.append(
                f"{name}: B at its best (batch size {best_b.batch_size}, "
                f"{best_b.samples_per_s:,.1f} samples/s) is "
                f"{_ratio(best_a, best_b)} than A at its best (batch size "
                f"{best_a.batch_size}, {best_a.samples_per_s:,.1f} samples/s)"
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
            lines.append(f"{prefix}{'*' + text + '*' if block.kind == 'muted' else text}")
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
