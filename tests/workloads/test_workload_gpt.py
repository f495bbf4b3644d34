"""The ``gpt`` built-in: its text is built offline and deterministically, its split is
disjoint, it learns, and a trial counts tokens (tokens/s, FLOPs per token, perplexity)
from the one definition in batchscope.core.tokens."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from batchscope.core.plan import TrialSpec
from batchscope.core.results import TrialResult
from batchscope.engine.flops import cpu_attention_formulas
from batchscope.engine.trial import run_trial
from batchscope.errors import WorkloadError
from batchscope.workloads import BUILTINS, WorkloadOptions, describe_builtins, load_workload
from batchscope.workloads.gpt import GPT, ByteWindows, GPTConfig, load_text, split_text

#: a model small enough that a few dozen steps take about a second on a shared 2-core CPU
TINY = {"layers": 1, "width": 32, "heads": 2, "seq_len": 16, "text_bytes": 60_000}


@pytest.fixture(autouse=True)
def _threads(restore_torch_threads: None) -> Iterator[None]:
    yield


def test_gpt_is_a_listed_builtin() -> None:
    assert "gpt" in BUILTINS
    assert any(name == "gpt" for name, _ in describe_builtins())


def test_text_is_the_same_bytes_twice_and_names_its_files() -> None:
    a, b = load_text(50_000), load_text(50_000)
    assert a.data == b.data and len(a.data) == 50_000
    assert a.sha256 == b.sha256
    assert a.files == sorted(a.files) and all(f.endswith(".py") for f in a.files)


def test_split_is_disjoint_and_covers_the_text_with_the_last_tenth_for_validation() -> None:
    data = load_text(50_000).data
    train, val = split_text(data)
    assert len(val) == 5_000 and len(train) + len(val) == len(data)
    assert bytes(train.tolist()) + bytes(val.tolist()) == data  # no byte in both


def test_windows_are_next_byte_targets_without_overlap() -> None:
    data = torch.arange(0, 41, dtype=torch.uint8)
    windows = ByteWindows(data, 8)
    assert len(windows) == 5  # (41 - 1) // 8
    x0, y0 = windows[0]
    x1, _ = windows[1]
    assert torch.equal(y0[:-1], x0[1:]) and int(y0[-1]) == int(x1[0])
    assert int(x1[0]) == 8  # the next window starts where the last one ended
    with pytest.raises(IndexError):
        windows[5]


def test_workload_records_its_data_and_size() -> None:
    w = load_workload("gpt", WorkloadOptions(extra=dict(TINY)))
    assert w.seq_len == 16
    assert w.info["text_bytes"] == 60_000 and w.info["text_files"]
    assert any("standard library" in note for note in w.notes)
    x, y = w.train_dataset[0]
    assert x.shape == (16,) and y.shape == (16,) and x.dtype == torch.long


def test_width_not_divisible_by_heads_is_refused_with_both_values() -> None:
    with pytest.raises(WorkloadError, match=r"--width 30 .*--heads 4"):
        GPTConfig(width=30, heads=4)


def test_the_model_learns_over_a_few_dozen_steps() -> None:
    torch.set_num_threads(1)  # a tiny model: one thread is the fastest on a shared machine
    torch.manual_seed(0)
    w = load_workload("gpt", WorkloadOptions(extra=dict(TINY)))
    model = w.model()
    opt = w.optimizer(model.parameters())
    loader = torch.utils.data.DataLoader(
        w.train_dataset, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    losses = []
    batches = iter(loader)
    for _ in range(40):
        x, y = next(batches)
        loss = w.loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(256), abs=0.3)  # GPT-2's init: near uniform
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 1.0, losses  # bytes of Python source are far from uniform


def hand_flops(config: GPTConfig, tokens: int) -> int:
    """6·N per token for the matmul weights (forward 2, backward 4) plus attention:
    forward QKᵀ and AV are 4·T·C per token and layer, backward 2.5× that (torch's
    formula recomputes the scores), causal masking not subtracted: 14·L·T·C per token."""
    n = config.matmul_parameters
    return 6 * n * tokens + 14 * config.layers * config.seq_len * config.width * tokens


def test_step_flops_match_the_hand_count_attention_included() -> None:
    config = GPTConfig(layers=2, width=32, heads=4, seq_len=24)
    model = GPT(config)
    b = 3
    x = torch.randint(0, 256, (b, config.seq_len))
    counter = FlopCounterMode(display=False, custom_mapping=cpu_attention_formulas())
    with counter:
        logits = model(x)
        torch.nn.functional.cross_entropy(logits.reshape(-1, 256), x.reshape(-1)).backward()
    expected = hand_flops(config, b * config.seq_len)
    # exact up to what the hand count leaves out; 1 % is the stated tolerance
    assert counter.get_total_flops() == pytest.approx(expected, rel=0.01)
    attention = 14 * config.layers * config.seq_len * config.width * b * config.seq_len
    assert counter.get_total_flops() - 6 * config.matmul_parameters * b * config.seq_len > (
        0.9 * attention
    )  # the CPU attention kernel is counted, not silently zero


def test_a_trial_counts_tokens_from_its_median_step() -> None:
    options = WorkloadOptions(extra={**TINY, "text_bytes": 20_000}).to_dict()
    spec = TrialSpec(
        workload="gpt",
        workload_options=options,
        device="cpu",
        batch_size=4,
        steps=8,
        warmup=1,
        sample_interval_s=0,
        seq_len=16,
    )
    result = run_trial(spec)
    assert result.ok and result.step_time_s is not None
    assert result.seq_len == 16 and result.tokens_per_step == 4 * 16
    assert result.tokens_per_s == pytest.approx(64 / result.step_time_s.median, rel=1e-12)
    assert result.tokens_per_s_low == pytest.approx(64 / result.step_time_s.median_high)
    assert result.tokens_per_s_high == pytest.approx(64 / result.step_time_s.median_low)
    config = GPTConfig(layers=1, width=32, heads=2, seq_len=16)
    assert result.flops_per_token == pytest.approx(hand_flops(config, 1), rel=0.01)
    assert result.val_loss is not None and result.val_loss < 6.0
    assert result.val_perplexity == pytest.approx(math.exp(result.val_loss))
    again = TrialResult.from_dict(result.to_dict())
    assert (again.tokens_per_s, again.val_perplexity) == (
        result.tokens_per_s,
        result.val_perplexity,
    )


def test_a_trial_refuses_a_seq_len_the_workload_ignores() -> None:
    from batchscope.errors import UsageError

    spec = TrialSpec(
        workload="linear",
        workload_options={"images": 32},
        device="cpu",
        batch_size=4,
        steps=1,
        warmup=0,
        sample_interval_s=0,
        seq_len=16,
    )
    with pytest.raises(UsageError, match="--seq-lens 16.*'linear' has no sequence"):
        run_trial(spec)
