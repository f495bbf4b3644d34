"""The report as ONE self-contained HTML file.

Same content as the Markdown report (both render :func:`.markdown.report_document`),
with the plots embedded as ``data:image/png;base64`` URIs and the CSS inline. The file
loads nothing: no scripts, no fonts, no external URLs; a Content-Security-Policy
``default-src 'none'`` makes the browser refuse anything else even if it were there.
Every string from the run (workload names, notes, errors, hostnames, paths,
environment values) goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import re
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING

from batchscope.core.results import RunResult
from batchscope.report.markdown import (
    Bullets,
    Document,
    Fields,
    Figure,
    Heading,
    Paragraph,
    Table,
    report_document,
)

if TYPE_CHECKING:
    from batchscope.analyse.explain import RunAnalysis

#: Nothing may load but inline styles and data: images.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  margin: 0 auto; max-width: 1100px; padding: 1rem 2rem 3rem; color: #1d1d1f;
  line-height: 1.4; background: #fff; }
h1 { font-size: 1.45rem; margin: 0 0 .5rem; border-bottom: 2px solid #444;
  padding-bottom: .3rem; overflow-wrap: anywhere; }
h2 { font-size: 1.2rem; margin: 1.6rem 0 .5rem; border-bottom: 1px solid #ddd;
  padding-bottom: .2rem; }
h3 { font-size: 1.02rem; margin: 1rem 0 .3rem; color: #333; }
ul { margin: .3rem 0 .8rem; padding-left: 1.3rem; }
li { margin: .15rem 0; }
ul.fields { list-style: none; padding-left: 0; }
ul.fields b { color: #333; }
ul.muted { color: #555; }
ul.header { margin: 0 0 .4rem; font-size: .92rem; }
ul.header li { margin: .05rem 0; }
.table-wrap { overflow-x: auto; max-width: 100%; margin: .4rem 0 .8rem; }
table { border-collapse: collapse; font-size: .9rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: .25rem .55rem; vertical-align: top; }
thead th { background: #f3f5f7; text-align: left; }
th.r, td.r { text-align: right; }
td.r { white-space: nowrap; }
td.l { text-align: left; overflow-wrap: anywhere; }
tr.failed td { color: #b00020; background: #fff5f5; }
tr.chosen td { background: #eaf5ea; font-weight: 600; }
table.kv { width: 100%; max-width: 56rem; table-layout: fixed; }
table.kv thead th:first-child { width: 18rem; }
table.kv tbody th { background: #fafbfc; text-align: left; font-weight: 600; color: #333; }
p.verdict { font-weight: 600; font-size: 1.02rem; margin: .5rem 0 .3rem;
  background: #eaf5ea; border-left: 4px solid #2e7d32; padding: .35rem .6rem; }
p.warning, li.warning { background: #fff8db; border-left: 4px solid #e6a700;
  padding: .35rem .6rem; }
li.warning { list-style: none; margin-left: -1.3rem; }
p.muted { color: #666; font-style: italic; font-size: .9rem; margin: .2rem 0 .6rem; }
figure { margin: 1rem 0 1.6rem; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #e3e3e3; }
figcaption { color: #444; font-size: .9rem; margin-top: .35rem; max-width: 60rem; }
footer { margin-top: 3rem; color: #888; font-size: .8rem; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _align(t: Table, column: int) -> str:
    return "r" if column < len(t.align) and t.align[column] == "right" else "l"


_BRACKETED = re.compile(r"\[[^\]]*\]")


def _header(text: str) -> str:
    """A column header that may wrap between words but never inside "[95 % CI]"."""
    return _e(_BRACKETED.sub(lambda m: m.group(0).replace(" ", "\u00a0"), text))


def _table(t: Table) -> str:
    """Numbers right-aligned (headers too); wide tables scroll inside their box, not the page."""
    head = "".join(f'<th class="{_align(t, j)}">{_header(h)}</th>' for j, h in enumerate(t.headers))
    body = []
    for i, row in enumerate(t.rows):
        classes = [
            c for c, rows in (("failed", t.failed_rows), ("chosen", t.chosen_rows)) if i in rows
        ]
        cls = f' class="{" ".join(classes)}"' if classes else ""
        cells = []
        for j, c in enumerate(row):
            if j == 0 and t.row_headers:
                cells.append(f'<th scope="row">{_e(c)}</th>')
            else:
                cells.append(f'<td class="{_align(t, j)}">{_e(c)}</td>')
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    kind = ' class="kv"' if t.row_headers else ""
    return (
        f'<div class="table-wrap"><table{kind}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def render_html(doc: Document, plots: Mapping[str, bytes]) -> str:
    """The document as a standalone page; ``plots`` maps figure file names to PNG bytes."""
    parts: list[str] = []
    for block in doc.blocks:
        if isinstance(block, Heading):
            level = min(6, max(2, block.level))
            parts.append(f"<h{level}>{_e(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            if block.kind == "warning":
                parts.append(f'<p class="warning"><b>Warning:</b> {_e(block.text)}</p>')
            else:
                parts.append(f'<p class="{_e(block.kind)}">{_e(block.text)}</p>')
        elif isinstance(block, Bullets):
            cls = ' class="warning"' if block.kind == "warning" else ""
            items = "".join(f"<li{cls}>{_e(item)}</li>" for item in block.items)
            parts.append(
                f'<ul class="muted">{items}</ul>' if block.kind == "muted" else f"<ul>{items}</ul>"
            )
        elif isinstance(block, Fields):
            items = "".join(f"<li><b>{_e(k)}:</b> {_e(v)}</li>" for k, v in block.items)
            cls = "fields header" if not parts else "fields"  # the lines under the title
            parts.append(f'<ul class="{cls}">{items}</ul>')
        elif isinstance(block, Table):
            parts.append(_table(block))
        elif isinstance(block, Figure):
            png = plots.get(block.filename)
            if png is None:
                continue
            width, height = png_size(png)
            caption = f"<figcaption>{_e(block.caption)}</figcaption>" if block.caption else ""
            parts.append(
                f'<figure><img src="{data_uri(png)}" alt="{_e(block.title)}" '
                f'width="{width}" height="{height}">{caption}</figure>'
            )
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(doc.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{_e(doc.title)}</h1>\n{body}\n"
        "<footer>Written by batchscope. Self-contained: this file loads nothing.</footer>\n"
        "</body>\n</html>\n"
    )


def to_html(
    run: RunResult,
    analysis: RunAnalysis | None = None,
    *,
    plots: Mapping[str, bytes] | None = None,
) -> str:
    """The full HTML report. Renders the plots unless ``plots`` are given."""
    from batchscope.report.plots import render_plots

    if analysis is None:
        from batchscope.analyse.explain import analyse_run

        analysis = analyse_run(run)
    if plots is None:
        plots = render_plots(analysis, workload=str(run.workload.get("name", "")))
    doc = report_document(run, analysis, figures=list(plots))
    return render_html(doc, plots)
