"""The HTML report in a real browser: headless Chromium opens it and decodes every plot.

Needs a ``chromium`` binary (Debian: ``apt-get install chromium``); skipped without one.
The report itself carries no script (its CSP forbids one), so the test loads a *copy*
to which it adds a small script that, after the load event, writes into the title how
many <img> decoded (naturalWidth > 0) and their sizes; ``--dump-dom`` shows the title.
A copy with one deliberately broken image proves the probe notices a failure, a
screenshot of the untouched report shows the plots' colours on the page, and a layout
probe at 1,200 px checks that the verdict and tables come first, above the plots.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from batchscope.core.results import RunResult, StepStats, TrialResult
from batchscope.report.build import write_report
from batchscope.report.html import CSP
from batchscope.report.plots import DPI, FIGSIZE

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (Debian package: chromium)"
)

PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.title = "decoded " + ok.length + "/" + imgs.length + " " +
    imgs.map(function (i) { return i.naturalWidth + "x" + i.naturalHeight; }).join(",");
});
</script>"""


def _run() -> RunResult:
    trials = []
    for i, device in enumerate(("cpu", "cuda:0")):
        for b in (16, 32, 64, 128):
            step = (0.02 / b**0.7 + 0.004) * b / (1 + 9 * i)
            stats = StepStats.from_samples([step * (1 + 0.01 * k) for k in range(8)])
            trials.append(
                TrialResult(
                    device=device,
                    batch_size=b,
                    step_time_s=stats,
                    samples_per_s=b / stats.median,
                    peak_memory_bytes=int(1e8 + 1e7 * b),
                )
            )
    return RunResult(
        run_id="20260101-120000-beef",
        created="2026-01-01T12:00:00+00:00",
        workload={"name": "<script>alert(1)</script>", "notes": []},
        settings={"steps": 8, "warmup": 2},
        environment={"cpu_model": "Test CPU"},
        trials=trials,
    )


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _probe(
    tmp_path: Path, page: str, name: str, script: str = PROBE, *extra: str, word: str = "decoded"
) -> str:
    allowed = CSP.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
    assert allowed != CSP and CSP in page
    probe = tmp_path / name
    probe.write_text(page.replace(CSP, allowed).replace("</body>", script + "</body>"), "utf-8")
    proc = _chromium(tmp_path, *extra, "--dump-dom", probe.as_uri())
    match = re.search(rf"<title>({word} [^<]*)</title>", proc.stdout)
    assert match, f"no probe result in the DOM; stderr: {proc.stderr[-2000:]}"
    return match.group(1)


#: where the verdict, the tables and the first plot lie on the page, in CSS pixels
LAYOUT = """<script>
window.addEventListener("load", function () {
  var top = function (e) { return Math.round(e.getBoundingClientRect().top + scrollY); };
  var bottom = function (e) { return Math.round(e.getBoundingClientRect().bottom + scrollY); };
  var tables = document.querySelectorAll(".table-wrap table");
  var wide = Array.prototype.filter.call(tables, function (t) {
    return t.getBoundingClientRect().width > t.parentNode.clientWidth + 1;
  });
  document.title = "layout " + [top(document.querySelector("p.verdict")),
    bottom(tables[1]), top(document.querySelector("figure img")),
    document.documentElement.scrollWidth, innerWidth, wide.length].join(" ");
});
</script>"""


def test_chromium_shows_verdict_and_tables_on_the_first_screen_at_1200_px(
    tmp_path: Path,
) -> None:
    files = write_report(_run(), tmp_path / "report")
    page = files.html.read_text(encoding="utf-8")
    found = _probe(
        tmp_path,
        page,
        "layout.html",
        LAYOUT,
        "--hide-scrollbars",
        "--window-size=1200,900",
        word="layout",
    )
    verdict, tables_end, first_image, page_width, window, too_wide = map(int, found.split()[1:])
    assert window == 1200
    assert verdict < 300  # the verdict opens the page, under a three-line header
    assert tables_end < 900  # both series' tables fit the first screen
    assert first_image > tables_end  # the plots come after them
    assert page_width <= window and too_wide == 0  # no table pushes the page sideways


def test_chromium_decodes_every_plot_of_the_report(tmp_path: Path) -> None:
    files = write_report(_run(), tmp_path / "report")
    assert len(files.images) == 4
    page = files.html.read_text(encoding="utf-8")
    width, height = round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI)
    assert (
        _probe(tmp_path, page, "probe.html") == f"decoded 4/4 {','.join([f'{width}x{height}'] * 4)}"
    )

    broken = page.replace(
        "</footer>", '</footer><img src="data:image/png;base64,iVBORw0KGgoAAAAbroken" alt="x">'
    )
    assert _probe(tmp_path, broken, "broken.html").startswith("decoded 4/5 ")


def test_chromium_renders_the_untouched_report(tmp_path: Path) -> None:
    files = write_report(_run(), tmp_path / "report")
    shot = tmp_path / "shot.png"
    proc = _chromium(
        tmp_path,
        "--hide-scrollbars",
        "--window-size=1200,4000",
        f"--screenshot={shot}",
        files.html.as_uri(),
    )
    assert shot.is_file(), proc.stderr[-2000:]
    with Image.open(io.BytesIO(shot.read_bytes())) as im:
        rgb = im.convert("RGB")
        assert rgb.size == (1200, 4000)
        # the first device's line colour (#0072B2) appears only inside the plots
        blue = sum(
            count
            for count, (r, g, b) in rgb.getcolors(maxcolors=1 << 20) or []
            if abs(r - 0x00) < 30 and abs(g - 0x72) < 30 and abs(b - 0xB2) < 30
        )
    assert blue > 2000
