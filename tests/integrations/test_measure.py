"""``batchscope.measure``: a hand-written loop logs trials into the store and the report."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import batchscope
from batchscope.errors import DeviceError, UsageError
from batchscope.run.store import Store
from conftest import cli_env, run_cli, run_python

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "own_loop.py"


class Loop:
    """A user's loop pieces: a small model, its optimizer, and batches of any length."""

    def __init__(self, features: int = 8) -> None:
        torch.manual_seed(0)
        self.features = features
        self.model = nn.Sequential(nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, 2))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01)
        self.criterion = nn.CrossEntropyLoss()

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(n, self.features), torch.randint(0, 2, (n,))

    def train(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad()
        loss = self.criterion(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss


def _sweep_by_hand(store: Store, sizes: list[int], full: int, warmup: int) -> dict[int, Any]:
    """``full`` full batches and one partial batch per size, through ``m.batches``."""
    measurements = {}
    for bs in sizes:
        loop = Loop()
        batches = [loop.batch(bs) for _ in range(full)] + [loop.batch(bs // 2 + 1)]
        with batchscope.measure(
            batch_size=bs, run="by-hand", workload="tiny mlp", warmup=warmup, store=store
        ) as m:
            for x, y in m.batches(batches):
                loss = loop.train(x, y)
                m.step(loss)
        measurements[bs] = (m, loss.item())
    return measurements


def test_a_hand_written_loop_at_two_batch_sizes_is_one_stored_run(tmp_path: Path) -> None:
    full, warmup = 9, 2
    with Store(tmp_path / "s.db") as store:
        done = _sweep_by_hand(store, [8, 32], full, warmup)
        run = store.get_run("by-hand")
        planned = store.planned_keys("by-hand")
    assert planned == ["cpu|bs=8|r=0", "cpu|bs=32|r=0"]
    assert [t.batch_size for t in run.trials] == [8, 32]
    assert run.workload["name"] == "tiny mlp" and run.workload["spec"] == "measure"
    assert run.settings["source"] == "batchscope.measure" and run.settings["warmup"] == warmup
    assert run.environment.get("torch") == torch.__version__
    for trial in run.trials:
        bs = trial.batch_size
        m, last_loss = done[bs]
        assert m.run_id == "by-hand" and m.key == f"cpu|bs={bs}|r=0"
        assert m.result == trial  # what the block returned is what was stored
        assert trial.status == "ok" and trial.device == "cpu"
        assert trial.step_time_s is not None and trial.samples_per_s is not None
        assert trial.step_time_s.n == trial.measured_steps == full - warmup
        assert len(trial.step_times_s) == full - warmup
        assert trial.samples_per_s == pytest.approx(bs / trial.step_time_s.median, rel=1e-9)
        # the partial batch is trained and counted, but never timed
        assert trial.samples_trained == full * bs + bs // 2 + 1
        assert any("fewer than" in note for note in trial.notes)
        assert trial.total_time_s is not None
        assert trial.total_time_s >= sum(trial.step_times_s)
        assert trial.final_train_loss == pytest.approx(last_loss)
        assert trial.warmup_steps == warmup and trial.threads == torch.get_num_threads()
        assert trial.peak_memory_bytes is not None and trial.peak_rss_bytes is not None
        # the pass over the batches ran to its end: one epoch with its samples and loss
        assert len(trial.epochs) == 1 and trial.epochs[0].samples == trial.samples_trained
        assert trial.samples_per_epoch == trial.samples_trained
        assert trial.epochs[0].train_loss is not None
        assert trial.utilization.get("cpu_process_percent_mean") is not None  # the sampler ran
    analysis = batchscope.analyse_run(run)
    assert [d.device for d in analysis.devices] == ["cpu"]
    assert analysis.devices[0].recommendation.best_throughput is not None
    assert done[8][0].run().run_id == "by-hand"
    assert [t.batch_size for t in done[8][0].run().trials] == [8, 32]


def test_blocks_without_a_run_name_share_one_run_per_label(tmp_path: Path) -> None:
    loop = Loop()
    ids = []
    for bs, label in ((4, "a"), (8, "a"), (4, "b")):
        with batchscope.measure(
            batch_size=bs, workload=label, warmup=0, store=tmp_path / "s.db", sample_interval=0
        ) as m:
            for _ in range(2):
                m.step(loop.train(*loop.batch(bs)))
        ids.append(m.run_id)
    assert ids[0] == ids[1] != ids[2]
    with Store(tmp_path / "s.db") as store:
        assert [t.batch_size for t in store.get_run(ids[0]).trials] == [4, 8]
        assert [t.batch_size for t in store.get_run(ids[2]).trials] == [4]


def test_store_false_keeps_the_run_in_memory_and_a_rerun_adds_a_round(
    tmp_path: Path,
) -> None:
    loop = Loop()
    for steps in (3, 5):  # the same block twice: the second is the next round
        with batchscope.measure(
            batch_size=4, run="mem-only", warmup=1, store=False, sample_interval=0
        ) as m:
            for _ in range(steps):
                m.step(loop.train(*loop.batch(4)), samples=4)
    assert m.store_path is None
    run = m.run()
    assert [(t.repeat, t.step_time_s.n if t.step_time_s else None) for t in run.trials] == [
        (0, 2),
        (1, 4),
    ]
    # an explicit repeat replaces the trial of that round
    with batchscope.measure(
        batch_size=4, run="mem-only", warmup=1, store=False, sample_interval=0, repeat=0
    ) as m:
        for _ in range(7):
            m.step(loop.train(*loop.batch(4)), samples=4)
    run = m.run()
    assert sorted((t.repeat, t.step_time_s.n) for t in run.trials if t.step_time_s) == [
        (0, 6),
        (1, 4),
    ]
    assert not list(tmp_path.iterdir())


def _slow_batches(loop: Loop, n: int, bs: int, work: int) -> Iterator[Any]:
    """A producer that burns CPU for each batch: ``work`` is a loop count, not a sleep."""
    for _ in range(n):
        total = 0
        for i in range(work):
            total += i * i
        yield loop.batch(bs)


def test_batches_times_the_wait_for_a_slow_producer(tmp_path: Path) -> None:
    # the "training" is only m.step(): nothing the producer's loop count could be near,
    # however busy the machine (a real torch step can take 30 ms on a loaded 2-core box)
    loop = Loop()
    results = {}
    for wrapped in (True, False):
        with batchscope.measure(
            batch_size=4, run="slow-data", warmup=1, store=tmp_path / "s.db", repeat=int(wrapped)
        ) as m:
            source = _slow_batches(loop, 6, 4, work=200_000)  # ~10 ms against a µs step
            for i, (_x, _y) in enumerate(m.batches(source) if wrapped else source):
                m.step(0.5 + i, samples=4)
        results[wrapped] = m.result
    slow, unwrapped = results[True], results[False]
    assert slow.data_wait_fraction is not None and slow.data_wait_fraction > 0.5
    assert slow.data_wait_s is not None and slow.data_wait_s.median > 0
    assert slow.time_split["data_wait"] > slow.time_split["compute"]
    assert any(d.startswith("input-bound") for d in slow.diagnosis)
    # without batches() the same wait is part of the step and nothing is called data wait
    assert unwrapped.data_wait_fraction == 0.0
    assert not any(d.startswith("input-bound") for d in unwrapped.diagnosis)


def test_paused_leaves_evaluation_out_of_the_step_times(tmp_path: Path) -> None:
    loop = Loop()
    times = {}
    for paused in (True, False):
        with batchscope.measure(
            batch_size=4, run="paused", warmup=0, store=tmp_path / "s.db", repeat=int(paused)
        ) as m:
            for _ in range(5):
                m.step()  # a step of no work: the evaluation below is all there is to time
                with m.paused() if paused else _nothing():
                    for _ in _slow_batches(loop, 1, 4, work=200_000):
                        pass
        assert m.result is not None and m.result.step_time_s is not None
        times[paused] = m.result.step_time_s.median
    # only the unpaused block's steps contain the evaluation
    assert times[True] * 10 < times[False]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "s.db"


def _nothing() -> Any:
    import contextlib

    return contextlib.nullcontext()


@pytest.mark.parametrize(
    ("raised", "status", "error"),
    [
        (RuntimeError("kaboom in the user's loop"), "error", "RuntimeError: kaboom"),
        (
            RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
            "oom",
            "out of memory",
        ),
        (KeyboardInterrupt(), "interrupted", "KeyboardInterrupt"),
    ],
)
def test_an_exception_is_recorded_and_re_raised(
    store_path: Path, raised: BaseException, status: str, error: str
) -> None:
    loop = Loop()
    with (
        pytest.raises(type(raised)) as caught,
        batchscope.measure(batch_size=4, run="fails", warmup=1, store=store_path) as m,
    ):
        for _ in range(4):
            m.step(loop.train(*loop.batch(4)))
        raise raised
    assert caught.value is raised
    with Store(store_path) as store:
        (trial,) = store.get_run("fails").trials
    assert trial.status == status and not trial.ok
    assert trial.error is not None and error in trial.error
    # what ran before the failure is kept: samples, raw step times, memory
    assert trial.samples_trained == 16 and len(trial.step_times_s) == 3
    assert trial.step_time_s is None and trial.samples_per_s is None
    assert trial.peak_memory_bytes is not None
    assert m.result == trial


def test_a_block_without_steps_is_an_error_trial(store_path: Path) -> None:
    with batchscope.measure(batch_size=4, run="empty", store=store_path) as m:
        pass
    assert m.result is not None and m.result.status == "error"
    assert m.result.error is not None and "m.step()" in m.result.error


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a whole number of at least 1, got 0"),
        ({"batch_size": 2.5}, "batch_size must be a whole number"),
        ({"batch_size": 8, "device": "tpu"}, "unknown device 'tpu'"),
        ({"batch_size": 8, "warmup": -1}, "warmup must be a whole number of at least 0"),
        ({"batch_size": 8, "run": "a/b"}, "not a usable run name"),
        ({"batch_size": 8, "store": 3}, "store must be a batchscope Store, a path, or False"),
        ({"batch_size": 8, "sample_interval": -1}, "sample_interval must be 0"),
    ],
)
def test_bad_input_is_one_clear_line(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        batchscope.measure(**kwargs)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_misuse_inside_and_outside_the_block(store_path: Path) -> None:
    m = batchscope.measure(batch_size=4, store=store_path, run="misuse")
    with pytest.raises(UsageError, match="inside the 'with batchscope.measure"):
        m.step()
    with m:
        with pytest.raises(UsageError, match="scalar loss"):
            m.step(torch.ones(3))
        m.step(1.5)
    with pytest.raises(UsageError, match="runs once"), m:
        pass
    with pytest.raises(UsageError, match="inside the 'with batchscope.measure"):
        m.step()


def test_a_run_that_measure_did_not_make_is_refused(store_path: Path) -> None:
    from batchscope.core.results import RunResult

    with Store(store_path) as store:
        store.create_run(
            RunResult(
                run_id="a-sweep",
                created="2026",
                workload={"name": "x"},
                settings={},
                environment={},
            ),
            [],
        )
    with (
        pytest.raises(UsageError, match="was not made by batchscope.measure"),
        batchscope.measure(batch_size=4, run="a-sweep", store=store_path),
    ):
        pass
    with Store(store_path) as store:
        assert store.get_run("a-sweep").trials == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_absent_device_is_refused_before_the_loop_runs(store_path: Path) -> None:
    with (
        pytest.raises(DeviceError, match="not present"),
        batchscope.measure(batch_size=4, device="cuda", store=store_path),
    ):
        raise AssertionError("the block must not run")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_device_is_inferred_from_a_cuda_loss(store_path: Path) -> None:
    model = nn.Linear(256, 10).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with batchscope.measure(batch_size=64, run="gpu", warmup=1, store=store_path) as m:
        for _ in range(4):
            x = torch.randn(64, 256, device="cuda")
            optimizer.zero_grad()
            loss = model(x).square().mean()
            loss.backward()
            optimizer.step()
            m.step(loss)
    r = m.result
    assert r is not None and r.status == "ok" and r.device == "cuda:0"
    assert m.key == "cuda:0|bs=64|r=0"
    assert r.peak_memory_bytes is not None and r.peak_memory_bytes > 0
    assert r.peak_reserved_bytes is not None and r.final_train_loss is not None


def test_measure_is_lazy_and_torch_free_to_reach() -> None:
    code, out, err = run_python(
        "import sys, batchscope\n"
        "assert callable(batchscope.measure)\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)\n"
        "print('ok')"
    )
    assert code == 0, err
    assert out.strip() == "ok"


def test_the_example_runs_and_the_cli_shows_its_run(tmp_path: Path) -> None:
    store = tmp_path / "example.db"
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            *("--batch-sizes", "16,48", "--steps", "2", "--warmup", "1"),
            *("--images", "160", "--run", "example-run", "--store", str(store)),
        ],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for bs in (16, 48):
        assert f"batch size {bs:>4}:" in proc.stdout
    assert "samples/s" in proc.stdout
    assert f"batchscope show example-run --store {store}" in proc.stdout
    with Store(store) as opened:
        run = opened.get_run("example-run")
    assert [(t.batch_size, t.status) for t in run.trials] == [(16, "ok"), (48, "ok")]
    assert run.workload["name"] == "simplecnn (own loop)"
    assert run.workload["parameters"] == 41_418  # seed 001's SimpleCNN

    code, out, err = run_cli("show", "example-run", "--store", str(store), cwd=tmp_path)
    assert code == 0, err
    assert "simplecnn (own loop) on cpu" in out
    assert "Samples/s" in out
    for size in ("16", "48"):
        assert any(line.strip("│ ").startswith(size) for line in out.splitlines()), out


def test_the_epoch_loss_is_the_sample_weighted_mean_of_the_step_losses() -> None:
    """Tensors of any float type and shape (1,) or (), numbers, a partial batch: one mean."""
    weight = torch.tensor(0.5, requires_grad=True)
    losses: list[Any] = [
        weight * 2,  # 1.0, part of a graph
        torch.tensor([3.0]),
        2.5,
        torch.tensor(4.0, dtype=torch.float64),
        torch.tensor(0.5, dtype=torch.bfloat16),
    ]
    sizes = [4, 4, 4, 4, 2]
    batches = [(torch.zeros(n, 1), torch.zeros(n)) for n in sizes]
    with batchscope.measure(batch_size=4, warmup=0, store=False, sample_interval=0) as m:
        for (x, _), loss in zip(m.batches(batches), losses, strict=True):
            assert len(x) in sizes
            m.step(loss)
    expected = (1.0 * 4 + 3.0 * 4 + 2.5 * 4 + 4.0 * 4 + 0.5 * 2) / sum(sizes)
    assert m.result is not None and len(m.result.epochs) == 1
    assert m.result.epochs[0].train_loss == pytest.approx(expected)
    assert m.result.final_train_loss == 0.5
    # the running sum is its own tensor: the losses handed in are as they were
    assert losses[0].item() == 1.0 and losses[1].item() == 3.0


def test_losses_outside_a_pass_and_a_second_pass() -> None:
    """Each pass of m.batches() starts its own sum; a step outside a pass still counts as last."""
    with batchscope.measure(batch_size=2, warmup=0, store=False, sample_interval=0) as m:
        m.step(torch.tensor(9.0))
        for _ in m.batches([(torch.zeros(2),)] * 2):
            m.step(torch.tensor(1.0))
        for _ in m.batches([(torch.zeros(2),)] * 2):
            m.step(torch.tensor(3.0))
    assert m.result is not None
    assert [e.train_loss for e in m.result.epochs] == [pytest.approx(1.0), pytest.approx(3.0)]
    assert m.result.final_train_loss == 3.0
