"""GPTQ and error-minimizing scales (MSE clipping) against round-to-nearest on real models: the digits CNN (accuracy) and all-MiniLM-L6-v2
(worst and mean cosine of sentence embeddings against float32), with the time quantize_model takes.

Calibration uses sentences (MiniLM) and images (CNN) other than the evaluated ones: MiniLM is
calibrated on sentences of the Python standard library's docstrings (offline).

Usage: python benchmarks/bench_gptq.py [--models digits,minilm] [--threads N]
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
         "gptq + mse scales": lowbit.GPTQ(clip=True)}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits,minilm")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        lowbit.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    rows = []
    if "digits" in args.models:
        rows += bench_digits()
    if "minilm" in args.models:
        rows += bench_minilm()
    head = ["model", "weights", "algorithm", "quality", "quantize_model s"]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))


if __name__ == "__main__":
    main()
