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
    # the validation-metric figure needs --epochs; these runs are --steps runs
    assert list(rendered) == [p.filename for p in plots.PLOTS if p.name != "quality"]
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
