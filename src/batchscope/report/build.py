"""Write a run's report folder: report.md, report.html and the PNG plots.

::

    batchscope-results/20260101-120000-ab12/
        report.html        one self-contained file (plots embedded), open it anywhere
        report.md          the same content; links the PNGs below
        time_per_sample.png  throughput.png  memory.png  relative.png

The analysis runs once and the plots are rendered once for both files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchscope.core.results import SCHEMA, RunResult
from batchscope.errors import ExportError

if TYPE_CHECKING:
    from batchscope.analyse.explain import RunAnalysis

#: Where reports go when the user names no folder: ``./batchscope-results/RUN_ID/``.
DEFAULT_REPORT_ROOT = "batchscope-results"


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote."""

    directory: Path
    markdown: Path
    html: Path
    #: the PNG plots, in report order
    images: list[Path] = field(default_factory=list)

    @property
    def all(self) -> list[Path]:
        return [self.html, self.markdown, *self.images]


def default_report_dir(run_id: str) -> Path:
    return Path(DEFAULT_REPORT_ROOT) / run_id


def check_report_dir(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """Fail early (before a sweep) when ``path`` cannot become a report folder."""
    p = Path(path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ExportError(f"{flag} {str(p)!r} is a file, not a folder: give a folder")
        if not os.access(p, os.W_OK | os.X_OK):
            raise ExportError(f"{flag} {str(p)!r}: folder is not writable")
        return p
    ancestor = p.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ExportError(f"{flag} {str(p)!r}: {str(ancestor)!r} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ExportError(f"{flag} {str(p)!r}: folder {str(ancestor)!r} is not writable")
    return p


def _make_dir(path: Path, flag: str) -> None:
    check_report_dir(path, flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(
            f"cannot create report folder {str(path)!r}: {exc.strerror or exc}"
        ) from exc


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise ExportError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc


def write_report(
    run: RunResult,
    out_dir: str | os.PathLike[str],
    analysis: RunAnalysis | None = None,
    *,
    flag: str = "--out",
) -> ReportFiles:
    """Analyse ``run`` (unless ``analysis`` is given), plot, and write the report folder.

    Creates ``out_dir`` and its parents; raises :class:`~batchscope.errors.ExportError`
    when it cannot. Files already there with the same names are replaced.
    """
    from batchscope.report.html import render_html
    from batchscope.report.markdown import render_markdown, report_document
    from batchscope.report.plots import PLOTS, render_plots

    directory = Path(out_dir).expanduser()
    _make_dir(directory, flag)
    if analysis is None:
        from batchscope.analyse.explain import analyse_run

        analysis = analyse_run(run)
    plots = render_plots(analysis, workload=str(run.workload.get("name", "")))
    if plots:  # the hardware timeline and step split, when the trials recorded them
        from batchscope.core.series import series_view
        from batchscope.report.timeline import render_hardware_plots

        plots.update(render_hardware_plots(series_view(run), analysis))  # per (device, variant)
        from batchscope.report.scaling import render_scaling_plots

        plots.update(render_scaling_plots(run))  # data parallel: more than one world size
    doc = report_document(run, analysis, figures=list(plots))
    images = []
    for name, png in plots.items():
        _write(directory / name, png)
        images.append(directory / name)
    for spec in PLOTS:  # a figure this run lacks must not linger from an earlier report
        stale = directory / spec.filename
        if spec.filename not in plots and stale.is_file():
            try:
                stale.unlink()
            except OSError as exc:
                raise ExportError(f"cannot remove {str(stale)!r}: {exc.strerror or exc}") from exc
    md = directory / "report.md"
    _write(md, render_markdown(doc).encode("utf-8"))
    page = directory / "report.html"
    _write(page, render_html(doc, plots).encode("utf-8"))
    return ReportFiles(directory=directory, markdown=md, html=page, images=images)


def load_results_json(path: str | os.PathLike[str]) -> RunResult:
    """Read a results JSON (schema ``batchscope.results/1``) with one-line errors."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExportError(f"no such results file: {str(p)!r}") from None
    except IsADirectoryError:
        raise ExportError(f"{str(p)!r} is a folder, not a results JSON file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ExportError(f"cannot read {str(p)!r}: {reason}") from exc
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportError(
            f"{str(p)!r} is not JSON (line {exc.lineno}: {exc.msg}); "
            f"expected a batchscope results file ({SCHEMA})"
        ) from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if not isinstance(schema, str) or not schema.startswith("batchscope.results/"):
        raise ExportError(
            f'{str(p)!r} is not a batchscope results file: it has no "schema": "{SCHEMA}" '
            "(write one with 'batchscope sweep ... --json FILE')"
        )
    if schema != SCHEMA:
        raise ExportError(f"{str(p)!r} has schema {schema!r}; this batchscope reads {SCHEMA!r}")
    try:
        return RunResult.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ExportError(
            f"{str(p)!r} is a damaged batchscope results file ({type(exc).__name__}: {exc})"
        ) from None
