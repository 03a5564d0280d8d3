"""GPTQ, AWQ, SmoothQuant, bias correction and error-minimizing scales (MSE clipping) against round-to-nearest on real
models: the digits CNN (accuracy) and all-MiniLM-L6-v2 (worst and mean cosine of sentence embeddings against float32),
with the time quantize_model takes.

Calibration uses sentences (MiniLM) and images (CNN) other than the evaluated ones: MiniLM is
calibrated on sentences of the Python standard library's docstrings (offline).

Usage: python benchmarks/bench_gptq.py [--models digits,minilm,w8a8,digits4] [--algos rtn,awq,...] [--threads N]
(--algos keeps the named rows of ALGOS; w8a8: MiniLM static int8 with SmoothQuant; digits4: the narrow digits CNN
of notebook 05 with per-tensor 4-bit weights and static activations, with bias correction and AWQ.)
"""

from __future__ import annotations

import argparse
import os
import re
import time

import lowbit
import torch
from lowbit.demo.models import SENTENCES, accuracy, embed_sentences, load_digits_data, load_minilm, train_digits_cnn

ALGOS = {"rtn": None, "mse scales": lowbit.MSEClip(), "gptq": lowbit.GPTQ(), "gptq act-order": lowbit.GPTQ(act_order=True),
         "gptq + mse scales": lowbit.GPTQ(clip=True), "awq": lowbit.AWQ(), "awq + mse scales": lowbit.AWQ(clip=True)}


def docstring_sentences(n: int) -> list[str]:
    """English sentences from the standard library's docstrings (offline calibration text)."""
    import argparse as a
    import collections
    import functools
    import inspect
    import itertools
    import json
    import logging
    import textwrap
    import unittest

    out: list[str] = []
    for mod in (a, collections, functools, itertools, textwrap, unittest, logging, json, os, re, inspect):
        for name in dir(mod):
            doc = getattr(getattr(mod, name), "__doc__", None)
            if isinstance(doc, str):
                for s in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                    if 40 < len(s) < 200 and s not in out:
                        out.append(s)
    return out[:n]


def bench_digits() -> list[list[object]]:
    data = load_digits_data()
    model = train_digits_cnn(data).eval().requires_grad_(False)
    calib = [data.x_train[i:i + 64] for i in range(0, 512, 64)]
    rows = [["digits CNN", "float32", "", f"{accuracy(model, data.x_test, data.y_test):.2f}%", ""]]
    for fmt in ({"weight": "int4", "group_size": 32}, {"weight": "nf4", "group_size": 32}, {"weight": "int4"}):
        for algo, opts in ALGOS.items():
            if isinstance(opts, lowbit.AWQ):  # AWQ scales Linear layers: the convolutions keep round-to-nearest
                cfg = lowbit.QuantConfig(**fmt, activation="float", per_layer={"fc*": {"algorithm": opts}})
            else:
                cfg = lowbit.QuantConfig(**fmt, activation="float", algorithm=opts)
            t = time.perf_counter()
            q = lowbit.quantize_model(model, cfg, calib_data=calib, progress=False)
            dt = time.perf_counter() - t
            rows.append(["digits CNN", lowbit.summary(q).rows[0]["action"].split(",")[0], algo,
                         f"{accuracy(q, data.x_test, data.y_test):.2f}%", f"{dt:.2f}"])
    return rows


def bench_minilm() -> list[list[object]]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tok, model = load_minilm()
    model.eval()
    text = docstring_sentences(256)
    calib = [dict(tok(text[i:i + 32], padding=True, truncation=True, max_length=64, return_tensors="pt"))
             for i in range(0, len(text), 32)]
    ref = embed_sentences(model, tok, SENTENCES)
    rows = []
    for fmt in ({"weight": "int4", "group_size": 64}, {"weight": "nf4"}):
        for algo, opts in ALGOS.items():
            t = time.perf_counter()
            q = lowbit.quantize_model(model, lowbit.QuantConfig(**fmt, algorithm=opts), calib_data=calib,
                                      progress=False)
            dt = time.perf_counter() - t
            cos = torch.nn.functional.cosine_similarity(embed_sentences(q, tok, SENTENCES), ref)
            rows.append(["all-MiniLM-L6-v2", f"{fmt['weight']} g{fmt.get('group_size', 64)}", algo,
                         f"worst {float(cos.min()):.4f} mean {float(cos.mean()):.4f}", f"{dt:.1f}"])
    return rows


def _minilm_calib(tok: object, n: int = 128) -> list[dict]:
    text = docstring_sentences(n)
    return [dict(tok(text[i:i + 32], padding=True, truncation=True, max_length=64, return_tensors="pt"))
            for i in range(0, len(text), 32)]


def bench_w8a8() -> list[list[object]]:
    """MiniLM with int8 weights and static per-tensor uint8 activations: RTN vs SmoothQuant alphas."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tok, model = load_minilm()
    model.eval()
    calib = _minilm_calib(tok, 256)
    ref = embed_sentences(model, tok, SENTENCES)
    rows = []
    for name, algo in [("rtn", None), *[(f"smoothquant alpha {a}", lowbit.SmoothQuant(alpha=a)) for a in (0.6, 0.75)]]:
        for obs in ("minmax",):
            t = time.perf_counter()
            q = lowbit.quantize_model(model, lowbit.QuantConfig(weight="int8", activation="static", observer=obs,
                                                                algorithm=algo), calib_data=calib, progress=False)
            dt = time.perf_counter() - t
            cos = torch.nn.functional.cosine_similarity(embed_sentences(q, tok, SENTENCES), ref)
            rows.append(["all-MiniLM-L6-v2", f"int8, static act ({obs})", name,
                         f"worst {float(cos.min()):.4f} mean {float(cos.mean()):.4f}", f"{dt:.1f}"])
    return rows


def bench_digits4() -> list[list[object]]:
    """Notebook 05's narrow digits CNN, per-tensor int4 weights and static activations (no QAT)."""
    from lowbit.demo.models import DigitsCNN, fit

    data = load_digits_data(seed=0)
    torch.manual_seed(0)
    model = fit(DigitsCNN(width=4, hidden=16), data.x_train, data.y_train, epochs=10, lr=5e-3).requires_grad_(False)
    calib = [data.x_train[i:i + 128] for i in range(0, 512, 128)]
    rows = [["narrow digits CNN", "float32", "", f"{accuracy(model, data.x_test, data.y_test):.2f}%", ""]]
    combos = {"rtn": {}, "bias correction": {"bias_correction": True}, "mse": {"algorithm": "mse"},
              "mse + bias correction": {"algorithm": "mse", "bias_correction": True},
              "gptq + bias correction": {"algorithm": "gptq", "bias_correction": True},
              "awq (fc) + bias correction": {"per_layer": {"fc*": {"algorithm": "awq"}}, "bias_correction": True},
              "mse (conv) + awq (fc) + bias correction": {"algorithm": "mse", "per_layer": {"fc*": {"algorithm": "awq"}},
                                                          "bias_correction": True}}
    for gran in ("per_tensor", "per_channel"):
        for name, kw in combos.items():
            t = time.perf_counter()
            cfg = lowbit.QuantConfig(weight="int4", activation="static", granularity=gran, **kw)
            q = lowbit.quantize_model(model, cfg, calib_data=calib, progress=False)
            dt = time.perf_counter() - t
            rows.append(["narrow digits CNN", f"int4 {gran}, static act", name,
                         f"{accuracy(q, data.x_test, data.y_test):.2f}%", f"{dt:.2f}"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits,minilm")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--algos", default=None, help="comma-separated ALGOS keys (default: all)")
    args = ap.parse_args()
    if args.algos:
        for k in list(ALGOS):
            if k not in args.algos.split(","):
                del ALGOS[k]
    if args.threads:
        lowbit.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    rows = []
    models = args.models.split(",")
    if "digits" in models:
        rows += bench_digits()
    if "digits4" in models:
        rows += bench_digits4()
    if "minilm" in models:
        rows += bench_minilm()
    if "w8a8" in models:
        rows += bench_w8a8()
    head = ["model", "weights", "algorithm", "quality", "quantize_model s"]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))


if __name__ == "__main__":
    main()
