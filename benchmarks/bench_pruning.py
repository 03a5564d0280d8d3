"""Pruning + distillation + quantization frontier (issue 15): size, accuracy and latency of float /
pruned / quantized / both, side by side in one run.

Digits CNN (trained here): float; 50% of the conv channels removed (lowbit.prune_channels) and
distilled from the float model; static int8 (lowbit.quantize_model) of each; 2:4 sparsity
(lowbit.prune_n_m, conv1 excluded: 9 weights per row) + distillation + int8; and the peer
Torch-Pruning (MagnitudePruner, L2, same channels) fine-tuned the same way. Batch 32, latency by
lowbit.Timer (interleaved, median ± half IQR). Checks: every pruned model's output equals the
float model with the removed channels zeroed (the reference), before fine-tuning.

MiniLM (all-MiniLM-L6-v2, offline): 50% of the FFN intermediate channels removed (lowbit.prune_ffn),
one row per step: L2 norms (no data), activation importance, + least-squares refit of output.dense
to the unpruned FFN, then block-wise reconstruction (``reconstruct="block"``: OBS channel removal and
output.dense solved for the float block's output, then Adam on each block's FFN against the float
block), + one share per block (more removed early, less late, 50% overall), + random sequences of the
tokenizer's whole words in the calibration data (lowbit.demo.text.word_sequences), all on
``--minilm-calib`` calibration sentences; optionally + end-to-end distillation to the float model's
sentence embeddings (cosine + per-layer hidden-state MSE) for ``--minilm-train-s`` wall seconds on
other sentences (off by default: after block reconstruction it lowered the cosines), + dynamic
int8. Wall and CPU seconds of each data-driven step are printed (the budget of issue 15:
reconstruction + distillation within 2 minutes at 2 threads). Text (lowbit.demo.text, offline): the
standard library's docstrings plus everyday sentences from a template grammar (``--minilm-corpus
mix``) or the docstrings alone. Accuracy: worst and mean cosine to the float embeddings on
lowbit.models.SENTENCES (never calibrated or trained on); latency at batch 8 x 128 and 8 x 32 tokens
against the unpruned int8 model.

On a shared machine start it with OMP_WAIT_POLICY=PASSIVE: torch's spinning OpenMP threads otherwise
stall every small op a scheduler tick (LayerNorm, add, GELU took ~20 ms each), which hides the
linear layers' time.

Sparse (``--models sparse``): stored bytes of bitmask + values (lowbit.sparse_storage, int8 and int4)
at 50 / 70 / 90% unstructured sparsity, and lowbit's dense int8 kernel on the rebuilt codes against
torch's CSR sparse matmul: does a sparse kernel pay?

Usage: python benchmarks/bench_pruning.py [--models digits,minilm,sparse] [--threads N] [--minilm-train-s S]
[--minilm-corpus mix|docstrings] [--minilm-calib N] [--minilm-lr LR] [--minilm-block-steps N]
[--minilm-keep W1,...,W6] [--minilm-words N]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(__file__))
import lowbit
import torch
import torch.nn.functional as F
from _common import banner, format_bytes, interleaved, speedup_cell, table, timing_cell
from lowbit.demo.text import docstring_sentences, sentence_corpus, word_sequences
from lowbit.models import (
    SENTENCES,
    accuracy,
    embed_sentences,
    load_digits_data,
    load_minilm,
    shuffled_batches,
    train_digits_cnn,
)


def _batches(data, epochs):
    return list(shuffled_batches(data.x_train, data.y_train, epochs))


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
    models["2:4 + KD + int8"] = lowbit.sparse_storage(lowbit.quantize_model(sparse, static, calib_data=calib,
                                                                           progress=False))  # bitmask + values
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
        print(f"  {r['layer']}: {r['type']} {r['shape']} sparsity {r['sparsity']:.2f}, stored {r['stored']}")
    print(lowbit.summary(models["pruned + KD + int8"]))


def bench_minilm(train_s: float, corpus: str, lr: float, n_calib: int, block_steps: int, keeps: list[int],
                 n_words: int) -> None:
    tok, model = load_minilm()
    sents = sentence_corpus() if corpus == "mix" else docstring_sentences()
    perm = torch.randperm(len(sents), generator=torch.Generator().manual_seed(0)).tolist()
    enc_text = lambda text: dict(tok(text, padding=True, truncation=True, max_length=64,  # noqa: E731
                                     return_tensors="pt"))
    enc = lambda idx: enc_text([sents[i] for i in idx])  # noqa: E731
    calib = [enc(perm[k : k + 32]) for k in range(0, n_calib, 32)]
    train = [enc(perm[k : k + 16]) for k in range(n_calib, len(perm) - 16, 16)]  # never the calibration ones
    with torch.no_grad():
        e_float = embed_sentences(model, tok, SENTENCES)

    def cos(m):
        with torch.no_grad():
            c = (embed_sentences(m, tok, SENTENCES) * e_float).sum(1)
        return float(c.min()), float(c.mean())

    def pool(out, batch):
        h, mask = out.last_hidden_state, batch["attention_mask"].unsqueeze(-1).to(out.last_hidden_state.dtype)
        return F.normalize((h * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)

    def timed(fn):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        return out, time.perf_counter() - t0, time.process_time() - c0

    steps_rows = [("L2 norms, no data", cos(lowbit.prune_ffn(model, 0.5)), "")]
    act, w, c = timed(lambda: lowbit.prune_ffn(model, 0.5, importance="activation", calib_data=calib))
    steps_rows.append(("activation importance", cos(act), f"{w:.0f} / {c:.0f}"))
    refit, w, c = timed(lambda: lowbit.prune_ffn(model, 0.5, importance="activation", reconstruct=True,
                                                 calib_data=calib))
    steps_rows.append(("activation + least-squares refit of output.dense (to the unpruned FFN)", cos(refit),
                       f"{w:.0f} / {c:.0f}"))
    closed, w, c = timed(lambda: lowbit.prune_ffn(model, 0.5, importance="obs", reconstruct="block", block_steps=0,
                                                  calib_data=calib))
    steps_rows.append(("OBS removal + least-squares output.dense to the float block (reconstruct='block', "
                       "block_steps=0)", cos(closed), f"{w:.0f} / {c:.0f}"))
    uniform, w, c = timed(lambda: lowbit.prune_ffn(model, 0.5, importance="obs", reconstruct="block",
                                                   block_steps=block_steps, calib_data=calib))
    steps_rows.append((f"+ block-wise Adam on the FFN, {block_steps} steps per block", cos(uniform),
                       f"{w:.0f} / {c:.0f}"))
    width = model.config.intermediate_size
    if len(keeps) != len(uniform.encoder.layer) or abs(sum(keeps) / len(keeps) - width / 2) > 0.5:
        raise SystemExit(f"--minilm-keep: expected {len(uniform.encoder.layer)} widths averaging {width // 2}")
    shares = [(width - k + 0.5) / width for k in keeps]  # floor(width * share) = width - k: k channels kept
    ramped, w, c = timed(lambda: lowbit.prune_ffn(model, shares, importance="obs", reconstruct="block",
                                                  block_steps=block_steps, calib_data=calib))
    steps_rows.append(("+ one share per block, kept widths " + ", ".join(map(str, keeps)), cos(ramped),
                       f"{w:.0f} / {c:.0f}"))
    words = [enc_text(seqs[k : k + 32]) for seqs in [word_sequences(tok.get_vocab(), n_words)]
             for k in range(0, n_words, 32)]
    pruned, w_rec, c_rec = timed(lambda: lowbit.prune_ffn(model, shares, importance="obs", reconstruct="block",
                                                          block_steps=block_steps, calib_data=calib + words))
    steps_rows.append((f"+ {n_words} random vocabulary-word sequences in the calibration data", cos(pruned),
                       f"{w_rec:.0f} / {c_rec:.0f}"))
    t_kd = cpu_kd = 0.0
    if train_s > 0:
        d = lowbit.Distiller(model, pruned, loss=lowbit.DistillationLoss(kind="cosine"), output_fn=pool,
                             features=[f"encoder.layer.{i}" for i in range(6)], feature_weight=0.1)
        opt = torch.optim.AdamW(pruned.parameters(), lr=lr)
        pruned.train()
        t0, steps, cpu0 = time.perf_counter(), 0, time.process_time()
        while time.perf_counter() - t0 < train_s:
            for b in train:
                opt.zero_grad()
                d.loss(b).backward()
                opt.step()
                steps += 1
                if time.perf_counter() - t0 >= train_s:
                    break
        d.close()
        pruned.eval()
        t_kd, cpu_kd = time.perf_counter() - t0, time.process_time() - cpu0
        steps_rows.append((f"+ end-to-end distillation ({steps} steps of 16 sentences, lr {lr:g})", cos(pruned),
                           f"{t_kd:.0f} / {cpu_kd:.0f}"))
    q_full, q_pruned = lowbit.quantize_model(model, progress=False), lowbit.quantize_model(pruned, progress=False)
    steps_rows.append(("+ int8 dynamic", cos(q_pruned), ""))
    print(f"\n## MiniLM, 50% FFN channels removed: what each step gives (cosine to the float embeddings of the "
          f"{len(SENTENCES)} held-out lowbit.models.SENTENCES; {n_calib} calibration sentences and the training "
          f"sentences from the '{corpus}' corpus, disjoint; {torch.get_num_threads()} torch thread(s))")
    print(table(["step", "worst cos", "mean cos", "wall / CPU s"], [[k, f"{c[0]:.4f}", f"{c[1]:.4f}", t]
                                                                    for k, c, t in steps_rows]))
    print(f"training budget used: block reconstruction {w_rec:.0f} s wall ({c_rec:.0f} s CPU) + distillation "
          f"{t_kd:.0f} s wall ({cpu_kd:.0f} s CPU) = {w_rec + t_kd:.0f} s wall")
    print("block output error after reconstruction (MSE / variance of the float block output, calibration tokens): "
          + ", ".join(f"{r['block error']:.4f}" for r in pruned._lowbit_prune_report.rows))
    rows = []
    for seq in (128, 32):
        x = tok(SENTENCES[:8], padding="max_length", max_length=seq, truncation=True, return_tensors="pt")
        with torch.no_grad():
            fns = {"float": lambda x=x: model(**x), "pruned": lambda x=x: pruned(**x), "int8": lambda x=x: q_full(**x),
                   "pruned + int8": lambda x=x: q_pruned(**x)}
            times = interleaved(fns, repeat=9, min_time=0.05, budget_s=120, what=f"MiniLM batch 8 x {seq}")
        for k, m in (("float", model), ("pruned", pruned), ("int8", q_full), ("pruned + int8", q_pruned)):
            c = cos(m) if k != "float" else (1.0, 1.0)
            rows.append([f"8 x {seq}", k, format_bytes(_nbytes(m) if k.endswith("int8") else lowbit.metrics.model_nbytes(m)),
                         f"{c[0]:.4f}", f"{c[1]:.4f}", timing_cell(times[k]), speedup_cell(times["float"], times[k]),
                         speedup_cell(times["int8"], times[k])])
    print("\n## MiniLM frontier (latency by lowbit.Timer, interleaved; median ± half IQR; a shared machine)")
    print(table(["batch", "model", "size", "worst cos", "mean cos", "latency ms", "vs float", "vs int8"], rows))


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
    ap.add_argument("--minilm-train-s", type=float, default=0.0,
                    help="wall seconds of end-to-end MiniLM distillation after the block reconstruction")
    ap.add_argument("--minilm-corpus", default="mix", choices=("mix", "docstrings"),
                    help="calibration / training text: stdlib docstrings + everyday template sentences, or docstrings")
    ap.add_argument("--minilm-calib", type=int, default=2048, help="calibration sentences for pruning")
    ap.add_argument("--minilm-block-steps", type=int, default=300, help="Adam steps per block (reconstruct='block')")
    ap.add_argument("--minilm-keep", default="640,704,768,768,832,896",
                    help="FFN widths kept per block (average 768 = 50%%; multiples of 64 for the int8 kernels)")
    ap.add_argument("--minilm-words", type=int, default=1024,
                    help="random vocabulary-word sequences added to the calibration data (last row)")
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
        bench_minilm(args.minilm_train_s, args.minilm_corpus, args.minilm_lr, args.minilm_calib,
                     args.minilm_block_steps, [int(k) for k in args.minilm_keep.split(',')], args.minilm_words)


if __name__ == "__main__":
    main()
