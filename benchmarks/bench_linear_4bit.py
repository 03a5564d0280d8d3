"""4-bit weights (int4 group-wise, NF4) in lowbit.linear against float32 and the 4-bit / 8-bit CPU
peers (torchao, bitsandbytes), one run; plus the format conversion kernels (NF4 encode/decode,
fp16/bf16) against NumPy/PyTorch.

Usage: python benchmarks/bench_linear_4bit.py [--quick] [--threads N] [--no-peers] [--out results.md]

Linear rows: M in {1, 8, 32} x (K, N) in {(4096, 4096), (4096, 11008), (11008, 4096)} (LLaMA-7B
projections); ``--quick``: (4096, 4096), M in {1, 8}. lowbit rows: ``lowbit.linear(x, pw)`` for
int4 and NF4 weights, group 64, with their default int8 activations (per row and weight group),
plus ``activation="float"`` on both (if that call raises or misses its check, its row says FAILED and
the reason is listed, and the run goes on). Peers, same process, same thread count
(``torch.set_num_threads``), under ``torch.inference_mode``, warmed up first: NumPy float32
``x @ w.T``, torch float32 ``F.linear`` and every torchao / bitsandbytes CPU path in
``benchmarks/_peers.py`` (group/block size 64 where the format has one). Timings are medians of
repeats (lowbit.Timer, which warns when they are noisy); on a shared machine compare ratios from one run only, and know that with every core
asked for (the default) the OpenMP-threaded peers (torch, torchao, bitsandbytes, OpenBLAS) lose
much more than lowbit to a competing process: one preempted thread stalls their whole call. Use
``--threads 1`` (or an idle machine) for a fair comparison under load.

Checks before timing: every lowbit result against its spec (int8 activations: bit-identical to
``lowbit.reference.linear_4bit_int8``; float32 activations: within the documented bound of the
float64 product ``lowbit.reference.linear_4bit``); every peer against the float64 product of its own dequantized weight with
an error bound for the arithmetic it does (float32, bfloat16, 8-bit activations: see
``_peers.check``), on 64 output columns. A peer that disagrees is reported as wrong and not
timed; a peer that does not run on this CPU is listed with the one-line reason.

The peers are not dependencies of lowbit or of its CI. To measure them, install beside torch:

    pip install torch==2.13.0 torchao==0.18.0 bitsandbytes==0.50.2

(bitsandbytes logs that its optional ``kernels`` package is missing: it then uses its own
AVX512-BF16 gemv kernel; do not install ``kernels``, it downloads code at run time.)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _peers  # noqa: E402
import lowbit  # noqa: E402
from _common import banner, median_time, table  # noqa: E402
from lowbit import reference as ref  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

SHAPES = [(4096, 4096), (4096, 11008), (11008, 4096)]
MS = [1, 8, 32]
# (row, weight dtype, extra lowbit.linear arguments); the first two are required to run and check.
# "lowbit int4" and "lowbit nf4" are the defaults of lowbit.linear(x, pw): int8 activations per
# row and weight group; the "f32x" rows force float32 activations (exact levels).
LOWBIT = [("lowbit int4", "int4", {"act": "dynamic"}), ("lowbit nf4", "nf4", {"act": "dynamic"}),
          ("lowbit int4 f32x", "int4", {"act": "float"}), ("lowbit nf4 f32x", "nf4", {"act": "float"})]
SLOW = 0.1  # seconds: a peer call slower than this is timed as the median of 3 single calls


def check(x, pw, y, act8=False):
    """lowbit against its spec on the first 64 output columns: float activations within the
    documented bound of the float64 product (lowbit.core.linear_4bit); int8 activations bit-identical to
    ``lowbit.reference.linear_4bit_int8`` (the NumPy spec of that path)."""
    cols = slice(0, min(64, pw.shape[0]))
    g = pw.group_size
    if act8:
        want = ref.linear_4bit_int8(x, pw.int_repr()[cols], pw.scale[cols], g, dtype=pw.dtype)
        ok = np.array_equal(np.asarray(y)[:, cols], want)
    else:
        want = ref.linear_4bit(x, pw.int_repr()[cols], pw.scale[cols], pw.dtype, g)
        mag = np.abs(x.astype(np.float64)) @ np.abs(pw.dequantize()[cols].astype(np.float64)).T
        bound = (g + -(-pw.shape[1] // g) + 2) * 2.0**-24 * mag + 2.0**-24 * np.abs(want)
        ok = np.all(np.abs(np.asarray(y)[:, cols] - want) <= bound)
    if not ok:
        variant = " activation=int8" if act8 else ""
        raise AssertionError(f"lowbit {pw.dtype}{variant} linear disagrees with the reference")


def timed(fn, repeat):
    """Median seconds per call of ``fn`` (lowbit.Timer): of 3 single calls when one call is slow."""
    t = time.perf_counter()
    fn()
    if time.perf_counter() - t > SLOW:
        return median_time(fn, repeat=3, min_time=0.0)
    return median_time(fn, repeat=repeat)


def reason(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}"[:160]


def run_lowbit(w, xs, repeat, notes):
    rows = []
    packed = {d: lowbit.pack_weight(w, dtype=d, group_size=64) for d in ("int4", "nf4")}
    for name, d, kw in LOWBIT:
        pw = packed[d]
        act8 = kw["act"] == "dynamic"
        row = {"name": name, "compute": f"int8 x (per row, group), {d} w" if act8 else f"f32 x, {d} w",
               "check": "ok (ref)", "ms": {}, "nbytes": pw.nbytes}
        for m, x in xs.items():
            def fn(x=x, pw=pw, kw=kw):
                return lowbit.linear(x, pw, **kw)

            if not name.endswith("f32x"):
                check(x, pw, fn(), act8=act8)
                row["ms"][m] = timed(fn, repeat) * 1e3
                continue
            try:  # the forced-float variant is optional: report, do not stop
                check(x, pw, fn())
                row["ms"][m] = timed(fn, repeat) * 1e3
            except Exception as e:  # noqa: BLE001
                row["check"] = "FAILED"
                notes.append(f"{name} (M={m}): {reason(e)}")
                break
        rows.append(row)
    return rows


def run_peer(peer, wt, xs, repeat, notes):
    try:
        b = peer.build(wt)
    except Exception as e:  # noqa: BLE001
        notes.append(f"{peer.name} ({wt.shape[1]}x{wt.shape[0]}): build failed: {reason(e)}")
        return None
    row = {"name": peer.name, "compute": b.compute, "check": "", "ms": {}}
    worst = 0.0
    with torch.inference_mode() if torch is not None else contextlib.nullcontext():
        for m, x in xs.items():
            try:
                fn = b.make(x)
                r = _peers.check(x, fn(), b.w_rows, b.tol, b.x_model)
            except Exception as e:  # noqa: BLE001
                row["check"] = f"ERROR at M={m}"
                notes.append(f"{peer.name} (M={m}): {reason(e)}")
                break
            worst = max(worst, r)
            if r > 1:
                row["check"] = f"WRONG at M={m} ({r:.3g}x bound)"
                notes.append(f"{peer.name} (M={m}): wrong answers, error {r:.3g}x its bound ({b.tol}); not timed")
                break
            row["ms"][m] = timed(fn, repeat) * 1e3
    if not row["check"]:
        row["check"] = f"ok ({worst:.2g})"
    del b
    gc.collect()
    return row


def fmt_ratio(vals):
    return " / ".join("-" if v is None or not np.isfinite(v) else f"{v:.3g}" for v in vals)


def bench_linear(rng, shapes, ms, repeat, peers):
    out, summary, notes = [], [], []
    for k, n in shapes:
        w = (rng.standard_normal((n, k)) * 0.02).astype(np.float32)
        xs = {m: rng.standard_normal((m, k)).astype(np.float32) for m in ms}
        rows = run_lowbit(w, xs, repeat, notes)
        wt = torch.from_numpy(w) if torch is not None else w
        rows += [r for r in (run_peer(p, wt, xs, repeat, notes) for p in peers) if r is not None]
        lb = {r["name"]: r["ms"] for r in rows[: len(LOWBIT)]}
        head = ["implementation", "compute", "check"] + [f"M={m} ms" for m in ms] + [
            f"{name[7:]} x (M={'/'.join(map(str, ms))})" for name, _, _ in LOWBIT]
        body = []
        for r in rows:
            cells = [r["name"], r["compute"], r["check"]] + [r["ms"].get(m, float("nan")) for m in ms]
            if r["name"].startswith("lowbit"):
                cells += [""] * len(LOWBIT)
            else:
                cells += [fmt_ratio([r["ms"][m] / lb[name][m] if m in r["ms"] and m in lb[name] else None for m in ms])
                          for name, _, _ in LOWBIT]
            body.append(cells)
        out += [f"### K x N = {k} x {n}: ms per call; 'x' columns: peer ms / lowbit ms (> 1: lowbit faster)", "",
                table(head, body), ""]
        peer_rows = [r for r in rows if not r["name"].startswith("lowbit")]
        f32 = [r for r in peer_rows if r["name"] in ("numpy f32", "torch f32")]
        quant = [r for r in peer_rows if r not in f32]
        for m in ms:
            t_f32 = min((r["ms"][m] for r in f32 if m in r["ms"]), default=float("nan"))
            fast = min((r for r in quant if m in r["ms"]), key=lambda r: r["ms"][m], default=None)
            t_fast = fast["ms"][m] if fast else float("nan")
            i4, nf = lb["lowbit int4"][m], lb["lowbit nf4"][m]
            target = ""
            if m == 1:
                ok = lambda t: t_f32 / t >= 5 and not t_fast < t  # noqa: E731
                target = f"int4 {'met' if ok(i4) else 'NOT met'}, nf4 {'met' if ok(nf) else 'NOT met'}"
            gbs = rows[1]["nbytes"] / (nf * 1e-3) / 1e9
            summary.append([f"{k}x{n}", m, i4, nf, t_f32, t_f32 / i4, t_f32 / nf,
                            f"{fast['name']} {t_fast:.3g} ms" if fast else "-", t_fast / i4, t_fast / nf, gbs, target])
        del w, xs
        gc.collect()
    head = ["K x N", "M", "int4 ms", "nf4 ms", "best f32 ms", "int4 x f32", "nf4 x f32", "fastest quantized peer",
            "int4 x it", "nf4 x it", "nf4 weight GB/s", "target (M=1: >= 5x f32, faster than every peer)"]
    return out, table(head, summary), notes


def bench_formats(rng, n, repeat):
    x = rng.standard_normal(n).astype(np.float32)
    rows = []
    q = lowbit.quantize(x, dtype="nf4")
    rows.append(["nf4 encode (block 64)", median_time(lambda: lowbit.quantize(x, dtype="nf4"), repeat=repeat),
                 median_time(lambda: ref.nf4_quantize(x[: n // 16], 64), repeat=1) * 16, float("nan")])
    rows.append(["nf4 decode", median_time(q.dequantize, repeat=repeat),
                 median_time(lambda: ref.nf4_dequantize(q.int_repr()[: n // 16], q.scale[: n // 1024], 64), repeat=1) * 16,
                 float("nan")])
    t_bf = float("nan")
    t_f16 = float("nan")
    if torch is not None:
        xt = torch.from_numpy(x)
        t_bf = median_time(lambda: xt.to(torch.bfloat16), repeat=repeat)
        t_f16 = median_time(lambda: xt.to(torch.float16), repeat=repeat)
    rows.append(["f32 -> fp16", median_time(lambda: lowbit.quantize(x, dtype="fp16"), repeat=repeat),
                 median_time(lambda: x.astype(np.float16), repeat=repeat), t_f16])
    rows.append(["f32 -> bf16", median_time(lambda: lowbit.quantize(x, dtype="bf16"), repeat=repeat),
                 median_time(lambda: ref.f32_to_bf16_bits(x), repeat=1), t_bf])
    out = [[r[0], n / r[1] / 1e9, n / r[2] / 1e9, n / r[3] / 1e9, r[2] / r[1], r[3] / r[1]] for r in rows]
    return table(["op", "lowbit Gelem/s", "numpy Gelem/s", "torch Gelem/s", "vs numpy", "vs torch"], out)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one shape, M = 1 and 8, fewer repeats")
    p.add_argument("--threads", type=int, default=None, help="threads for lowbit and torch (default: lowbit's)")
    p.add_argument("--no-peers", action="store_true", help="float32 baselines only (no torchao / bitsandbytes)")
    p.add_argument("--out", default=None, help="also write the tables to this Markdown file")
    a = p.parse_args()
    if a.threads:
        lowbit.set_num_threads(a.threads)
    threads = lowbit.get_num_threads()
    if torch is not None:
        torch.set_num_threads(threads)
    blas = "its BLAS default"
    try:  # optional: NumPy's BLAS at the same count
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="blas")
        blas = f"BLAS {threads} (threadpoolctl)"
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    peers = _peers.peers()
    if a.no_peers:
        peers = peers[:2]
    failed = {}
    for peer in peers[2:]:
        why = _peers.probe(peer)
        if why is not None:
            failed[peer.name] = (peer.what, why)
    peers = [peer for peer in peers if peer.name not in failed]
    versions = [f"{m} {v}" for m, v in _peers.versions().items()]
    lines = [banner(), f"threads: lowbit {threads}, torch {threads} (torch.set_num_threads); NumPy: {blas}"
             f" | peers: {', '.join(versions) or 'none installed'}", ""]
    shapes, ms, repeat = (SHAPES[:1], MS[:2], 3) if a.quick else (SHAPES, MS, 5)
    tables, summary, notes = bench_linear(rng, shapes, ms, repeat, peers)
    lines += ["## linear: float32 x 4-bit weights (group 64) and peers, ms per call (best of runs)", ""] + tables
    lines += ["## summary (issue 7 target: M = 1 at >= 5x float32 and faster than each peer measured here)", "",
              "best f32 = the faster of NumPy and torch float32; fastest quantized peer = fastest checked peer"
              " other than those.", "", summary, ""]
    lines += ["## rows: what ran", "",
              "check: 'ok (ref)': lowbit within the documented bound of lowbit.reference; 'ok (r)': a peer within"
              " its allowance, r = worst error / allowance (benchmarks/_peers.py, check).", ""]
    lines += [f"- {peer.name}: {peer.what}" for peer in peers] + [""]
    if failed or notes:
        lines += ["## peers that do not run here / failures", ""]
        lines += [f"- {name}: {what}: {why}" for name, (what, why) in failed.items()] + [f"- {n}" for n in notes]
        lines += [""]
    lines += ["## format conversions, 16M elements", "", bench_formats(rng, 1 << 24, repeat), ""]
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
