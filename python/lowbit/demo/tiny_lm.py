"""A tiny causal language model trained offline on the Python standard library's own source files,
for measuring weight quantization by perplexity (GPTQ vs round-to-nearest).

The corpus is the running interpreter's ``Lib`` directory (``os.path.dirname(os.__file__)``): its
top-level ``*.py`` files in sorted order, split by file (every 10th file by CRC-32 of its name is
held out), read as bytes. The model is a byte-level GPT (pre-LayerNorm blocks of causal
self-attention and a GELU MLP; untied output head so it is quantized like the other Linear
layers). Training is deterministic for a given seed, torch build and thread count; the trained
weights are cached under ``tempfile.gettempdir()/lowbit-cache`` keyed by a hash of the
configuration and the corpus, so repeated runs do not retrain.

Example:
    >>> model, data = train_tiny_lm(TinyLMConfig(steps=20))  # doctest: +SKIP
    >>> perplexity(model, data.test, context=128)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zlib
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LMData", "TinyLM", "TinyLMConfig", "lm_calibration", "load_stdlib_corpus", "perplexity", "train_tiny_lm"]


@dataclass(frozen=True)
class TinyLMConfig:
    """Model and training settings (defaults: 2 layers, d=128, ~0.5 M parameters, 300 steps)."""

    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    context: int = 128
    steps: int = 300
    batch: int = 32
    lr: float = 3e-3
    seed: int = 0
    train_bytes: int = 2_000_000
    test_bytes: int = 120_000


@dataclass(frozen=True)
class LMData:
    """Byte tokens (uint8) of the training and held-out files, and the files' names."""

    train: np.ndarray
    test: np.ndarray
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]


def load_stdlib_corpus(train_bytes: int = 2_000_000, test_bytes: int = 120_000) -> LMData:
    """The standard library's top-level ``*.py`` files as bytes: held-out files are those whose
    name's CRC-32 is divisible by 10; each split is the concatenation of its files in sorted order,
    cut to the requested size."""
    lib = os.path.dirname(os.__file__)
    names = sorted(f for f in os.listdir(lib) if f.endswith(".py") and os.path.isfile(os.path.join(lib, f)))
    train, test, train_files, test_files = [], [], [], []
    have = {"train": 0, "test": 0}
    for name in names:
        split = "test" if zlib.crc32(name.encode()) % 10 == 0 else "train"
        limit = test_bytes if split == "test" else train_bytes
        if have[split] >= limit:
            continue
        with open(os.path.join(lib, name), "rb") as f:
            data = f.read()
        (test if split == "test" else train).append(data)
        (test_files if split == "test" else train_files).append(name)
        have[split] += len(data)
    if have["train"] < train_bytes // 4 or have["test"] < test_bytes // 4:
        raise ValueError(f"load_stdlib_corpus: too little text under {lib} ({have})")
    as_tokens = lambda parts, n: np.frombuffer(b"".join(parts)[:n], np.uint8).copy()  # noqa: E731
    return LMData(as_tokens(train, train_bytes), as_tokens(test, test_bytes), tuple(train_files), tuple(test_files))


class _Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(a)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class TinyLM(nn.Module):
    """Byte-level GPT: token and learned position embeddings, ``n_layers`` pre-LN blocks, final
    LayerNorm, Linear head to 256 logits. ``forward(tokens (B, T) int64) -> logits (B, T, 256)``."""

    def __init__(self, cfg: TinyLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(256, cfg.d_model)
        self.pos = nn.Embedding(cfg.context, cfg.d_model)
        self.blocks = nn.Sequential(*[_Block(cfg.d_model, cfg.n_heads) for _ in range(cfg.n_layers)])
        self.ln = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, 256, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tok(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        return self.head(self.ln(self.blocks(x)))


def _windows(tokens: np.ndarray, context: int, starts: np.ndarray) -> torch.Tensor:
    idx = starts[:, None] + np.arange(context + 1)[None, :]
    return torch.from_numpy(tokens[idx].astype(np.int64))


def _cache_path(cfg: TinyLMConfig, data: LMData) -> str:
    h = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode())
    h.update(data.train.tobytes())
    h.update(torch.__version__.encode())
    return os.path.join(tempfile.gettempdir(), "lowbit-cache", f"tiny_lm-{h.hexdigest()[:16]}.pt")


def train_tiny_lm(cfg: Optional[TinyLMConfig] = None, data: Optional[LMData] = None,
                  cache: bool = True) -> tuple[TinyLM, LMData]:
    """Trains (or loads from the cache) a :class:`TinyLM` on the standard library corpus: AdamW,
    cosine learning rate, ``cfg.steps`` batches of ``cfg.batch`` random windows. Returns the model
    in eval mode without gradients, and the data."""
    cfg = cfg or TinyLMConfig()
    data = data or load_stdlib_corpus(cfg.train_bytes, cfg.test_bytes)
    torch.manual_seed(cfg.seed)
    model = TinyLM(cfg)
    path = _cache_path(cfg, data)
    if cache and os.path.isfile(path):
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval().requires_grad_(False), data
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    model.train()
    for _ in range(cfg.steps):
        xy = _windows(data.train, cfg.context, rng.integers(0, len(data.train) - cfg.context - 1, cfg.batch))
        loss = F.cross_entropy(model(xy[:, :-1]).reshape(-1, 256), xy[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    if cache:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)
    return model.eval().requires_grad_(False), data


@torch.no_grad()
def perplexity(model: nn.Module, tokens: np.ndarray, context: int = 128, batch: int = 64) -> float:
    """exp(mean next-byte cross-entropy) over consecutive non-overlapping windows of ``context + 1``
    bytes of ``tokens`` (each window predicts its last ``context`` bytes)."""
    starts = np.arange(0, len(tokens) - context - 1, context)
    total, count = 0.0, 0
    for i in range(0, len(starts), batch):
        xy = _windows(tokens, context, starts[i:i + batch])
        logits = model(xy[:, :-1])
        total += float(F.cross_entropy(logits.reshape(-1, 256).float(), xy[:, 1:].reshape(-1), reduction="sum"))
        count += xy[:, 1:].numel()
    return float(np.exp(total / count))


def lm_calibration(data: LMData, n_windows: int = 128, context: int = 128, batch: int = 32,
                   seed: int = 1) -> list[torch.Tensor]:
    """Calibration batches for ``quantize_model``: ``n_windows`` random training windows of
    ``context`` bytes (never held-out text), in batches of ``batch``."""
    rng = np.random.default_rng(seed)
    x = _windows(data.train, context - 1, rng.integers(0, len(data.train) - context, n_windows))
    return [x[i:i + batch] for i in range(0, n_windows, batch)]
