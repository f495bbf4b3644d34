"""The report's figures: valid PNGs of the right size, what each figure draws, determinism.

Runs are built by hand (no training): step times follow T(b) = c / b^alpha + t_min with
a small deterministic jitter, so the real analysis (batchscope.analyse.explain) fits them.
"""

from __future__ import annotations

import io
import math

import pytest
from PIL import Image

from batchscope.analyse.explain import RunAnalysis, analyse_run
from batchscope.core.results import RunResult, StepStats, TrialResult
from batchscope.report import plots
from conftest import run_python

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIZES = (16, 32, 64, 128, 256)


def _trial(device: str, b: int, per_sample: float, mem: int | None) -> TrialResult:
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
        peak_memory_bytes=mem,
        data_wait_fraction=0.05,
        measured_steps=len(samples),
        warmup_steps=3,
    )


def make_run(
    devices: tuple[str, ...] = ("cpu",),
    *,
    fail: dict[str, dict[int, str]] | None = None,
    memory: bool = True,
    sizes: tuple[int, ...] = SIZES,
    workload: str = "resnet18",
    limit: int | None = None,
) -> RunResult:
    fail = fail or {}
    trials = []
    for i, device in enumerate(devices):
        c, alpha, t_min = (0.02, 0.7, 0.004) if i == 0 else (0.004, 0.9, 0.0002)
        for b in sizes:
            if b in fail.get(device, {}):
                status = fail[device][b]
                trials.append(
                    TrialResult(device=device, batch_size=b, status=status, error=f"{status}!")
                )
                continue
            mem = int(200e6 + 12e6 * b) if memory else None
            trials.append(_trial(device, b, c / b**alpha + t_min, mem))
    return RunResult(
        run_id="20260101-120000-abcd",
        created="2026-01-01T12:00:00+00:00",
        workload={"name": workload, "description": "test workload", "notes": []},
        settings={"steps": 12, "warmup": 3, "threads": 2, "seed": 0, "memory_limit_bytes": limit},
        environment={"cpu_model": "Test CPU", "python": "3.11"},
        trials=trials,
    )


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == PNG_SIGNATURE
    with Image.open(io.BytesIO(png)) as im:
        im.verify()
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG"
        return im.size


EXPECTED = (round(plots.FIGSIZE[0] * plots.DPI), round(plots.FIGSIZE[1] * plots.DPI))


def _analysis(run: RunResult) -> RunAnalysis:
    return analyse_run(run)


@pytest.mark.parametrize(
    "run",
    [
        make_run(("cpu",)),
        make_run(("cpu",), sizes=(32, 64), fail={"cpu": {64: "oom"}}),
        make_run(("cpu", "cuda:0"), fail={"cuda:0": {256: "oom"}}, limit=3 * 2**30),
        make_run(("cpu", "cuda:0"), fail={"cpu": {16: "crashed"}, "cuda:0": {128: "timeout"}}),
    ],
    ids=["1-device-fits", "1-device-no-fit-oom", "2-devices-fits-oom-limit", "2-devices-fails"],
)
def test_every_plot_is_a_valid_png_of_the_set_size(run: RunResult) -> None:
    rendered = plots.render_plots(_analysis(run), workload="resnet18")
    # the validation-metric figure needs --epochs, the MFU one a measured peak, the
    # tokens one a sequence workload
    skipped = ("quality", "mfu", "memory_tokens")
    assert list(rendered) == [p.filename for p in plots.PLOTS if p.name not in skipped]
    for png in rendered.values():
        assert png_size(png) == EXPECTED


def test_time_per_sample_figure_draws_points_fit_and_failures() -> None:
    run = make_run(("cpu", "cuda:0"), fail={"cuda:0": {256: "oom"}})
    analysis = _analysis(run)
    assert all(d.time_fit is not None and d.time_fit.ok for d in analysis.devices)
    fig = plots.figure_time_per_sample(analysis, workload="resnet18")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(b) for b in SIZES]
    assert "resnet18" in ax.get_title()
    assert "(ms)" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    fits = [label for label in labels if "fit" in label and "α =" in label and "R² =" in label]
    assert len(fits) == 2  # one fitted curve per device
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 2
    crosses = [line for line in ax.get_lines() if line.get_marker() == "x"]
    assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [256]
    assert "oom" in [t.get_text() for t in ax.texts]


def test_throughput_figure_has_error_bars_and_saturation_fit() -> None:
    analysis = _analysis(make_run(("cpu",)))
    ax = plots.figure_throughput(analysis).axes[0]
    assert ax.containers, "error bars drawn"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("saturation fit" in label and "x_max" in label for label in labels)
    assert "samples/s" in ax.get_ylabel()


def test_memory_figure_shows_the_limit_and_the_model() -> None:
    limit = 3 * 2**30
    analysis = _analysis(make_run(("cpu",), limit=limit))
    fig = plots.figure_memory(analysis)
    assert fig is not None
    ax = fig.axes[0]
    assert ax.get_ylabel() == "Peak memory (GiB)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(label.startswith("memory limit 3 GiB") for label in labels)
    assert any("model" in label and "/sample" in label for label in labels)
    limit_lines = [line for line in ax.get_lines() if line.get_linestyle() == "-."]
    assert limit_lines and limit_lines[0].get_ydata()[0] == pytest.approx(3.0)


def test_no_memory_measured_means_no_memory_plot() -> None:
    analysis = _analysis(make_run(("cpu",), memory=False))
    assert plots.plot_memory(analysis) is None
    assert "memory.png" not in plots.render_plots(analysis)


def test_relative_bars_highlight_each_devices_best() -> None:
    analysis = _analysis(make_run(("cpu", "cuda:0"), fail={"cuda:0": {256: "oom"}}))
    ax = plots.figure_relative(analysis).axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 9  # 5 cpu bars + 4 cuda bars (256 failed)
    assert max(heights) == pytest.approx(100.0)
    best = [p for p in ax.patches if p.get_linewidth() > 1.0]
    assert len(best) == 2 and all(p.get_height() == pytest.approx(100.0) for p in best)
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("100.0%\nbest") == 2 and "oom" in texts


def test_same_input_gives_the_same_bytes() -> None:
    analysis = _analysis(make_run(("cpu", "cuda:0")))
    assert plots.render_plots(analysis) == plots.render_plots(analysis)


def test_runs_with_no_successful_trial_still_plot() -> None:
    run = make_run(("cpu",), sizes=(16, 32), fail={"cpu": {16: "oom", 32: "oom"}})
    analysis = _analysis(run)
    assert png_size(plots.plot_time_per_sample(analysis)) == EXPECTED
    assert png_size(plots.plot_relative(analysis)) == EXPECTED


def test_dollar_signs_in_names_are_not_mathtext() -> None:
    run = make_run(("cpu",), workload="costs $5 and $6")
    png = plots.plot_time_per_sample(_analysis(run), workload="costs $5 and $6")
    assert png_size(png) == EXPECTED


def test_plotting_touches_no_global_matplotlib_state() -> None:
    code = (
        "import sys, batchscope, batchscope.report.plots, batchscope.cli.app\n"
        "assert 'matplotlib' not in sys.modules, 'imported at import time'\n"
        "from batchscope.analyse.explain import analyse_run\n"
        "from batchscope.core.results import RunResult, StepStats, TrialResult\n"
        "s = StepStats.from_samples([0.1, 0.11, 0.12])\n"
        "t = [TrialResult(device='cpu', batch_size=b, step_time_s=s, samples_per_s=b / 0.11)"
        " for b in (8, 16, 32)]\n"
        "run = RunResult(run_id='r', created='c', workload={}, settings={}, environment={},"
        " trials=t)\n"
        "pngs = batchscope.report.plots.render_plots(analyse_run(run))\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "print(len(pngs))\n"
    )
    code_rc, out, err = run_python(code)
    assert code_rc == 0, err
    assert out.strip() == "3"  # no memory measured: no memory plot


def test_points_without_an_interval_still_plot() -> None:
    # five steps: no 95 % interval of the median; drawn hollow, without error bars
    stats = StepStats.from_samples([0.01, 0.01, 0.01, 0.2, 0.2])
    trials = [
        TrialResult(
            device="cpu",
            batch_size=b,
            step_time_s=stats,
            step_times_s=[0.01, 0.01, 0.01, 0.2, 0.2],
            samples_per_s=b / 0.01,
        )
        for b in (8, 16, 32)
    ]
    run = RunResult(
        run_id="r", created="c", workload={}, settings={}, environment={}, trials=trials
    )
    analysis = _analysis(run)
    assert analysis.devices[0].points[0].samples_per_s_high is None
    assert png_size(plots.plot_throughput(analysis)) == EXPECTED


# ---------------------------------------------------------------- captions and the timeline


@pytest.mark.parametrize(
    "filename",
    [spec.filename for spec in plots.PLOTS] + ["timeline.png", "step_split.png"],
)
def test_every_figure_has_a_caption_saying_what_it_shows_and_its_bars(filename: str) -> None:
    title, caption = plots.plot_title(filename), plots.plot_caption(filename)
    assert title != filename and caption  # both known
    assert caption != title and title.lower() not in caption.lower()
    assert "bars" in caption  # what the error bars are, or that there are none
    assert len(caption) > 2 * len(title)


def _timeline_rows() -> tuple[list[dict[str, object]], list[tuple[float, str]]]:
    """Two trials whose CPU trace touches the top of its axis and whose memory is flat and
    high: the shape that hid the labels and clipped the memory trace before."""
    rows: list[dict[str, object]] = []
    marks = []
    for k, b in enumerate((16, 64)):
        start = 10.0 * k
        marks.append((start, f"bs={b}"))
        for j in range(50):
            rows.append(
                {
                    "t_s": start + 0.1 * j,
                    "cpu_process_percent": 200.0 if j % 7 else 900.0,  # 2 cores: 100 %, spikes
                    "rss_bytes": (3.0 + 0.01 * j) * 2**30,
                }
            )
        rows.append({"t_s": None})
    return rows, marks


def test_timeline_labels_sit_above_the_traces_and_memory_is_not_clipped() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from batchscope.report.timeline import UTIL_TOP, timeline_figure

    rows, marks = _timeline_rows()
    fig = timeline_figure(rows, marks=marks, cpu_cores=2)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax_util, ax_mem = fig.axes[0], fig.axes[1]
    labels = [t for t in ax_util.texts if t.get_text().startswith("bs=")]
    assert [t.get_text() for t in labels] == ["bs=16", "bs=64"]
    top_of_plot = ax_util.get_window_extent(renderer).y1
    for text in labels:  # in the band above the plot, where no trace is drawn
        assert text.get_window_extent(renderer).y0 >= top_of_plot
    # the memory axis reaches above its largest reading
    highest = 3.0 + 0.01 * 49  # GiB: the last reading of a trial
    assert ax_mem.get_ylim()[1] >= 1.1 * highest
    # readings above the utilisation axis are marked, not silently cut off
    assert ax_util.get_ylim() == (0, UTIL_TOP)
    over = [line for line in ax_util.get_lines() if line.get_marker() == "^"]
    assert len(over) == 1 and len(over[0].get_xdata()) == 2 * len(range(0, 50, 7))
    # the legends sit right of the plots, not over the traces
    for ax in (ax_util, ax_mem):
        legend = ax.get_legend().get_window_extent(renderer)
        assert legend.x0 >= ax.get_window_extent(renderer).x1


def test_timeline_labels_turn_upright_when_trials_are_close() -> None:
    from batchscope.report.timeline import timeline_figure

    rows = [{"t_s": 0.5 * k, "cpu_process_percent": 50.0, "rss_bytes": 2**30} for k in range(80)]
    marks = [(0.5 * k, f"cuda:0 bs={2**k}") for k in range(0, 80, 4)]
    fig = timeline_figure(rows, marks=marks, cpu_cores=1)
    labels = [t for t in fig.axes[0].texts if "bs=" in t.get_text()]
    assert labels and all(t.get_rotation() == 90 for t in labels)
