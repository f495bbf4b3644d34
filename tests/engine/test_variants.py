"""Variants: precision (autocast), channels-last, torch.compile, the plan's grid and keys,
and how reports group variant trials (``series_view``). In-process trials on tiny models."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from batchscope.core import series
from batchscope.core.plan import Plan, TrialSpec
from batchscope.core.results import RunResult, StepStats, TrialResult
from batchscope.engine import variants
from batchscope.engine.trial import run_trial
from batchscope.errors import UsageError
from batchscope.workloads import Workload


class _Built:
    """A workload whose model factory keeps the last model it built (to inspect it after)."""

    def __init__(self, conv: bool = False) -> None:
        self.models: list[nn.Module] = []
        gen = torch.Generator().manual_seed(0)
        if conv:
            x = torch.randn(64, 3, 8, 8, generator=gen)
            y = torch.randint(0, 4, (64,), generator=gen)
            loss: nn.Module = nn.CrossEntropyLoss()
        else:
            x = torch.randn(64, 6, generator=gen)
            y = torch.randn(64, 1, generator=gen)
            loss = nn.MSELoss()
        self.conv = conv
        self.workload = Workload(
            name="tinyconv" if conv else "tinymlp",
            model=self._model,
            train_dataset=TensorDataset(x, y),
            loss=loss,
            optimizer=lambda params: torch.optim.SGD(params, lr=0.05),
        )

    def _model(self) -> nn.Module:
        if self.conv:
            model: nn.Module = nn.Sequential(
                nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 4)
            )
        else:
            model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1))
        self.models.append(model)
        return model


def _spec(**kw: object) -> TrialSpec:
    base: dict[str, object] = dict(
        workload="tiny",
        workload_options={},
        device="cpu",
        batch_size=16,
        steps=3,
        warmup=1,
        sample_interval_s=0,
    )
    base.update(kw)
    return TrialSpec(**base)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _threads(restore_torch_threads: None) -> Iterator[None]:
    yield


# ---------------------------------------------------------------- precision


def test_bf16_trial_runs_in_bf16_and_is_recorded() -> None:
    built = _Built()
    seen: list[torch.dtype] = []
    result_hook = built.workload.loss

    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        seen.append(out.dtype)
        return result_hook(out, target)

    built.workload.loss = loss
    r = run_trial(_spec(precision="bf16"), built.workload)
    assert r.status == "ok", r.error
    assert r.precision == "bf16"
    assert set(seen) == {torch.bfloat16}  # the forward really ran under bf16 autocast
    assert r.final_train_loss is not None and math.isfinite(r.final_train_loss)


def test_fp16_on_cpu_either_runs_in_fp16_or_is_unsupported() -> None:
    r = run_trial(_spec(precision="fp16"), _Built().workload)
    reason = variants.unsupported_reason(torch.device("cpu"), "fp16")
    if reason is None:
        assert r.status == "ok", r.error
    else:
        assert r.status == "unsupported" and r.error == reason


def test_a_precision_the_device_cannot_do_is_unsupported_not_measured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
    r = run_trial(_spec(precision="bf16"), _Built().workload)
    assert r.status == "unsupported"
    assert r.error is not None and "bf16" in r.error and "not available" in r.error
    assert r.step_time_s is None and r.samples_per_s is None
    assert r.precision == "bf16"


def test_autocast_that_silently_falls_back_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU autocast warns and disables itself for a dtype it lacks: that is 'unsupported'."""
    monkeypatch.setattr(variants, "_dtype", lambda precision: torch.float64)
    reason = variants.unsupported_reason(torch.device("cpu"), "bf16")
    assert reason is not None and "computed in" in reason


# ---------------------------------------------------------------- channels-last, compile


def test_channels_last_puts_model_and_inputs_in_that_format() -> None:
    built = _Built(conv=True)
    r = run_trial(_spec(channels_last=True), built.workload)
    assert r.status == "ok", r.error
    assert r.channels_last is True
    conv = built.models[-1][0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    x = variants.channels_last_input((torch.zeros(2, 3, 4, 4), torch.zeros(2, 3)))
    assert x[0].is_contiguous(memory_format=torch.channels_last) and x[1].is_contiguous()


def test_compile_time_is_reported_apart_from_step_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # the inductor backend needs ~30 s of C++ build here; "eager" goes through dynamo the same way
    monkeypatch.setattr(variants, "COMPILE_BACKEND", "eager")
    r = run_trial(_spec(compile=True, warmup=3), _Built().workload)
    assert r.status == "ok", r.error
    assert r.compile is True
    assert r.compile_time_s is not None and r.compile_time_s >= 0
    assert r.step_time_s is not None and r.step_time_s.n == 3  # warm-up never counted
    plain = run_trial(_spec(warmup=3), _Built().workload)
    assert plain.compile_time_s is None


def test_warmup_clock_compile_time() -> None:
    clock = variants.WarmupClock()
    clock.times = [5.0, 1.0, 2.0, 1.5]
    assert clock.compile_time_s() == pytest.approx(3.5)
    clock.times = [5.0]
    assert clock.compile_time_s() == 5.0  # one warm-up step: its whole time (upper bound)
    assert variants.WarmupClock().compile_time_s() is None


# ---------------------------------------------------------------- plan, keys, validation


def test_default_keys_are_unchanged_and_variant_keys_append() -> None:
    assert _spec().key == "cpu|bs=16|r=0"
    assert _spec(precision="bf16", accumulate=4).key == "cpu|bs=16|r=0|bf16|acc=4"
    assert _spec(channels_last=True, compile=True).key == "cpu|bs=16|r=0|cl|compile"
    keys = [s.key for s in Plan(workload="w", batch_sizes=[8, 16]).trials()]
    assert keys == ["cpu|bs=8|r=0", "cpu|bs=16|r=0"]


def test_precisions_are_an_axis_of_the_grid() -> None:
    plan = Plan(workload="w", batch_sizes=[8, 16], precisions=["fp32", "bf16"], repeats=2)
    specs = plan.trials()
    assert len(specs) == 8
    assert len({s.key for s in specs}) == 8
    assert [s.precision for s in specs[:2]] == ["fp32", "bf16"]
    assert plan.settings()["precisions"] == ["fp32", "bf16"]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        (dict(precisions=["fp8"]), "fp32, bf16, fp16"),
        (dict(accumulate=0), "--accumulate 0"),
        (dict(lr_scaling="cubic"), "none, linear, sqrt"),
        (dict(base_batch_size=0), "--base-batch-size 0"),
        (dict(compile=True, warmup=0), "--warmup"),
        (dict(accumulate=2, breakdown=True), "--breakdown"),
    ],
)
def test_bad_variant_settings_are_one_line_usage_errors(
    kwargs: dict[str, object], needle: str
) -> None:
    with pytest.raises(UsageError) as info:
        Plan(workload="w", batch_sizes=[8], **kwargs)  # type: ignore[arg-type]
    assert needle in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------- reports group by series


def _trial(b: int, median: float, **kw: object) -> TrialResult:
    t = TrialResult(
        device="cpu",
        batch_size=b,
        step_time_s=StepStats.from_samples([median, median * 1.01, median * 0.99]),
        **kw,  # type: ignore[arg-type]
    )
    t.effective_batch_size = b * t.accumulate
    t.samples_per_s = t.effective_batch_size / median
    t.samples_per_epoch = 1024
    return t


def _run(trials: list[TrialResult]) -> RunResult:
    return RunResult(
        run_id="r",
        created="now",
        workload={"name": "w"},
        settings={},
        environment={},
        trials=trials,
    )


def test_series_view_keeps_variants_apart_and_is_idempotent() -> None:
    run = _run(
        [
            _trial(16, 0.010),
            _trial(16, 0.006, precision="bf16"),
            _trial(16, 0.040, accumulate=4),
        ]
    )
    view = series.series_view(run)
    assert view.devices == ["cpu", "cpu bf16", "cpu acc=4"]
    acc = [t for t in view.trials if t.device == "cpu acc=4"][0]
    assert acc.batch_size == 64  # keyed by the effective batch size
    assert acc.time_per_sample_s == pytest.approx(0.040 / 64)
    assert series.series_view(view).devices == view.devices
    assert [t.device for t in run.trials] == ["cpu"] * 3  # the stored run is untouched
    plain = _run([_trial(16, 0.01)])
    assert series.series_view(plain) is plain


def test_report_shows_a_table_per_variant_and_their_speedup() -> None:
    from io import StringIO

    from rich.console import Console

    from batchscope.report.terminal import print_run

    run = _run([_trial(16, 0.010), _trial(16, 0.005, precision="bf16")])
    out = StringIO()
    print_run(run, Console(file=out, width=200))
    text = out.getvalue()
    titles = {line.strip() for line in text.splitlines() if line.strip().startswith("w on ")}
    assert titles == {"w on cpu", "w on cpu bf16"}
    assert "cpu bf16 ran 2" in text and "faster than cpu at b=16 (per sample)" in text
