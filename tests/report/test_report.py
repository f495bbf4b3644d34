"""The report: Markdown and HTML content, escaping, the report folder, loading results
JSON, the comparison of two runs, and one end-to-end report of a tiny real sweep."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path

import pytest

from batchscope.analyse.explain import analyse_run
from batchscope.core.results import RunResult, StepStats, TrialResult
from batchscope.errors import ExportError
from batchscope.report import export
from batchscope.report.build import load_results_json, write_report
from batchscope.report.html import to_html
from batchscope.report.markdown import (
    Paragraph,
    Table,
    compare_document,
    md_escape,
    render_markdown,
    to_markdown,
)

HOSTILE = "<script>alert(1)</script>"
SIZES = (16, 32, 64, 128, 256)


def _trial(device: str, b: int, per_sample: float) -> TrialResult:
    step = per_sample * b
    samples = [step * (1 + 0.02 * math.sin(7 * k + b)) for k in range(12)]
    stats = StepStats.from_samples(samples)
    return TrialResult(
        device=device,
        batch_size=b,
        step_time_s=stats,
        step_times_s=samples,
        samples_per_s=b / stats.median,
        samples_per_epoch=480,
        peak_memory_bytes=int(200e6 + 12e6 * b),
        data_wait_fraction=0.05,
        measured_steps=len(samples),
        warmup_steps=3,
    )


def make_run(
    *,
    name: str = "resnet18",
    devices: tuple[str, ...] = ("cpu", "cuda:0"),
    u_shape: bool = False,
    error: str = "CUDA out of memory",
    note: str = "a plain note",
    hostname: str = "box",
    run_id: str = "20260101-120000-abcd",
    torch: str = "2.3.0",
) -> RunResult:
    trials = []
    for i, device in enumerate(devices):
        c, alpha, t_min = (0.02, 0.7, 0.004) if i == 0 else (0.004, 0.9, 0.0002)
        for b in SIZES:
            if i == 1 and b == 256:
                trials.append(TrialResult(device=device, batch_size=b, status="oom", error=error))
                continue
            t = c / b**alpha + t_min
            if u_shape and b >= 128:
                t *= 1.5 if b == 128 else 1.8
            trials.append(_trial(device, b, t))
    return RunResult(
        run_id=run_id,
        created="2026-01-01T12:00:00+00:00",
        workload={
            "name": name,
            "spec": name,
            "description": "ResNet-18 on 192×192 photos",
            "notes": [note],
            "parameters": 11_000_000,
            "options": {},
        },
        settings={"steps": 12, "warmup": 3, "threads": 2, "seed": 0, "repeats": 1},
        environment={
            "hostname": hostname,
            "cpu_model": "Test CPU",
            "cpu_cores_logical": 2,
            "memory_bytes": 8 * 2**30,
            "python": "3.11.7",
            "torch": torch,
            "gpus": [],
        },
        trials=trials,
    )


# ---------------------------------------------------------------- Markdown


def test_markdown_has_header_tables_fits_recommendation_and_plots() -> None:
    run = make_run()
    md = to_markdown(run, figures=["time_per_sample.png", "relative.png"])
    assert md.startswith("# batchscope report: resnet18 — run 20260101-120000-abcd\n")
    assert "- **Workload:** resnet18 — ResNet-18 on 192×192 photos" in md
    assert "## Notes\n\n- a plain note" in md
    assert "- **Machine:** Test CPU, 2 logical cores, 8 GiB memory, host box" in md
    for device in ("cpu", "cuda:0"):
        assert f"## Device {device}" in md
    # the seed-style table, once per device, with a row per batch size
    assert md.count("| Batch size | Step time \\[95 % CI\\] | n | Samples/s \\[95 % CI\\] |") == 2
    for b in SIZES:
        assert re.search(rf"^\| {b} \| ", md, re.M)
    assert "| 256 | – |" in md and "| oom |" in md
    assert "Failed batch sizes: 256 (oom: CUDA out of memory)" in md
    # fits with their 95 % intervals and R², a U-shape verdict, the memory model
    assert re.search(r"\*\*Time per sample:\*\* fit T\(b\) = .*α = [0-9.]+ \\\[.*R² ", md)
    assert re.search(r"\*\*Throughput:\*\* fit X\(b\) = ", md)
    assert "- **U shape:** " in md
    assert "- **Memory:** peak ≈ " in md
    assert "### Recommendation" in md
    assert re.search(r"- \*\*Fastest:\*\* batch size \d+ — highest throughput", md)
    assert "cuda:0 ran " in md and " faster than cpu at b=16 (per sample)" in md
    assert "best against best" in md
    # the images, relative to the file
    assert "![Time per sample against batch size](time_per_sample.png)" in md
    assert "![Relative performance per batch size](relative.png)" in md
    assert "throughput.png" not in md
    # the full environment and settings as readable two-column tables
    assert "## Environment" in md and "| CPU model | Test CPU |" in md
    assert "| Memory | 8 GiB |" in md and "| Threads | 2 |" in md
    # the verdict and table first, then speedups, details, plots, and the record last
    order = [
        "**Use batch size ",
        "| Batch size |",
        "## Speedups",
        "## Device cpu",
        "### Shape and fits",
        "## Plots",
        "## Environment",
        "## Settings",
    ]
    positions = [md.index(needle) for needle in order]
    assert positions == sorted(positions)


def test_markdown_says_plainly_when_the_curve_is_a_true_u() -> None:
    md = to_markdown(make_run(u_shape=True, devices=("cpu",)))
    assert "does not fit: the time rises again after b=64" in md
    assert "**U shape:** a U shape: the time per sample falls" in md


def test_markdown_escapes_user_strings_and_keeps_table_rows_intact() -> None:
    run = make_run(name="a|b *c*", error="bad | value\nsecond line", note=HOSTILE)
    md = to_markdown(run)
    assert "<script>" not in md and "\\<script\\>" in md
    assert "a\\|b \\*c\\*" in md
    row = next(line for line in md.splitlines() if line.startswith("| 256 |") and "oom" in line)
    unescaped_pipes = len(re.findall(r"(?<!\\)\|", row))
    assert unescaped_pipes == 10  # 9 columns
    failed = next(line for line in md.splitlines() if line.startswith("*Failed batch sizes"))
    assert "bad \\| value second line" in failed


def test_md_escape_only_escapes_list_markers_at_line_start() -> None:
    assert md_escape("3.28 s") == "3.28 s"
    assert md_escape("1. first", line_start=True) == "1\\. first"
    assert md_escape("- item", line_start=True) == "\\- item"
    assert md_escape("[link](x)") == "\\[link\\](x)"


def test_export_markdown_is_the_full_report_without_images(tmp_path: Path) -> None:
    run = make_run()
    path = tmp_path / "r.md"
    export.write_exports(run, markdown_path=str(path))
    text = path.read_text(encoding="utf-8")
    assert "### Shape and fits" in text and "## Device cuda:0" in text
    assert ".png" not in text


# ---------------------------------------------------------------- HTML


def test_html_escapes_every_user_string() -> None:
    run = make_run(name=HOSTILE, error=HOSTILE, note=f"note {HOSTILE}", hostname=HOSTILE)
    run.environment["weird_path"] = f'/tmp/"{HOSTILE}'
    page = to_html(run, plots={})
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;" in page  # the quote in the path, escaped too


def test_html_is_self_contained_with_one_data_uri_image_per_plot() -> None:
    run = make_run()
    page = to_html(run)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "url(" not in page
    assert "default-src 'none'" in page  # CSP: the browser loads nothing else either
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 4  # time per sample, throughput, memory, relative
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert re.findall(r"href=", page) == []


def test_html_and_markdown_show_the_same_content() -> None:
    run = make_run()
    analysis = analyse_run(run)
    md = to_markdown(run, analysis)
    page = to_html(run, analysis, plots={})
    for needle in (
        "Shape and fits",
        "Measured causes",
        "Recommendation",
        "At a glance",
        "Speedups",
    ):
        assert needle in md and needle in page


def test_html_opens_with_the_verdict_and_table_before_any_plot() -> None:
    page = to_html(make_run())
    verdict = page.index('<p class="verdict">Use batch size ')
    first_table = page.index("<table")
    first_image = page.index("<img ")
    assert verdict < first_table < first_image
    # every series' table, and the speedups, come before the first plot
    assert page.count("<table", 0, first_image) == 2
    assert page.index("<h2>Speedups</h2>") < first_image
    # the recommended row is marked, numbers are right-aligned, headers keep "[95 % CI]" whole
    assert '<tr class="chosen"><td class="r">256</td>' in page
    assert '<th class="r">Samples/s [95\u00a0%\u00a0CI]</th>' in page
    # Environment and Settings come last, after the plots
    assert (
        page.rindex("<img ") < page.index("<h2>Environment</h2>") < page.index("<h2>Settings</h2>")
    )


def test_environment_and_settings_show_readable_labels_and_units() -> None:
    run = make_run()
    run.settings.update(
        {"memory_limit_bytes": None, "sample_interval_s": 0.1, "drop_last": False, "odd_key_s": 3}
    )
    run.environment["cpu_affinity"] = 2
    analysis = analyse_run(run)
    md = to_markdown(run, analysis)
    page = to_html(run, analysis, plots={})
    for label, value in (
        ("Memory limit", "none"),
        ("Threads", "2"),
        ("CPU model", "Test CPU"),
        ("Memory", "8 GiB"),
        ("Hardware sampling interval", "100 ms"),
        ("Drop the last partial batch", "no"),
        ("CPU cores this process may use", "2"),
        ("Odd key", "3 s"),  # an unknown key still shows, with a prettified label
    ):
        assert f"| {label} | {value} |" in md
        assert f'<th scope="row">{label}</th><td class="l">{value}</td>' in page
    for raw in ("memory_limit_bytes", "cpu_model", "sample_interval_s", "odd_key_s"):
        assert raw not in md.replace("\\_", "_") and raw not in page


def test_every_figure_has_a_caption_that_is_not_its_title(tmp_path: Path) -> None:
    from batchscope.report.plots import plot_caption, plot_title

    files = write_report(make_run(), tmp_path / "out")
    page = files.html.read_text(encoding="utf-8")
    md = files.markdown.read_text(encoding="utf-8")
    figures = re.findall(r'<figure><img [^>]*alt="([^"]*)"[^>]*>(.*?)</figure>', page)
    assert len(figures) == len(files.images) == 4
    for (alt, rest), image in zip(figures, files.images, strict=True):
        caption = plot_caption(image.name)
        assert alt == plot_title(image.name)
        assert rest == f"<figcaption>{html.escape(caption)}</figcaption>"
        assert caption and caption != alt and alt not in caption
        assert "bars" in caption  # it says what the error bars are (or that there are none)
        assert f"*{md_escape(caption, line_start=True)}*" in md


# ---------------------------------------------------------------- the report folder


def test_write_report_writes_html_markdown_and_pngs(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "er" / "report"
    files = write_report(make_run(), out)
    assert files.directory == out
    assert files.html == out / "report.html" and files.html.is_file()
    assert files.markdown == out / "report.md" and files.markdown.is_file()
    assert [p.name for p in files.images] == [
        "time_per_sample.png",
        "throughput.png",
        "memory.png",
        "relative.png",
    ]
    md = files.markdown.read_text(encoding="utf-8")
    for image in files.images:
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({image.name})" in md
    page = files.html.read_text(encoding="utf-8")
    assert page.count('<img src="data:image/png;base64,') == 4


def test_write_report_refuses_an_unusable_folder(tmp_path: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ExportError, match="is a file, not a folder"):
        write_report(make_run(), a_file)
    with pytest.raises(ExportError, match="is a file, not a folder"):
        write_report(make_run(), a_file / "sub")


def test_report_of_a_tiny_real_sweep(tmp_path: Path, restore_torch_threads: None) -> None:
    import batchscope

    run = batchscope.sweep("linear", [8, 32, 128], steps=3, warmup=1, isolation="none")
    files = write_report(run, tmp_path / "out")
    md = files.markdown.read_text(encoding="utf-8")
    assert "## Device cpu" in md and "| 128 |" in md
    assert "time_per_sample.png" in md and (tmp_path / "out" / "time_per_sample.png").is_file()
    page = files.html.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(files.images) >= 3


# ---------------------------------------------------------------- results JSON


def test_load_results_json_round_trip_and_bad_files(tmp_path: Path) -> None:
    run = make_run()
    good = tmp_path / "good.json"
    good.write_text(export.to_json(run), encoding="utf-8")
    loaded = load_results_json(good)
    assert loaded.run_id == run.run_id and len(loaded.trials) == len(run.trials)

    cases = {
        "missing.json": (None, "no such results file"),
        "garbage.json": ("{not json", "is not JSON"),
        "other.json": (json.dumps({"hello": 1}), "is not a batchscope results file"),
        "list.json": ("[1, 2]", "is not a batchscope results file"),
        "newer.json": (json.dumps({"schema": "batchscope.results/9"}), "this batchscope reads"),
        "damaged.json": (json.dumps({"schema": "batchscope.results/1"}), "damaged"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_text(content, encoding="utf-8")
        with pytest.raises(ExportError, match=message):
            load_results_json(path)


# ---------------------------------------------------------------- compare


def test_compare_warns_when_workloads_differ_and_lists_differences() -> None:
    a = make_run(devices=("cpu",), torch="2.3.0", run_id="run-a")
    b = make_run(devices=("cpu",), torch="2.4.0", name="simplecnn", run_id="run-b")
    for t in b.trials:  # B runs 25 % faster per step
        assert t.step_time_s is not None and t.samples_per_s is not None
        s = t.step_time_s
        t.step_time_s = StepStats(
            median=s.median * 0.8,
            iqr=s.iqr * 0.8,
            mean=s.mean * 0.8,
            stdev=s.stdev * 0.8,
            min=s.min * 0.8,
            max=s.max * 0.8,
            n=s.n,
        )
        t.samples_per_s /= 0.8
        t.step_times_s = [x * 0.8 for x in t.step_times_s]
    doc = compare_document(a, b)
    warnings = [x for x in doc.blocks if isinstance(x, Paragraph) and x.kind == "warning"]
    assert len(warnings) == 1 and "workloads differ" in warnings[0].text
    assert "resnet18 vs simplecnn" in warnings[0].text
    tables = [x for x in doc.blocks if isinstance(x, Table)]
    per_batch = next(t for t in tables if t.headers[0] == "Batch size")
    assert [row[0] for row in per_batch.rows] == [str(b) for b in SIZES]
    assert all(
        row[5].startswith("1.25× [") and row[5].endswith("] faster") for row in per_batch.rows
    )
    differences = tables[-1]
    assert ["torch", "2.3.0", "2.4.0"] in differences.rows
    md = render_markdown(doc)
    assert "> **Warning:** the workloads differ" in md


def test_compare_same_workload_has_no_warning() -> None:
    doc = compare_document(make_run(run_id="a"), make_run(run_id="b"))
    assert not [x for x in doc.blocks if isinstance(x, Paragraph) and x.kind == "warning"]
    md = render_markdown(doc)
    assert "same workload, protocol, machine and software" in md
    assert re.search(r"\| 1× \\\[[0-9.]+–[0-9.]+\\\]: no difference beyond the noise \|", md)


def test_report_of_a_run_with_no_trial_yet(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_report(make_run(), out)
    assert (out / "memory.png").is_file()
    empty = RunResult(run_id="r", created="c", workload={"name": "x"}, settings={}, environment={})
    files = write_report(empty, out)  # the same folder: the earlier plots must go
    assert files.images == [] and not list(out.glob("*.png"))
    md = files.markdown.read_text(encoding="utf-8")
    assert "- **Trials:** none finished yet" in md and "## Plots" not in md
    assert "<img" not in files.html.read_text(encoding="utf-8")
