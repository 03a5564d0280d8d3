"""int8 matmul / quantized linear throughput against NumPy, PyTorch float32 and int8, one run.

Usage: python benchmarks/bench_matmul.py [--quick] [--threads 1,2] [--out results.md] [--plot out.png]

For each shape (M, K, N) (BERT/MiniLM and LLM linear layers): GOP/s of lowbit.matmul_int8 (int8
in, int32 out; `mm` with a PackedWeight, `mm+pack` with a plain b packed inside the call) and of
lowbit.linear (dynamic per-row activations, float32 in/out), % of the measured int8 peak, and
speedups against NumPy float32 matmul, torch float32 nn.Linear, torch quantize_dynamic int8
Linear on each quantized engine (x86, fbgemm, onednn) and torch._int_mm. Each thread count runs
in a child process with OPENBLAS/OMP_NUM_THREADS set, so NumPy and torch use the same count.
Every lowbit result is checked against lowbit.reference first (first rows for large M).
On a shared machine, compare ratios from one run only; "% peak" uses the peak measured at start.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import median_time, table  # noqa: E402

KN = [(384, 384), (384, 1536), (1536, 384), (768, 768), (768, 3072), (3072, 768), (4096, 4096), (4096, 11008)]
MS = [1, 8, 32, 128, 512, 2048]
QUICK = [(1, 4096, 4096), (8, 768, 768), (32, 384, 1536), (128, 768, 768), (128, 768, 3072), (512, 768, 3072), (512, 4096, 4096)]


def measure_peak() -> float | None:
    """Per-core int8 vpdpbusd zmm peak in GOP/s, measured with benchmarks/peak_int8.cpp."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        return None
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peak_int8.cpp")
    with tempfile.TemporaryDirectory() as d:
        exe = os.path.join(d, "peak")
        r = subprocess.run([cxx, "-O2", "-mavx512f", "-mavx512bw", "-mavx512vnni", src, "-o", exe], capture_output=True)
        if r.returncode != 0:
            return None
        out = subprocess.run([exe], capture_output=True, text=True)
        return float(out.stdout.split()[0]) if out.returncode == 0 else None


def child(threads: int, shapes, min_time: float, rep: int) -> list[dict]:
    import lowbit
    from lowbit import reference as ref

    lowbit.set_num_threads(threads)
    try:
        import torch

        torch.set_num_threads(threads)
        engines = [e for e in ("x86", "fbgemm", "onednn") if e in torch.backends.quantized.supported_engines]
    except ImportError:  # pragma: no cover
        torch, engines = None, []
    rng = np.random.default_rng(0)
    rows = []
    for m, k, n in shapes:
        ops = 2.0 * m * k * n
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = (rng.standard_normal((n, k)) * 0.05).astype(np.float32)
        bias = rng.standard_normal(n).astype(np.float32)
        pw = lowbit.pack_weight(w)
        a = rng.integers(-128, 128, (m, k)).astype(np.int8)
        b = np.ascontiguousarray(pw.int_repr().T)
        # Correctness first: exact int32 and bit-identical linear (first rows for large M).
        r = min(m, 64)
        got = lowbit.matmul_int8(a[:r], b)
        assert np.array_equal(got.astype(np.int64), ref.matmul_int8(a[:r], b)), (m, k, n)
        y = lowbit.linear(x, pw, bias)
        assert np.array_equal(y[:r], ref.linear(x[:r], pw.int_repr(), pw.scale, bias)), (m, k, n)
        res = {"m": m, "k": k, "n": n, "threads": threads, "isa": lowbit.get_arch()}
        res["mm"] = ops / median_time(lambda: lowbit.matmul_int8(a, pw), repeat=rep, min_time=min_time) / 1e9
        res["mm+pack"] = ops / median_time(lambda: lowbit.matmul_int8(a, b), repeat=rep, min_time=min_time) / 1e9
        # The kernel alone: linear with static uint8 activations has no dynamic-range pass.
        res["linear"] = ops / median_time(lambda: lowbit.linear(x, pw, bias), repeat=rep, min_time=min_time) / 1e9
        res["linear_static"] = ops / median_time(
            lambda: lowbit.linear(x, pw, bias, activation="static", activation_scale=0.03, activation_zero_point=128), repeat=rep, min_time=min_time
        ) / 1e9
        res["numpy_f32"] = ops / median_time(lambda: x @ w.T + bias, repeat=rep, min_time=min_time) / 1e9
        res["weight_gbs"] = n * k / (ops / res["linear"] / 1e9) / 1e9
        if torch is not None:
            xt = torch.from_numpy(x)
            lin = torch.nn.Linear(k, n)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w))
                lin.bias.copy_(torch.from_numpy(bias))
                res["torch_f32"] = ops / median_time(lambda: lin(xt), repeat=rep, min_time=min_time) / 1e9
                for eng in engines:
                    torch.backends.quantized.engine = eng
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        from torch.ao.quantization import quantize_dynamic

                        qlin = quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
                        res[f"torch_{eng}"] = ops / median_time(lambda: qlin(xt), repeat=rep, min_time=min_time) / 1e9
                at, bt = torch.from_numpy(a), torch.from_numpy(b)
                try:
                    assert torch.equal(torch._int_mm(at[:r], bt), torch.from_numpy(got))
                    res["torch_int_mm"] = ops / median_time(lambda: torch._int_mm(at, bt), repeat=rep, min_time=min_time) / 1e9
                except (RuntimeError, AssertionError):
                    pass
        rows.append(res)
        print(json.dumps(res), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"{len(QUICK)} representative shapes only")
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}", help="thread counts, comma separated")
    ap.add_argument("--min-time", type=float, default=0.1, help="seconds per timing round")
    ap.add_argument("--repeat", type=int, default=5, help="timing repeats (the median is kept)")
    ap.add_argument("--out", default=None, help="also write the table to this Markdown file")
    ap.add_argument("--plot", default="benchmarks/results/bench_matmul.png", help="plot path (needs matplotlib)")
    ap.add_argument("--_child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_shapes", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    shapes = QUICK if args.quick else [(m, k, n) for (k, n) in KN for m in MS]
    if args._child is not None:
        child(args._child, json.loads(args._shapes), args.min_time, args.repeat)
        return

    import lowbit

    peak = measure_peak()
    info = lowbit.cpu_info()
    print(f"# lowbit {info['version']} | ISAs {', '.join(info['available'])} | int8 peak/core "
          f"{'%.0f GOP/s (measured)' % peak if peak else 'unknown'}")
    results = []
    for t in [int(s) for s in args.threads.split(",")]:
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(t), OMP_NUM_THREADS=str(t), MKL_NUM_THREADS=str(t))
        cmd = [sys.executable, __file__, "--_child", str(t), "--_shapes", json.dumps(shapes), "--min-time", str(args.min_time), "--repeat", str(args.repeat)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"child with {t} threads failed:\n{proc.stderr}")
        results += [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]

    headers = ["M", "K", "N", "thr", "mm GOP/s", "mm+pack GOP/s", "linear GOP/s", "static GOP/s", "% peak", "GB/s w",
               "x numpy f32", "x torch f32", "x best torch int8", "best torch int8", "x _int_mm"]
    rows = []
    for r in results:
        tq = {e: r[e] for e in ("torch_x86", "torch_fbgemm", "torch_onednn") if e in r}
        best_q = max(tq, key=tq.get) if tq else None
        pk = 100 * r["linear"] / (peak * r["threads"]) if peak else float("nan")
        rows.append([
            r["m"], r["k"], r["n"], r["threads"], r["mm"], r["mm+pack"], r["linear"], r["linear_static"], pk, r["weight_gbs"],
            r["linear"] / r["numpy_f32"], r["linear"] / r["torch_f32"] if "torch_f32" in r else float("nan"),
            r["linear"] / tq[best_q] if best_q else float("nan"), best_q[6:] if best_q else "-",
            r["mm"] / r["torch_int_mm"] if "torch_int_mm" in r else float("nan"),
        ])
    text = table(headers, rows)
    print(text)
    print("linear = lowbit.linear dynamic per-row (float32 in/out, bias); static = static uint8 activations; "
          "x columns = linear GOP/s over the peer's; x _int_mm = matmul_int8 with a PackedWeight (mm) over torch._int_mm; "
          "mm+pack = matmul_int8 with a plain (K, N) int8 b, packed inside every call.")
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot)")
        return
    os.makedirs(os.path.dirname(args.plot) or ".", exist_ok=True)
    fig, ax = plt.subplots(figsize=(12, 5))
    labels = [f"{r['m']}x{r['k']}x{r['n']}/{r['threads']}t" for r in results]
    xs = np.arange(len(results))
    for j, key in enumerate(["linear", "numpy_f32", "torch_f32", "torch_x86", "torch_fbgemm", "torch_onednn"]):
        ax.bar(xs + j * 0.13, [r.get(key, 0) for r in results], 0.13, label=key)
    ax.set_xticks(xs + 0.3, labels, rotation=90, fontsize=6)
    ax.set_ylabel("GOP/s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
