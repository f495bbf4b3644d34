"""Lightning (batchscope.integrations.lightning): the same statistics as the engine, OOM, refusals.

Importing torch and Lightning costs seconds per process, so the comparisons with the
engine run the trials in this process (``run_in_process``, the runner's own code path
minus the child); one sweep through the CLI runs trials in their child processes, one
of them out of memory.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("torch")
if not any(
    __import__("importlib.util").util.find_spec(name) for name in ("lightning", "pytorch_lightning")
):
    pytest.skip("Lightning is not installed", allow_module_level=True)

from batchscope.core.plan import Plan, TrialSpec  # noqa: E402
from batchscope.errors import UsageError, WorkloadError  # noqa: E402
from batchscope.integrations import lightning as lx  # noqa: E402
from batchscope.run.isolation import run_in_process  # noqa: E402

pytestmark = pytest.mark.usefixtures("restore_torch_threads")

#: one task, written as a LightningModule with its loaders and as a batchscope Workload:
#: the same model (an MLP), data (a fixed random classification), loss and optimizer
TINY = """\
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

try:
    import lightning.pytorch as pl
except ModuleNotFoundError:
    import pytorch_lightning as pl

import batchscope

N_TRAIN, N_VAL, FEATURES, CLASSES = 512, 128, 32, 4
OOM_ABOVE = 32


def data():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(N_TRAIN + N_VAL, FEATURES, generator=g)
    y = (x @ torch.randn(FEATURES, CLASSES, generator=g)).argmax(1)
    return TensorDataset(x[:N_TRAIN], y[:N_TRAIN]), TensorDataset(x[N_TRAIN:], y[N_TRAIN:])


def model():
    return nn.Sequential(
        nn.Linear(FEATURES, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, CLASSES)
    )


def optimizer(params):
    return torch.optim.SGD(params, lr=0.1)


class Tiny(pl.LightningModule):
    validation_batches = 0  # class-wide: a search attempt's validation is counted here

    def __init__(self, oom_above=None):
        super().__init__()
        self.net = model()
        self.loss = nn.CrossEntropyLoss()
        self.oom_above = oom_above

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.oom_above is not None and len(x) > self.oom_above:
            raise RuntimeError("CPU out of memory (a fake allocation failure for the test)")
        return self.loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        Tiny.validation_batches += 1
        logits = self.net(x)
        self.log("val_loss", self.loss(logits, y))
        self.log("val_accuracy", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return optimizer(self.parameters())


def make(batch_size):
    train, val = data()
    return (
        Tiny(),
        DataLoader(train, batch_size=batch_size, shuffle=True),
        DataLoader(val, batch_size=batch_size),
    )


def make_oom(batch_size):
    module, train, val = make(batch_size)
    module.oom_above = OOM_ABOVE
    return module, train, val


class TinyData(pl.LightningDataModule):
    def __init__(self, batch_size):
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage=None):
        self.train, self.val = data()

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=self.batch_size)


def make_datamodule(batch_size):
    return Tiny(), TinyData(batch_size)


def wrong_size(batch_size):
    module, train, val = make(batch_size + 1)
    return module, train


def not_a_module(batch_size):
    return 42, None


def make_workload():
    train, val = data()
    return batchscope.Workload(
        name="tiny",
        model=model,
        train_dataset=train,
        val_dataset=val,
        loss=nn.CrossEntropyLoss(),
        optimizer=optimizer,
    )
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("lightning") / "tiny_lightning.py"
    path.write_text(TINY)
    return str(path)


def _trial(entry: str, framework: str, batch_size: int, **fields: object) -> TrialSpec:
    settings: dict[str, object] = {"threads": 1, "sample_interval_s": 0.0, "warmup": 3}
    settings.update(fields)
    return TrialSpec(
        workload=entry,
        framework=framework,
        device="cpu",
        batch_size=batch_size,
        **settings,  # type: ignore[arg-type]
    )


# Lightning's loop adds its own work to every step (its hooks, the optimizer closure):
# measured here at ~0.5 ms, 1.5-2x this tiny MLP's step on a 2-core CPU, and other
# programs share the machine. A clock that timed something else (a whole epoch, the
# warm-up, no step at all, a missed device sync on an accelerator) would be off by far
# more than [1/2, 5] x the engine's median on the same model and data.
STEP_TIME_FACTOR = (0.5, 5.0)


@pytest.mark.parametrize("batch_size", [16, 64])
def test_steps_match_the_engine(tiny: str, batch_size: int) -> None:
    engine = run_in_process(_trial(f"{tiny}:make_workload", "torch", batch_size, steps=30))
    light = run_in_process(_trial(f"{tiny}:make", "lightning", batch_size, steps=30))
    assert engine.ok and light.ok, (engine.error, light.error)
    for result in (engine, light):
        assert result.measured_steps == 30 and len(result.step_times_s) == 30
        assert result.stopped_by == "steps"
        assert result.step_time_s is not None
        assert result.samples_per_s == pytest.approx(batch_size / result.step_time_s.median)
        assert result.data_wait_s is not None and 0.0 <= result.data_wait_fraction < 1.0
        assert result.samples_per_epoch == 512
        assert result.steps_per_epoch == math.ceil(512 / batch_size)
        assert result.peak_memory_bytes is not None
    # the engine restores its warm-up; Lightning's are trained (and left out of the clock)
    assert engine.samples_trained == 30 * batch_size
    assert light.samples_trained == (3 + 30) * batch_size
    assert light.warmup_steps == 3
    assert engine.step_time_s is not None and light.step_time_s is not None
    ratio = light.step_time_s.median / engine.step_time_s.median
    assert STEP_TIME_FACTOR[0] < ratio < STEP_TIME_FACTOR[1], ratio


def test_epochs_match_the_engine_and_the_loss_falls(tiny: str) -> None:
    engine = run_in_process(_trial(f"{tiny}:make_workload", "torch", 48, epochs=3, warmup=1))
    light = run_in_process(_trial(f"{tiny}:make_datamodule", "lightning", 48, epochs=3, warmup=1))
    assert engine.ok and light.ok, (engine.error, light.error)
    for result in (engine, light):
        assert [e.epoch for e in result.epochs] == [1, 2, 3]
        assert [e.samples for e in result.epochs] == [512, 512, 512]  # the partial batch too
        losses = [e.train_loss for e in result.epochs]
        assert all(loss is not None for loss in losses)
        assert losses[-1] < losses[0]  # type: ignore[operator]
        assert result.epochs[-1].val_loss is not None
        assert result.stopped_by == "epochs"
        assert result.final_train_loss == losses[-1]
    # full steps only: 10 full and one of 32 samples an epoch; the engine restores its
    # warm-up step, Lightning's is the protocol's first step, left out of the clock
    assert engine.measured_steps == 3 * 10
    assert light.measured_steps == 3 * 10 - 1
    assert light.epochs[-1].metrics.get("accuracy") is not None  # logged as val_accuracy


def test_adaptive_trial_stops_by_the_engines_rule(tiny: str) -> None:
    result = run_in_process(_trial(f"{tiny}:make", "lightning", 16, max_time_s=0.5, min_steps=12))
    assert result.ok, result.error
    assert result.stopped_by in ("max_error", "time_limit")
    assert result.measured_steps is not None and result.measured_steps >= 12
    if result.stopped_by == "max_error":
        assert result.precision_reached is not None and result.precision_reached <= 0.02


def test_oom_in_a_trial_is_a_status(tiny: str) -> None:
    result = run_in_process(_trial(f"{tiny}:make_oom", "lightning", 64, steps=3))
    assert result.status == "oom"
    assert "out of memory" in (result.error or "")
    assert run_in_process(_trial(f"{tiny}:make_oom", "lightning", 32, steps=3)).ok


def test_maxbs_finds_the_boundary_and_validates(tiny: str) -> None:
    from batchscope.run.maxbs import find_max_batch_size

    found = find_max_batch_size(
        f"{tiny}:make_oom",
        framework="lightning",
        isolation="none",
        threads=1,
        steps=2,
        max_batch_size=128,
    )
    assert found.max_batch_size == 32  # OOM_ABOVE: the module fails above it
    assert found.smallest_failure == 33
    # a repeatable boundary is verified once (a second run only if it looked flaky)
    twice = any("verified a second time" in note for note in found.notes)
    assert found.verified_runs == (2 if twice else 1)
    assert all(t.status == "oom" for t in found.trials if t.batch_size > 32)


@pytest.mark.parametrize("validation_steps", [0, 1])
def test_a_search_attempt_validates_once(tiny: str, validation_steps: int) -> None:
    import sys

    spec = _trial(f"{tiny}:make", "lightning", 16, steps=2, warmup=0)
    spec.validation_steps = validation_steps
    assert run_in_process(spec).ok
    # each trial imports the entry's file afresh: this is the trial's own module class
    module = sys.modules["batchscope_user_tiny_lightning"]
    assert module.Tiny.validation_batches == validation_steps


def test_bad_entries_are_one_line(tiny: str) -> None:
    with pytest.raises(UsageError, match="batch_size=17"):
        run_in_process_raising(f"{tiny}:wrong_size")
    with pytest.raises(WorkloadError, match="not a LightningModule"):
        lx.build(f"{tiny}:not_a_module", 4)
    with pytest.raises(WorkloadError, match="has no function"):
        lx.build(f"{tiny}:missing", 4)


def run_in_process_raising(entry: str) -> None:
    lx.run_trial(_trial(entry, "lightning", 16, steps=2))


def test_probe_describes_the_module(tiny: str) -> None:
    info = lx.probe(f"{tiny}:make_datamodule", {})
    assert (info["n_train"], info["n_val"], info["framework"]) == (512, 128, "lightning")
    assert info["parameters"] == 32 * 256 + 256 + 256 * 256 + 256 + 256 * 4 + 4
    assert info["info"]["datamodule"] == "TinyData"


def test_missing_lightning_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(WorkloadError, match=r"batchscope\[lightning\]"):
        lx.import_lightning()


def test_trainer_settings() -> None:
    import torch

    spec = _trial("m:make", "lightning", 8, steps=3, precision="bf16")
    kwargs = lx.trainer_kwargs(spec, torch.device("cpu"), "/tmp/x")
    assert kwargs["precision"] == "bf16-mixed" and kwargs["devices"] == 1
    assert kwargs["logger"] is False and kwargs["enable_checkpointing"] is False
    assert kwargs["enable_progress_bar"] is False and kwargs["enable_model_summary"] is False
    assert kwargs["max_steps"] == -1 and kwargs["limit_val_batches"] == 0
    epochs = lx.trainer_kwargs(_trial("m:make", "lightning", 8, epochs=2), torch.device("cpu"), "")
    assert epochs["max_epochs"] == 2 and "limit_val_batches" not in epochs
    assert lx.accelerator(torch.device("cuda:1")) == {"accelerator": "cuda", "devices": [1]}


# ----------------------------------------------------------------- the CLI


REFUSED = {
    "--compile": ("--compile",),
    "--channels-last": ("--channels-last",),
    "--accumulate": ("--accumulate", "2"),
    "--freeze-epochs": ("--epochs", "2", "--freeze-epochs", "1"),
    "--lr-scaling": ("--lr-scaling", "linear"),
    "--breakdown": ("--breakdown",),
    "--workers": ("--workers", "2"),
    "--fit": ("--fit", "fine_tune(1)"),
    "--data": ("--data", "."),
}


@pytest.mark.parametrize("flag", list(REFUSED))
def test_sweep_refuses_what_lightning_cannot_honour(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from batchscope.cli.main import main

    with pytest.raises(SystemExit) as stop:
        main(["sweep", "--lightning", "m:make", "--no-store", *REFUSED[flag]])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args, named",
    [
        (["sweep", "linear", "--lightning", "m:make"], "--lightning"),
        (["maxbs", "linear", "--lightning", "m:make"], "--lightning"),
        (["maxbs", "--lightning", "m:make", "--images", "10"], "--images"),
        (["maxbs"], "--lightning"),
    ],
)
def test_entry_conflicts_are_one_line(
    args: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from batchscope.cli.main import main

    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err


def test_plan_accepts_what_lightning_honours() -> None:
    plan = Plan(
        workload="m:make",
        framework="lightning",
        batch_sizes=[8],
        precisions=["fp32", "bf16"],
        memory_limit_bytes=2**30,
    )
    assert plan.adaptive and plan.precisions == ["fp32", "bf16"]
    Plan(workload="m:make", framework="lightning", batch_sizes=[8], epochs=1, target="val_loss=1")


def test_cli_sweep_runs_each_trial_in_a_child_and_records_an_oom(
    tiny: str, tmp_path: Path, cli: object
) -> None:
    out = tmp_path / "run.json"
    code, stdout, stderr = cli(  # type: ignore[operator]
        "sweep",
        "--lightning",
        f"{tiny}:make_oom",
        "-b",
        "16,64",
        "--steps",
        "5",
        "--warmup",
        "1",
        "--devices",
        "cpu",
        "--threads",
        "1",
        "--no-store",
        "--json",
        str(out),
        "-q",
    )
    assert code == 1, stderr  # something ran, not every trial ok
    run = json.loads(out.read_text())
    assert run["settings"]["framework"] == "lightning"
    trials = {t["batch_size"]: t for t in run["trials"]}
    assert trials[16]["status"] == "ok" and trials[16]["measured_steps"] == 5
    assert trials[64]["status"] == "oom" and "out of memory" in trials[64]["error"]
    assert "tiny_lightning:make_oom" in stdout and "oom" in stdout
