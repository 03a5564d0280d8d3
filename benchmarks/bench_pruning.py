"""Pruning + distillation + quantization frontier (issue 15): size, accuracy and latency of float /
pruned / quantized / both, side by side in one run.

Digits CNN (trained here): float; 50% of the conv channels removed (lowbit.prune_channels) and
distilled from the float model; static int8 (lowbit.quantize_model) of each; 2:4 sparsity
(lowbit.prune_n_m, conv1 excluded: 9 weights per row) + distillation + int8; and the peer
Torch-Pruning (MagnitudePruner, L2, same channels) fine-tuned the same way. Batch 32, latency by
lowbit.Timer (interleaved, median ± half IQR). Checks: every pruned model's output equals the
float model with the removed channels zeroed (the reference), before fine-tuning.

MiniLM (all-MiniLM-L6-v2, offline): 50% of the FFN intermediate channels removed
(lowbit.prune_ffn, L2 importance; ``--minilm-refit``: activation importance + least-squares refit on
calibration text), distilled to
the float model's sentence embeddings (cosine + per-layer hidden-state MSE) for at most
``--minilm-train-s`` seconds of CPU on sentences from the Python standard library's docstrings,
then dynamic int8; worst and mean cosine to the float embeddings on lowbit.models.SENTENCES
(never trained on), latency at batch 8 x 128 tokens against the unpruned int8 model.

On a shared machine start it with OMP_WAIT_POLICY=PASSIVE: torch's spinning OpenMP threads otherwise
stall every small op a scheduler tick (LayerNorm, add, GELU took ~20 ms each), which hides the
linear layers' time.

Sparse (``--models sparse``): stored bytes of bitmask + values (lowbit.sparse_storage, int8 and int4)
at 50 / 70 / 90% unstructured sparsity, and lowbit's dense int8 kernel on the rebuilt codes against
torch's CSR sparse matmul: does a sparse kernel pay?

Usage: python benchmarks/bench_pruning.py [--models digits,minilm,sparse] [--threads N] [--minilm-train-s S]
[--minilm-refit] [--minilm-lr LR]
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import re
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(__file__))
import lowbit
import torch
import torch.nn.functional as F
from _common import banner, format_bytes, interleaved, speedup_cell, table, timing_cell
from lowbit.models import SENTENCES, accuracy, embed_sentences, load_digits_data, load_minilm, train_digits_cnn


def _batches(data, epochs, seed=0, bs=64):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(epochs):
        perm = torch.randperm(len(data.y_train), generator=g)
        out += [(data.x_train[perm[i : i + bs]], data.y_train[perm[i : i + bs]]) for i in range(0, len(perm), bs)]
    return out


def _nbytes(model) -> int:
    return lowbit.summary(model).bytes_after


def _check_pruned(float_model, pruned, x) -> None:
    """The pruned CNN equals the float model with the removed conv channels zeroed."""
    ref = copy.deepcopy(float_model)
    with torch.no_grad():
        for name in ("conv1", "conv2"):
            full, small = getattr(ref, name), getattr(pruned, name)
            w = full.weight.reshape(full.weight.shape[0], -1)
            kept = [i for i in range(w.shape[0]) if any(torch.equal(full.bias[i], b) for b in small.bias)]
            drop = sorted(set(range(w.shape[0])) - set(kept))
            full.weight[drop] = 0
            full.bias[drop] = 0
        torch.testing.assert_close(pruned(x), ref(x), rtol=1e-4, atol=1e-4)


def bench_digits(threads: int) -> None:
    data = load_digits_data()
    teacher = train_digits_cnn(data)
    x = data.x_test[:32]
    calib = [data.x_train[i : i + 256] for i in range(0, 1024, 256)]
    static = lowbit.QuantConfig(activation="static")
    acc = lambda m: accuracy(m, data.x_test, data.y_test)  # noqa: E731
    models = {"float": teacher}
    pruned = lowbit.prune_channels(teacher, 0.5, example_inputs=x[:2], layers=["conv1", "conv2"])
    _check_pruned(teacher, pruned, data.x_test[:64])
    acc_pruned_raw = acc(pruned)
    t0 = time.perf_counter()
    lowbit.distill(teacher, pruned, _batches(data, 10), lr=3e-3)
    t_kd = time.perf_counter() - t0
    models["pruned 50% ch + KD"] = pruned
    models["int8 static"] = lowbit.quantize_model(teacher, static, calib_data=calib, progress=False)
    models["pruned + KD + int8"] = lowbit.quantize_model(pruned, static, calib_data=calib, progress=False)
    sparse = lowbit.prune_n_m(teacher, 2, 4, exclude=["conv1"])
    lowbit.distill(teacher, sparse, _batches(data, 3), lr=1e-3)
    models["2:4 + KD + int8"] = lowbit.quantize_model(sparse, static, calib_data=calib, progress=False)
    try:  # the peer: Torch-Pruning removes the same structure; fine-tuned by the same distillation
        import torch_pruning as tp

        peer = copy.deepcopy(teacher)
        pr = tp.pruner.MagnitudePruner(peer, x[:2], importance=tp.importance.MagnitudeImportance(p=2),
                                       pruning_ratio=0.5, ignored_layers=[peer.fc1, peer.fc2])
        pr.step()
        lowbit.distill(teacher, peer, _batches(data, 10), lr=3e-3)
        models["Torch-Pruning 50% ch + KD"] = peer
        models["Torch-Pruning + KD + int8"] = lowbit.quantize_model(peer, static, calib_data=calib, progress=False)
    except ImportError:
        print("torch_pruning not installed: peer rows skipped")
    with torch.no_grad():
        fns = {k: (lambda m=m: m(x)) for k, m in models.items()}
        times = interleaved(fns, repeat=15, min_time=0.02, what="digits CNN batch 32")
    acc_f = acc(teacher)
    rows = []
    for k, m in models.items():
        a = acc(m)
        rows.append([k, format_bytes(_nbytes(m)), f"{a:.2f}", f"{a - acc_f:+.2f}", timing_cell(times[k]),
                     speedup_cell(times["float"], times[k])])
    print(f"\n## Digits CNN, batch 32, {threads} thread(s) (pruned before KD: {acc_pruned_raw:.2f}%, KD {t_kd:.1f} s)")
    print(table(["model", "size", "accuracy %", "vs float", "latency ms", "speedup vs float"], rows))
    print("\nper layer sparsity of the 2:4 + KD + int8 model, then summary of pruned + KD + int8:")
    for r in lowbit.sparsity_report(models["2:4 + KD + int8"]):
        print(f"  {r['layer']}: {r['type']} {r['shape']} sparsity {r['sparsity']:.2f}")
    print(lowbit.summary(models["pruned + KD + int8"]))


def _docstring_sentences() -> list[str]:
    """English sentences from the docstrings of standard-library modules: offline training text."""
    names = ["json", "collections", "argparse", "email", "http.client", "logging", "unittest", "pathlib",
             "subprocess", "threading", "asyncio", "decimal", "statistics", "random", "itertools", "functools",
             "datetime", "urllib.request", "csv", "sqlite3", "textwrap", "string", "os", "shutil", "tarfile",
             "zipfile", "socket", "ssl", "inspect", "dataclasses", "enum", "heapq", "calendar", "difflib", "pprint",
             "tempfile", "uuid", "hashlib", "pickle", "copy", "io", "glob", "configparser", "gettext", "locale",
             "smtplib", "imaplib", "ftplib", "sched", "queue", "weakref", "abc", "numbers", "fractions", "math",
             "contextlib", "warnings", "traceback", "codecs", "platform", "signal"]
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            mod = importlib.import_module(name)
            for o in [mod] + [getattr(mod, a) for a in dir(mod) if not a.startswith("_")]:
                d = getattr(o, "__doc__", None)
                if not isinstance(d, str):
                    continue
                for s in re.split(r"(?<=[.!?])\s+", " ".join(d.split())):
                    if 30 <= len(s) <= 200 and s[0].isupper() and sum(c.isalpha() for c in s) > 0.7 * len(s):
                        out.append(s)
    return list(dict.fromkeys(out))


def bench_minilm(train_s: float, refit: bool, lr: float) -> None:
    tok, model = load_minilm()
    sents = _docstring_sentences()
    perm = torch.randperm(len(sents), generator=torch.Generator().manual_seed(0)).tolist()
    enc = lambda idx: dict(tok([sents[i] for i in idx], padding=True, truncation=True, max_length=64,  # noqa: E731
                               return_tensors="pt"))
    calib = [enc(perm[k : k + 32]) for k in range(0, 128, 32)]
    train = [enc(perm[k : k + 16]) for k in range(128, len(perm) - 16, 16)]
    e_float = embed_sentences(model, tok, SENTENCES)

    def cos(m):
        c = (embed_sentences(m, tok, SENTENCES) * e_float).sum(1)
        return float(c.min()), float(c.mean())

    def pool(out, batch):
        h, mask = out.last_hidden_state, batch["attention_mask"].unsqueeze(-1).to(out.last_hidden_state.dtype)
        return F.normalize((h * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)

    t0 = time.perf_counter()
    if refit:
        pruned = lowbit.prune_ffn(model, 0.5, importance="activation", reconstruct=True, calib_data=calib)
    else:
        pruned = lowbit.prune_ffn(model, 0.5)
    t_prune = time.perf_counter() - t0
    cos_raw = cos(pruned)
    d = lowbit.Distiller(model, pruned, loss=lowbit.DistillationLoss(kind="cosine"), output_fn=pool,
                         features=[f"encoder.layer.{i}" for i in range(6)], feature_weight=0.1)
    opt = torch.optim.AdamW(pruned.parameters(), lr=lr)
    pruned.train()
    t0, steps, cpu0 = time.perf_counter(), 0, time.process_time()
    while time.process_time() - cpu0 < train_s:
        for b in train:
            opt.zero_grad()
            d.loss(b).backward()
            opt.step()
            steps += 1
            if time.process_time() - cpu0 >= train_s:
                break
    d.close()
    pruned.eval()
    t_kd, cpu_kd = time.perf_counter() - t0, time.process_time() - cpu0
    q_full, q_pruned = lowbit.quantize_model(model), lowbit.quantize_model(pruned)
    x = tok(SENTENCES[:8], padding="max_length", max_length=128, truncation=True, return_tensors="pt")
    with torch.no_grad():
        fns = {"float": lambda: model(**x), "pruned": lambda: pruned(**x), "int8": lambda: q_full(**x),
               "pruned + int8": lambda: q_pruned(**x)}
        times = interleaved(fns, repeat=9, min_time=0.05, budget_s=120, what="MiniLM batch 8 x 128")
    rows = []
    for k, m in (("float", model), ("pruned", pruned), ("int8", q_full), ("pruned + int8", q_pruned)):
        c = cos(m) if k != "float" else (1.0, 1.0)
        rows.append([k, format_bytes(_nbytes(m) if k.endswith("int8") else lowbit.metrics.model_nbytes(m)),
                     f"{c[0]:.4f}", f"{c[1]:.4f}", timing_cell(times[k]), speedup_cell(times["float"], times[k]),
                     speedup_cell(times["int8"], times[k])])
    how = "activation + refit" if refit else "L2"
    print(f"\n## MiniLM, 50% FFN channels removed ({how}: prune {t_prune:.1f} s; worst / mean cosine before KD "
          f"{cos_raw[0]:.4f} / {cos_raw[1]:.4f}; KD {steps} steps of 16 sentences, {cpu_kd:.0f} s CPU, "
          f"{t_kd:.0f} s wall)")
    print(table(["model", "size", "worst cos", "mean cos", "latency ms", "vs float", "vs int8"], rows))


def bench_sparse(threads: int) -> None:
    """Stored size of bitmask + values (lowbit.sparse_storage) and whether a sparse kernel would pay:
    lowbit's dense int8 kernel on the rebuilt codes against torch's CSR sparse matmul (float32) and
    the dense float32 matmul, one 1536 x 384 Linear (MiniLM's FFN output) at 256 tokens."""
    rows = []
    x = torch.randn(256, 1536)
    for amount in (0.5, 0.7, 0.9):
        torch.manual_seed(0)
        lin = torch.nn.Sequential(torch.nn.Linear(1536, 384))
        sp = lowbit.prune_magnitude(lin, amount)
        q8 = lowbit.quantize_model(sp, progress=False)
        s8 = lowbit.sparse_storage(q8, min_sparsity=0.0)
        s4 = lowbit.sparse_storage(lowbit.quantize_model(sp, lowbit.QuantConfig(weight="int4", group_size=32),
                                                         progress=False), min_sparsity=0.0)
        q4 = lowbit.quantize_model(sp, lowbit.QuantConfig(weight="int4", group_size=32), progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Sparse CSR tensor support is in beta state"
            w_csr = sp[0].weight.detach().to_sparse_csr()
        b = sp[0].bias.detach()
        ref = sp(x)
        torch.testing.assert_close(s8(x), q8(x), rtol=0, atol=0)
        torch.testing.assert_close(torch.sparse.mm(w_csr, x.t()).t() + b, ref, rtol=1e-4, atol=1e-4)
        with torch.no_grad():
            fns = {"float dense": lambda: sp(x), "float CSR (torch.sparse)": lambda: torch.sparse.mm(w_csr, x.t()).t() + b,
                   "int8 dense kernel, sparse-stored": lambda: s8(x)}
            t = interleaved(fns, repeat=9, min_time=0.02, what=f"sparse {amount}")
        for k in fns:
            rows.append([f"{amount:.0%}", k, timing_cell(t[k]), speedup_cell(t["int8 dense kernel, sparse-stored"], t[k])])
        rows.append([f"{amount:.0%}", "sizes: float / int8 / int8 sparse / int4 g32 / int4 g32 sparse",
                     " / ".join(format_bytes(lowbit.metrics.model_nbytes(m)) for m in (sp, q8, s8, q4, s4)), ""])
    print(f"\n## Sparse storage and kernels, Linear 1536 -> 384, 256 tokens, {threads} thread(s)")
    print(table(["sparsity", "variant", "latency ms", "int8 dense / this"], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits,minilm")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--minilm-train-s", type=float, default=120.0, help="CPU seconds of MiniLM distillation")
    ap.add_argument("--minilm-refit", action="store_true", help="activation importance + least-squares refit")
    ap.add_argument("--minilm-lr", type=float, default=1e-4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lowbit.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(banner())
    models = args.models.split(",")
    if "digits" in models:
        bench_digits(args.threads)
    if "sparse" in models:
        bench_sparse(args.threads)
    if "minilm" in models:
        bench_minilm(args.minilm_train_s, args.minilm_refit, args.minilm_lr)


if __name__ == "__main__":
    main()
