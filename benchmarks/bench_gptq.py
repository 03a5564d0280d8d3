"""GPTQ, AWQ, SmoothQuant, AutoRound, bias correction and error-minimizing scales (MSE clipping) against
round-to-nearest on real models: the digits CNN (accuracy) and all-MiniLM-L6-v2 (worst and mean cosine of sentence
embeddings against float32), with the time quantize_model takes.

Calibration uses sentences (MiniLM) and images (CNN) other than the evaluated ones. MiniLM is calibrated on 256
sentences (``--calib-sentences N``; batches of 32 grouped by length, lowbit.text_batches) and evaluated on the
demo's 16 everyday test sentences (lowbit.demo.models.SENTENCES) and, in the "in-domain" figures, on the next 64
sentences of the calibration source, not used for calibration. ``--calib mix``
(default): lowbit.demo.text.sentence_corpus, the standard library's docstrings and template everyday sentences that
share no four words with the test sentences; ``--calib docstrings``: docstrings only, another domain than the test
sentences. There GPTQ gains in-domain and loses that gain on the test sentences: its Hessian pushes the rounding
error into input channels that are quiet on docstrings, some of which fire on everyday sentences (act-order, which
rounds the loud channels first and leaves the quiet ones to absorb the error, most of all).

Models: digits, minilm (weight-only formats x algorithms), w8a8 (MiniLM static int8 with SmoothQuant),
digits4 (the narrow digits CNN of notebook 05 with per-tensor 4-bit weights and static activations, with
bias correction and AWQ), lm, layer (below). ``--algos`` keeps the named rows of ALGOS.

Layer speed (``--models layer``): GPTQ of one (n, k) layer with its Hessian given (int4 g128 and int8 per
channel), lowbit's ``gptq_quantize`` against a straightforward float32 torch implementation of the same
algorithm (the reference GPTQ repository's ``fasterquant`` loop: dampening, Cholesky, Cholesky inverse,
upper Cholesky, blocks of 128 columns with rank-1 updates per column and one matmul per block), timed
interleaved by lowbit.Timer; both use round-to-nearest's static group scales, and the table gives each
one's loss ``tr((W - Q) H (W - Q)^T) / n`` and the share of codes they agree on.

Language model (``--models lm``): perplexity of lowbit.demo.tiny_lm's byte-level GPT (trained on the
standard library's sources, weights cached) on held-out files, float vs int4 g128 / nf4 / int8 with
each algorithm, and optimum-quanto's int4 weights (round to nearest; quanto has no GPTQ).

Usage: python benchmarks/bench_gptq.py [--models digits,minilm,w8a8,digits4,lm,layer] [--algos rtn,awq,...]
[--threads N] [--calib-sentences 256] [--autoround-steps 200] [--layer-size 4096]
[--block-report] (MiniLM: each encoder block's share of the cosine loss)
[--rotation] (MiniLM weight-only rows also with Hadamard-rotated layer inputs; the w8a8 rows always have
rotated cases)
"""

from __future__ import annotations

import argparse
import os
import re
import time

import lowbit
import numpy as np
import torch
from lowbit.demo.models import SENTENCES, accuracy, embed_sentences, load_digits_data, load_minilm, train_digits_cnn

ALGOS = {"rtn": None, "mse scales": lowbit.MSEClip(), "gptq": lowbit.GPTQ(), "gptq damp 0.1": lowbit.GPTQ(damp=0.1),
         "gptq act-order": lowbit.GPTQ(act_order=True), "gptq + mse scales": lowbit.GPTQ(clip=True), "awq": lowbit.AWQ(),
         "awq + mse scales": lowbit.AWQ(clip=True), "awq + gptq + mse scales": lowbit.AWQ(clip=True, gptq=True),
         "autoround": lowbit.AutoRound()}
ROTATIONS: list = [None]  # --rotation adds "hadamard": each weight-only row again with rotated layer inputs


def _rotations() -> list[tuple[str, dict]]:
    """(row label suffix, QuantConfig keywords) per rotation setting of the run."""
    return [("" if r is None else " + rotation", {} if r is None else {"rotation": r}) for r in ROTATIONS]


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


def calibration_text(kind: str, n: int) -> list[str]:
    """``n`` calibration sentences and the next 64 (held out, "in-domain"): ``docstrings`` (technical
    prose only) or ``mix`` (lowbit.demo.text.sentence_corpus: docstrings and template everyday
    sentences, none sharing four words with the test sentences)."""
    if kind == "docstrings":
        text = docstring_sentences(n + 64)
    else:
        from lowbit.demo.text import sentence_corpus

        text = sentence_corpus()[:n + 64]
    assert not set(text) & set(SENTENCES)
    return text


def bench_minilm(corpus: str, block_report: bool = False, n_calib: int = 256) -> list[list[object]]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tok, model = load_minilm()
    model.eval()
    text = calibration_text(corpus, n_calib)
    calib = lowbit.text_batches(tok, text[:n_calib], batch_size=32, max_length=64)  # grouped by length
    ref = embed_sentences(model, tok, SENTENCES)
    held = text[n_calib:]
    ref_held = embed_sentences(model, tok, held)
    rows = []
    for fmt in ({"weight": "int4", "group_size": 64}, {"weight": "nf4"}):
        for (algo, opts), (label, rot) in ((a, r) for a in ALGOS.items() for r in _rotations()):
            t = time.perf_counter()
            q = lowbit.quantize_model(model, lowbit.QuantConfig(**fmt, algorithm=opts, **rot), calib_data=calib,
                                      progress=False)
            dt = time.perf_counter() - t
            quality = _cosines(q, tok, ref, held, ref_held)
            if block_report:
                quality += " | per block " + " ".join(f"{x:.4f}" for x in block_losses(q, model, tok, ref))
            rows.append([f"all-MiniLM-L6-v2 ({n_calib} sentences)", f"{fmt['weight']} g{fmt.get('group_size', 64)}",
                         algo + label, quality, f"{dt:.1f}"])
    return rows


def block_losses(q: torch.nn.Module, model: torch.nn.Module, tok: object, ref: torch.Tensor) -> list[float]:
    """What each encoder block's quantization costs on the test sentences: the mean (1 - cosine) that
    putting that block alone back to float removes (the other blocks stay quantized). On
    all-MiniLM-L6-v2 with AutoRound int4 g64 the last block costs about as much as the five others
    together (no later block is trained to absorb its error)."""
    def loss(m: torch.nn.Module) -> float:
        return float((1 - torch.nn.functional.cosine_similarity(embed_sentences(m, tok, SENTENCES), ref)).mean())

    base, out, layers = loss(q), [], q.encoder.layer
    for j in range(len(layers)):
        saved = layers[j]
        layers[j] = model.encoder.layer[j]  # borrowed for one evaluation, put back below
        try:
            out.append(base - loss(q))
        finally:
            layers[j] = saved
    return out


def _cosines(q: torch.nn.Module, tok: object, ref: torch.Tensor, held: list[str], ref_held: torch.Tensor) -> str:
    """Worst / mean cosine on the test sentences and on the held-out in-domain (docstring) sentences."""
    cos = torch.nn.functional.cosine_similarity(embed_sentences(q, tok, SENTENCES), ref)
    ch = torch.nn.functional.cosine_similarity(embed_sentences(q, tok, held), ref_held)
    return (f"worst {float(cos.min()):.4f} mean {float(cos.mean()):.4f} | in-domain worst {float(ch.min()):.4f} "
            f"mean {float(ch.mean()):.4f}")


def bench_w8a8(corpus: str) -> list[list[object]]:
    """MiniLM with int8 weights and static per-tensor uint8 activations: RTN vs SmoothQuant alphas."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tok, model = load_minilm()
    model.eval()
    text = calibration_text(corpus, 256)
    calib = [dict(tok(text[i:i + 32], padding=True, truncation=True, max_length=64, return_tensors="pt"))
             for i in range(0, 256, 32)]
    ref = embed_sentences(model, tok, SENTENCES)
    held = text[256:]
    ref_held = embed_sentences(model, tok, held)
    sq = lowbit.SmoothQuant(alpha=0.75, min_scale=0.75)
    ffn_out = "*.layer.?.output.dense"  # the FFN output layers (their input: GELU's output)
    cases = [("rtn", {}), *[(f"smoothquant alpha {a}", {"algorithm": lowbit.SmoothQuant(alpha=a)}) for a in (0.6, 0.75)],
             ("smoothquant alpha 0.75 min_scale 0.75", {"algorithm": sq}),
             ("smoothquant alpha 0.75 min_scale 1", {"algorithm": lowbit.SmoothQuant(alpha=0.75, min_scale=1.0)}),
             ("smoothquant alpha grid (holdout)", {"algorithm": lowbit.SmoothQuant(alpha_grid=[0.5, 0.6, 0.7, 0.75, 0.8,
                                                                                            0.9], holdout=True)}),
             ("smoothquant 0.75 min_scale 0.75, FFN-out dynamic", {"algorithm": sq, "per_layer": {
                 ffn_out: {"activation": "dynamic", "algorithm": sq}}}),
             ("smoothquant 0.75 min_scale 0.75, FFN-out float act", {"algorithm": sq, "per_layer": {
                 ffn_out: {"activation": "float", "algorithm": None}}}),
             ("rtn + rotation", {"rotation": "hadamard"}),
             ("smoothquant alpha 0.75 min_scale 1 + rotation", {"algorithm": lowbit.SmoothQuant(alpha=0.75, min_scale=1.0),
                                                                "rotation": "hadamard"})]
    rows = []
    for name, kw in cases:
        t = time.perf_counter()
        q = lowbit.quantize_model(model, lowbit.QuantConfig(weight="int8", activation="static", **kw),
                                  calib_data=calib, progress=False)
        dt = time.perf_counter() - t
        rows.append(["all-MiniLM-L6-v2", "int8, static act (minmax)", name, _cosines(q, tok, ref, held, ref_held),
                     f"{dt:.1f}"])
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
def quanto_weights(model: torch.nn.Module, bits: int) -> torch.nn.Module:
    """optimum-quanto's weight quantization of a copy (qint4: affine groups of 128, round to
    nearest; quanto has no GPTQ), frozen."""
    import copy

    from optimum.quanto import freeze, qint4, qint8, quantize

    m = copy.deepcopy(model)
    quantize(m, weights=qint4 if bits == 4 else qint8)
    freeze(m)
    return m


def bench_lm() -> list[list[object]]:
    """Perplexity of the tiny stdlib GPT (lowbit.demo.tiny_lm, trained or loaded from its cache) on
    held-out standard library files: float vs each format x algorithm, and optimum-quanto's int4."""
    from lowbit.demo.tiny_lm import TinyLMConfig, lm_calibration, perplexity, train_tiny_lm

    cfg = TinyLMConfig()
    t = time.perf_counter()
    model, data = train_tiny_lm(cfg)
    print(f"tiny LM: {sum(p.numel() for p in model.parameters())} parameters, {cfg.steps} steps, trained or loaded "
          f"in {time.perf_counter() - t:.0f} s; {len(data.train)} training bytes from {len(data.train_files)} files, "
          f"{len(data.test)} held-out bytes from {', '.join(data.test_files)}")
    calib = lm_calibration(data, n_windows=128, context=cfg.context)
    base = perplexity(model, data.test, cfg.context)
    rows = [["tiny stdlib GPT", "float32", "", f"ppl {base:.4f}", ""]]
    algos = {"rtn": None, "gptq": lowbit.GPTQ(), "gptq act-order": lowbit.GPTQ(act_order=True),
             "gptq + mse scales": lowbit.GPTQ(clip=True), "autoround": lowbit.AutoRound()}
    for fmt in ({"weight": "int4", "group_size": 128}, {"weight": "nf4", "group_size": 64}, {"weight": "int8"}):
        for algo, opts in algos.items():
            if fmt["weight"] != "int4" and algo not in ("rtn", "gptq", "autoround"):
                continue
            t = time.perf_counter()
            q = lowbit.quantize_model(model, lowbit.QuantConfig(**fmt, activation="float", algorithm=opts),
                                      calib_data=calib, progress=False)
            dt = time.perf_counter() - t
            ppl = perplexity(q, data.test, cfg.context)
            rows.append(["tiny stdlib GPT", f"{fmt['weight']} g{fmt.get('group_size', '-')}", algo,
                         f"ppl {ppl:.4f} ({100 * (ppl / base - 1):+.2f}%)", f"{dt:.1f}"])
    try:
        t = time.perf_counter()
        q = quanto_weights(model, 4)
        dt = time.perf_counter() - t
        ppl = perplexity(q, data.test, cfg.context)
        rows.append(["tiny stdlib GPT", "quanto qint4 g128", "rtn (optimum-quanto)",
                     f"ppl {ppl:.4f} ({100 * (ppl / base - 1):+.2f}%)", f"{dt:.1f}"])
    except ImportError as e:
        rows.append(["tiny stdlib GPT", "quanto qint4", f"not installed ({e})", "", ""])
    return rows


# GPTQ implementations that do not run here beside torch 2.13 on a CPU (checked 2026-12-04 with
# `pip install --dry-run <name>` in the project's venv, nothing installed).
PEERS_NOT_RUN = {
    "torchao 0.18 prototype GPTQ (torchao.prototype.gptq.gptq_quantize)": "installed, CUDA only: it asserts "
    "W.device.type == 'cuda' (api.py)",
    "optimum-quanto 0.2.7": "installed, no GPTQ (its int4 weights, round to nearest, are measured in --models lm)",
    "GPTQModel 7.7.0": "would replace torch 2.13.0 by torch 2.14.1 and pull the CUDA 13 toolkit (nvidia-* wheels)",
    "auto-gptq 0.7.1": "--dry-run resolves beside torch 2.13 (adds accelerate, datasets, peft, ...); not installed "
    "or run in this session (archived project, superseded by GPTQModel)",
    "llm-compressor 0.14.0.1": "installs beside torch 2.13 (--dry-run: no torch change) but downgrades transformers "
    "5.25.0 to 5.17.0 and pulls datasets/accelerate/auto-round; not installed into the project venv (not run)",
}


def torch_gptq_reference(w: torch.Tensor, h: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group_size: int,
                         qmin: int, qmax: int, block_size: int = 128, damp: float = 0.01) -> torch.Tensor:
    """GPTQ as the reference repository's ``fasterquant`` runs it, in float32 torch: returns the
    dequantized weight. ``scale``/``zero`` are (n, groups) static parameters (column j uses group
    j // group_size)."""
    w = w.clone().float()
    h = h.clone().float()
    n, k = w.shape
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += damp * torch.mean(torch.diag(h)) * torch.eye(k)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q_all = torch.zeros_like(w)
    for i1 in range(0, k, block_size):
        i2 = min(i1 + block_size, k)
        w1 = w[:, i1:i2].clone()
        q1 = torch.zeros_like(w1)
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = w1[:, i]
            d = hinv1[i, i]
            s, z = scale[:, (i1 + i) // group_size], zero[:, (i1 + i) // group_size]
            q = (torch.clamp(torch.round(col / s) + z, qmin, qmax) - z) * s
            q1[:, i] = q
            e = (col - q) / d
            w1[:, i:] -= e.unsqueeze(1).matmul(hinv1[i, i:].unsqueeze(0))
            err1[:, i] = e
        q_all[:, i1:i2] = q1
        w[:, i2:] -= err1.matmul(hinv[i1:i2, i2:])
    return q_all


def layer_problem(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A weight (n, k) and a Hessian (k, k) with correlated inputs of unequal scales (rank-256 plus
    a diagonal, so it is cheap to build at k = 4096)."""
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((k, 256)).astype(np.float32)
    scale = np.linspace(0.2, 2.0, k, dtype=np.float32)
    h = (b @ b.T / 256 + np.diag(rng.uniform(0.05, 1.0, k).astype(np.float32))) * np.outer(scale, scale)
    return (rng.standard_normal((n, k)) * 0.02).astype(np.float32), h.astype(np.float64)


def bench_layer(size: int, repeats: int, schemes: list[lowbit.schemes.WeightScheme]) -> str:
    from _common import speedup_cell, table, timing_cell
    from lowbit import Timer
    from lowbit.core.gptq import gptq_quantize

    w, h = layer_problem(size, size)
    n, k = w.shape
    wt, ht = torch.from_numpy(w), torch.from_numpy(h.astype(np.float32))
    rows = []
    for scheme in schemes:
        rtn = scheme.quantize(w)
        grid = scheme.column_grid(rtn, n, k)
        sc, zp = torch.tensor(grid.scale), torch.tensor(grid.zero_point.astype(np.float32))
        # The results first (also the warm-up: the timed calls below take none).
        q_ref = torch_gptq_reference(wt, ht, sc, zp, grid.group_size, grid.qmin, grid.qmax).numpy()
        stored, stats = gptq_quantize(w, h, scheme)
        q_lb = scheme.dequantize(stored, n, k)
        fns = {"torch reference": lambda: torch_gptq_reference(wt, ht, sc, zp, grid.group_size, grid.qmin, grid.qmax),
               "lowbit": lambda: gptq_quantize(w, h, scheme, losses=False),
               "lowbit + losses": lambda: gptq_quantize(w, h, scheme)}
        times = Timer(repeats=repeats, warmup=0, min_sample_s=0.0).time_named(fns, f"GPTQ {n}x{k} {scheme.describe()}")

        def loss(q: np.ndarray) -> float:
            d = w - q
            return float(np.sum((d @ h.astype(np.float32)) * d, dtype=np.float64) / n)

        agree = float(np.mean(q_ref == q_lb))
        for name, t in times.items():
            lo = loss(q_ref) if name == "torch reference" else stats["loss_gptq"]
            rows.append([scheme.describe(), name, timing_cell(t, 1.0), speedup_cell(times["torch reference"], t),
                         f"{lo:.4g}", f"{stats['loss_rtn']:.4g}", f"{agree:.4f}"])
    return table(["weights", "implementation", "s (median ±spread)", "speedup vs torch", "loss", "loss RTN",
                  "codes = torch's"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits,minilm")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--algos", default=None, help="comma-separated ALGOS keys (default: all)")
    ap.add_argument("--layer-size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--layer-schemes", default="int4,int8", help="int4 (g128) and/or int8 (per channel)")
    ap.add_argument("--calib", default="mix", choices=("mix", "docstrings"),
                    help="MiniLM calibration text: docstrings + everyday sentences, or docstrings only")
    ap.add_argument("--calib-sentences", type=int, default=256,
                    help="MiniLM calibration sentences (AutoRound overfits 256: 4096 raise its test cosines)")
    ap.add_argument("--autoround-steps", type=int, default=200, help="AutoRound steps per block")
    ap.add_argument("--rotation", action="store_true",
                    help="MiniLM weight-only rows: each algorithm also with rotation='hadamard' (lowbit.Rotation)")
    ap.add_argument("--block-report", action="store_true",
                    help="MiniLM rows: also the mean (1 - cosine) each encoder block's quantization costs")
    args = ap.parse_args()
    if args.rotation:
        ROTATIONS.append("hadamard")
    ALGOS["autoround"] = lowbit.AutoRound(steps=args.autoround_steps)  # before --algos keeps its rows
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
        rows += bench_minilm(args.calib, args.block_report, args.calib_sentences)
    if "w8a8" in models:
        rows += bench_w8a8(args.calib)
    if "lm" in args.models.split(","):
        rows += bench_lm()
    if "layer" in args.models:
        from _common import banner

        print(banner())
        known = {"int4": lowbit.Int4Weights(group_size=128), "int8": lowbit.Int8Weights()}
        print(bench_layer(args.layer_size, args.repeats, [known[s] for s in args.layer_schemes.split(",")]))
        print("\nGPTQ peers not measured here:")
        for peer, why in PEERS_NOT_RUN.items():
            print(f"- {peer}: {why}")
    if not rows:
        return
    head = ["model", "weights", "algorithm", "quality", "quantize_model s"]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))


if __name__ == "__main__":
    main()
