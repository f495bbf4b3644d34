"""A run as a notebook shows it (``RunResult._repr_html_``): verdicts and the table."""

from __future__ import annotations

import html

from batchscope.analyse.explain import analyse_run
from batchscope.core.results import RunResult
from batchscope.core.series import series_view
from batchscope.report.rows import device_rows, headers


def run_html(run: RunResult) -> str:
    """Escaped HTML: a line per series with the batch size to use, then its table."""
    view = series_view(run)
    analysis = analyse_run(view)
    parts = [
        f"<p><b>{html.escape(run.run_id)}</b> {html.escape(str(run.workload.get('name', '?')))}</p>"
    ]
    for d in analysis.devices:
        use = d.recommendation.recommended
        verdict = f"use b={use.batch_size}: {use.reason}" if use else "no verdict"
        parts.append(f"<p><b>{html.escape(d.device)}</b>: {html.escape(verdict)}</p>")
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers(view))
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.cells()) + "</tr>"
            for r in device_rows(view, d.device, d)
        )
        parts.append(f"<table><tr>{head}</tr>{body}</table>")
    return "\n".join(parts)
