"""Float32 attention: lowbit.attention vs torch's scaled_dot_product_attention, side by side.

The shapes of the transformers lowbit quantizes (q, k, v as the heads of one projection, the
result in the (batch, tokens, heads, dim) layout the model reshapes, as in a forward pass):
MiniLM / BERT-base encoders with a padding mask, a GPT-2 prompt (causal) and one decode step
against a 512-token cache, a Llama-style grouped-query layer. torch's time includes the
transpose copy its result needs for that layout (as transformers' sdpa function does). Results
are checked against torch's (rtol 1e-4) before timing.

    python benchmarks/bench_attention.py [--threads 2] [--rounds 7]
"""

from __future__ import annotations

import argparse

import lowbit
import lowbit.nn  # noqa: F401 - lowbit's threads on torch's OpenMP team, as inside a model
import torch
import torch.nn.functional as F
from _common import banner, interleaved, speedup_cell, table, timing_cell

# name: batch, heads, kv heads, queries, keys, head dim, mask ("pad", "causal" or "")
SHAPES = {
    "MiniLM b8 x128": (8, 12, 12, 128, 128, 32, "pad"),
    "MiniLM b32 x128": (32, 12, 12, 128, 128, 32, "pad"),
    "BERT-base b8 x128": (8, 12, 12, 128, 128, 64, "pad"),
    "BERT-base b1 x384": (1, 12, 12, 384, 384, 64, "pad"),
    "GPT-2 prompt b1 x256": (1, 12, 12, 256, 256, 64, "causal"),
    "GPT-2 decode b4 cache 512": (4, 12, 12, 1, 512, 64, ""),
    "Llama GQA b1 x256 (32/8 heads)": (1, 32, 8, 256, 256, 128, "causal"),
}


def case(b: int, h: int, hk: int, sq: int, sk: int, d: int, kind: str, gen: torch.Generator):
    x = torch.randn(b, sq, h, d, generator=gen)
    q = x.transpose(1, 2)  # a view of the projection's output
    kv = torch.randn(b, sk, 2, hk, d, generator=gen)
    k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
    mask = None
    if kind == "pad":  # the last quarter of every other sequence is padding (boolean, as transformers)
        mask = torch.ones(b, 1, sq, sk, dtype=torch.bool)
        mask[::2, ..., sk - sk // 4:] = False
    return q, k, v, mask, kind == "causal"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated names of SHAPES")
    args = ap.parse_args()
    if args.threads:
        lowbit.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    print(banner())
    gen = torch.Generator().manual_seed(0)
    rows = []
    for name in args.shapes.split(","):
        b, h, hk, sq, sk, d, kind = SHAPES[name]
        q, k, v, mask, causal = case(b, h, hk, sq, sk, d, kind, gen)
        gqa = hk != h

        def torch_sdpa(q=q, k=k, v=v, mask=mask, causal=causal, gqa=gqa):
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=gqa)
            return y.transpose(1, 2).contiguous()

        def lowbit_attention(q=q, k=k, v=v, mask=mask, causal=causal, b=b, sq=sq, h=h, d=d):
            out = torch.empty(b, sq, h, d)
            lowbit.attention(q, k, v, mask, causal=causal, out=out.transpose(1, 2))
            return out

        torch.testing.assert_close(lowbit_attention(), torch_sdpa(), rtol=1e-4, atol=1e-5)
        with torch.no_grad():
            t = interleaved({"torch": torch_sdpa, "lowbit": lowbit_attention}, repeat=args.rounds,
                            what="bench_attention")
        rows.append([name, timing_cell(t["torch"]), timing_cell(t["lowbit"]), speedup_cell(t["torch"], t["lowbit"])])
    print(table(["shape", "torch sdpa ms", "lowbit ms", "lowbit vs torch (range)"], rows))


if __name__ == "__main__":
    main()
