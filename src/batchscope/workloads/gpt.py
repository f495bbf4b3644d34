"""The ``gpt`` built-in: a small decoder-only transformer trained as a byte-level language model.

nanoGPT's shape at a size a 2-core CPU trains quickly: token and position embeddings,
``layers`` pre-norm blocks (causal self-attention through
``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``, a 4× GELU MLP,
layer norms), a final layer norm and a head tied to the token embedding; AdamW.

The text is on every machine without a download: the Python standard library's own
source, the sorted ``*.py`` files directly in ``sysconfig.get_paths()["stdlib"]``
concatenated and cut to ``DEFAULT_TEXT_BYTES``. The bytes are the tokens (vocabulary 256);
the last 10 % of them are the validation set, so no validation window overlaps a
training one. A sample is one window of ``seq_len`` bytes and its targets the same
window shifted by one; windows do not overlap. Which files, how many bytes and their
SHA-256 are recorded in the workload's ``info`` and ``notes`` (the standard library
differs between Python versions, so a run records what it trained on).
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from batchscope.errors import DataError, WorkloadError
from batchscope.workloads.base import Workload
from batchscope.workloads.loader import WorkloadOptions

NAME = "gpt"
VOCAB = 256
DEFAULT_LAYERS = 2
DEFAULT_WIDTH = 128
DEFAULT_HEADS = 4
DEFAULT_SEQ_LEN = 128
#: 1 MB of text: thousands of windows at every sequence length, read in milliseconds
DEFAULT_TEXT_BYTES = 1_000_000
VAL_FRACTION = 0.1
LEARNING_RATE = 1e-3
#: the option keys this workload reads from ``WorkloadOptions.extra``
SIZE_OPTIONS = ("layers", "width", "heads", "seq_len")


@dataclass(frozen=True)
class GPTConfig:
    """The model's size; ``seq_len`` is also the position table's length."""

    layers: int = DEFAULT_LAYERS
    width: int = DEFAULT_WIDTH
    heads: int = DEFAULT_HEADS
    seq_len: int = DEFAULT_SEQ_LEN
    vocab: int = VOCAB

    def __post_init__(self) -> None:
        for name in ("layers", "width", "heads", "seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise WorkloadError(
                    f"gpt: --{name.replace('_', '-')} must be at least 1, got {value!r}"
                )
        if self.width % self.heads:
            raise WorkloadError(
                f"gpt: --width {self.width} is not divisible by --heads {self.heads}: "
                "each head gets width/heads channels"
            )

    @property
    def matmul_parameters(self) -> int:
        """Weights that multiply each token (no biases, norms or embedding lookups):
        the N of the usual ``6·N`` FLOPs per token; the tied head counts once."""
        return self.layers * 12 * self.width**2 + self.vocab * self.width


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.proj = nn.Linear(config.width, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        shape = (b, t, self.heads, c // self.heads)
        q, k, v = (z.view(shape).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().view(b, t, c))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.width)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.width)
        self.fc = nn.Linear(config.width, 4 * config.width)
        self.out = nn.Linear(4 * config.width, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    """``(batch, seq) int64 bytes -> (batch, seq, 256) logits``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.tok = nn.Embedding(config.vocab, config.width)
        self.pos = nn.Embedding(config.seq_len, config.width)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, config.vocab, bias=False)
        self.head.weight = self.tok.weight  # tied, as in GPT-2 and nanoGPT
        self.apply(_init_weights)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok(idx) + self.pos(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def _init_weights(module: nn.Module) -> None:
    """GPT-2's initialisation (normal, std 0.02; zero biases): the first loss is ~ln 256."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class GPTFactory:
    """A fresh model per call (a class, not a closure, so the workload pickles)."""

    def __init__(self, config: GPTConfig) -> None:
        self.config = config

    def __call__(self) -> nn.Module:
        return GPT(self.config)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per token (nats): the loss whose exp is the perplexity."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def adamw(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=LEARNING_RATE)


def _head(model: nn.Module) -> nn.Module:
    return model.ln_f  # type: ignore[return-value]  # the head is tied to the embedding


class ByteWindows(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Non-overlapping windows of ``seq_len`` bytes; the target is the next byte of each."""

    def __init__(self, data: torch.Tensor, seq_len: int) -> None:
        if data.dtype != torch.uint8 or data.ndim != 1:
            raise ValueError(f"data must be 1-D uint8, got {data.dtype} {tuple(data.shape)}")
        self.data = data
        self.seq_len = seq_len

    def __len__(self) -> int:
        return max(0, (len(self.data) - 1) // self.seq_len)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        start = i * self.seq_len
        window = self.data[start : start + self.seq_len + 1].long()
        return window[:-1], window[1:]


def stdlib_files() -> list[Path]:
    """The sorted ``*.py`` files directly in the interpreter's standard-library folder."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.is_file())
    if not files:
        raise DataError(f"gpt: no *.py files in the standard library folder {str(root)!r}")
    return files


@dataclass(frozen=True)
class Text:
    """The training text and where it came from."""

    data: bytes
    files: list[str]
    root: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def load_text(n_bytes: int = DEFAULT_TEXT_BYTES) -> Text:
    """The first ``n_bytes`` of the sorted standard-library sources, concatenated."""
    files = stdlib_files()
    chunks: list[bytes] = []
    used: list[str] = []
    total = 0
    for path in files:
        if total >= n_bytes:
            break
        chunk = path.read_bytes()
        chunks.append(chunk)
        used.append(path.name)
        total += len(chunk)
    data = b"".join(chunks)[:n_bytes]
    if len(data) < n_bytes:
        raise DataError(
            f"gpt: the standard library's *.py files hold {len(data)} bytes, fewer than "
            f"the {n_bytes} asked for"
        )
    return Text(data=data, files=used, root=str(files[0].parent))


def split_text(
    data: bytes, val_fraction: float = VAL_FRACTION
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) bytes as uint8 tensors: validation is the last ``val_fraction``."""
    cut = int(round(len(data) * (1.0 - val_fraction)))
    whole = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return whole[:cut].clone(), whole[cut:].clone()


def _int_option(options: WorkloadOptions, key: str, default: int) -> int:
    value = options.extra.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WorkloadError(
            f"gpt: --{key.replace('_', '-')} must be a whole number of at least 1, got {value!r}"
        )
    return value


def config_from(options: WorkloadOptions) -> GPTConfig:
    """The model size from ``options.extra`` (``layers``, ``width``, ``heads``, ``seq_len``)."""
    return GPTConfig(
        layers=_int_option(options, "layers", DEFAULT_LAYERS),
        width=_int_option(options, "width", DEFAULT_WIDTH),
        heads=_int_option(options, "heads", DEFAULT_HEADS),
        seq_len=_int_option(options, "seq_len", DEFAULT_SEQ_LEN),
    )


def build(options: WorkloadOptions) -> Workload:
    """The ``gpt`` workload: model size and sequence length from ``options.extra``."""
    config = config_from(options)
    n_bytes = _int_option(options, "text_bytes", DEFAULT_TEXT_BYTES)
    text = load_text(n_bytes)
    train_bytes, val_bytes = split_text(text.data)
    train, val = ByteWindows(train_bytes, config.seq_len), ByteWindows(val_bytes, config.seq_len)
    if len(train) == 0 or len(val) == 0:
        raise WorkloadError(
            f"gpt: seq_len {config.seq_len} is longer than the {len(val_bytes)} validation "
            "bytes: use a shorter sequence"
        )
    python = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    source = (
        f"the first {len(text.data):,} bytes of the {len(text.files)} sorted *.py files of "
        f"Python {python}'s standard library ({text.files[0]} … {text.files[-1]}), "
        f"sha256 {text.sha256[:12]}; last {VAL_FRACTION:.0%} for validation"
    )
    return Workload(
        name=NAME,
        model=GPTFactory(config),
        train_dataset=train,
        val_dataset=val,
        loss=lm_loss,
        optimizer=adamw,
        head=_head,
        seq_len=config.seq_len,
        description=(
            f"byte-level GPT ({config.layers} layers, width {config.width}, {config.heads} heads, "
            f"seq {config.seq_len}) on the Python standard library's source, AdamW"
        ),
        notes=[f"gpt data: {source}"],
        info={
            "layers": config.layers,
            "width": config.width,
            "heads": config.heads,
            "seq_len": config.seq_len,
            "vocab": VOCAB,
            "matmul_parameters": config.matmul_parameters,
            "n_train": len(train),
            "n_val": len(val),
            "text_bytes": len(text.data),
            "text_sha256": text.sha256,
            "text_root": text.root,
            "text_files": list(text.files),
            "python": python,
            "data": source,
        },
    )
