"""The docstring examples of the scheme layer and the torch interop modules run as doctests."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lowbit

MODULES = [
    "lowbit.core.schemes",
    "lowbit.core.calibration",
    "lowbit.core.config",
    "lowbit.core.packed",
    "lowbit.core.linear_4bit",
    "lowbit.core.matmul",
    "lowbit.core.quantize",
    "lowbit.core.formats",
    "lowbit.core.gptq",
    "lowbit.core.clipping",
    "lowbit.core.smoothing",
    "lowbit.core.attention",
    "lowbit.core.rotation",
    "lowbit.interop.equalize",
    "lowbit.interop.convert",
    "lowbit.interop.serialization",
    "lowbit.interop.checkpoint",
    "lowbit.nn",
    "lowbit.nn.linear",
    "lowbit.nn.conv",
    "lowbit.nn.fake_quantize",
    "lowbit.nn.qat",
    "lowbit.nn.embedding",
    "lowbit.nn.attention",
    "lowbit.nn.siblings",
    "lowbit.nn.fused",
    "lowbit.nn.norm",
    "lowbit.compress.pruning",
    "lowbit.compress.distill",
    "lowbit.compress.sparse",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    torch.manual_seed(0)
    mod = importlib.import_module(name)
    res = doctest.testmod(
        mod,
        extraglobs={"lowbit": lowbit, "np": np, "torch": torch},
        verbose=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert res.failed == 0
