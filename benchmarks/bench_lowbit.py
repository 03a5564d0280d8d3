"""4-bit weights (int4 group-wise, NF4) in lowbit.linear against float32 peers, one run; plus the
format conversion kernels (NF4 encode/decode, fp16/bf16) against NumPy/PyTorch.

Usage: python benchmarks/bench_lowbit.py [--quick] [--threads N] [--out results.md]

Linear rows: M in {1, 8, 32} x (K, N) in {(4096, 4096), (4096, 11008), (11008, 4096)} (LLaMA-7B
projections). Peers, same process and thread count: NumPy float32 ``x @ w.T`` and torch float32
``F.linear``; torchao / bitsandbytes 4-bit CPU paths are listed when importable (not installed
here). Every lowbit result is checked against ``lowbit.reference.linear_4bit`` (float64) within
the documented bound on 64 output columns before it is timed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import lowbit  # noqa: E402
from _common import banner, best_time, table  # noqa: E402
from lowbit import reference as ref  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    torch = None

SHAPES = [(4096, 4096), (4096, 11008), (11008, 4096)]
MS = [1, 8, 32]


def check(x, pw, y):
    cols = slice(0, min(64, pw.shape[0]))
    want = ref.linear_4bit(x, pw.int_repr()[cols], pw.scale[cols], pw.dtype, pw.group_size)
    mag = np.abs(x.astype(np.float64)) @ np.abs(pw.dequantize()[cols].astype(np.float64)).T
    bound = (pw.shape[1] / pw.group_size + 16) * 2.0**-23 * mag + 2.0**-24 * np.abs(want)
    if not np.all(np.abs(y[:, cols] - want) <= bound):
        raise AssertionError(f"lowbit {pw.dtype} linear disagrees with the reference")


def bench_linear(rng, shapes, ms, repeat):
    rows = []
    for k, n in shapes:
        w = (rng.standard_normal((n, k)) * 0.02).astype(np.float32)
        packed = {d: lowbit.pack_weight(w, dtype=d, group_size=64) for d in ("int4", "nf4")}
        wt = torch.from_numpy(w) if torch is not None else None
        for m in ms:
            x = rng.standard_normal((m, k)).astype(np.float32)
            t_np = best_time(lambda: x @ w.T, repeat=repeat)
            t_torch = float("nan")
            if torch is not None:
                xt = torch.from_numpy(x)
                with torch.inference_mode():
                    t_torch = best_time(lambda: F.linear(xt, wt), repeat=repeat)
            res = {}
            for d, pw in packed.items():
                check(x, pw, lowbit.linear(x, pw))
                res[d] = best_time(lambda: lowbit.linear(x, pw), repeat=repeat)
            gbs = packed["nf4"].nbytes / res["nf4"] / 1e9
            rows.append([f"{k}x{n}", m, t_np * 1e3, t_torch * 1e3, res["int4"] * 1e3, res["nf4"] * 1e3,
                         t_np / res["int4"], t_np / res["nf4"], t_torch / res["int4"], t_torch / res["nf4"], gbs])
    head = ["K x N", "M", "numpy f32 ms", "torch f32 ms", "int4 ms", "nf4 ms", "int4 vs np", "nf4 vs np",
            "int4 vs torch", "nf4 vs torch", "nf4 weight GB/s"]
    return table(head, rows)


def bench_formats(rng, n, repeat):
    x = rng.standard_normal(n).astype(np.float32)
    rows = []
    q = lowbit.quantize(x, dtype="nf4")
    rows.append(["nf4 encode (block 64)", best_time(lambda: lowbit.quantize(x, dtype="nf4"), repeat=repeat),
                 best_time(lambda: ref.nf4_quantize(x[: n // 16], 64), repeat=1) * 16, float("nan")])
    rows.append(["nf4 decode", best_time(q.dequantize, repeat=repeat),
                 best_time(lambda: ref.nf4_dequantize(q.int_repr()[: n // 16], q.scale[: n // 1024], 64), repeat=1) * 16,
                 float("nan")])
    t_bf = float("nan")
    t_f16 = float("nan")
    if torch is not None:
        xt = torch.from_numpy(x)
        t_bf = best_time(lambda: xt.to(torch.bfloat16), repeat=repeat)
        t_f16 = best_time(lambda: xt.to(torch.float16), repeat=repeat)
    rows.append(["f32 -> fp16", best_time(lambda: lowbit.quantize(x, dtype="fp16"), repeat=repeat),
                 best_time(lambda: x.astype(np.float16), repeat=repeat), t_f16])
    rows.append(["f32 -> bf16", best_time(lambda: lowbit.quantize(x, dtype="bf16"), repeat=repeat),
                 best_time(lambda: ref.f32_to_bf16_bits(x), repeat=1), t_bf])
    out = [[r[0], n / r[1] / 1e9, n / r[2] / 1e9, n / r[3] / 1e9, r[2] / r[1], r[3] / r[1]] for r in rows]
    return table(["op", "lowbit Gelem/s", "numpy Gelem/s", "torch Gelem/s", "vs numpy", "vs torch"], out)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one shape, M = 1 and 8, fewer repeats")
    p.add_argument("--threads", type=int, default=None, help="threads for lowbit and torch (default: all)")
    p.add_argument("--out", default=None, help="also write the tables to this Markdown file")
    a = p.parse_args()
    if a.threads:
        lowbit.set_num_threads(a.threads)
        if torch is not None:
            torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    peers = [m for m in ("torchao", "bitsandbytes") if importlib.util.find_spec(m) is not None]
    lines = [banner(), f"4-bit peers importable: {', '.join(peers) or 'none (torchao, bitsandbytes not installed)'}", ""]
    shapes, ms, repeat = (SHAPES[:1], MS[:2], 3) if a.quick else (SHAPES, MS, 5)
    lines += ["## linear: float32 x 4-bit weights (group 64), ms per call (best of runs)", "",
              bench_linear(rng, shapes, ms, repeat), ""]
    lines += ["## format conversions, 16M elements", "", bench_formats(rng, 1 << 24, repeat), ""]
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
