"""quantize / dequantize throughput against NumPy, PyTorch and a plain streaming copy, one run.

Usage: python benchmarks/bench_quantize.py [--quick] [--threads 1,2] [--out results.md]

Every lowbit result is checked against lowbit.reference (on a slice for the large arrays) first.
"quant"/"dequant" allocate a fresh result (what a plain call costs, page faults included, as for
NumPy and torch); "out=" reuses a buffer, which shows the kernel against streaming bandwidth
("of copy BW": bytes moved per second relative to np.copyto of the same array).
Rows: per-tensor / per-channel / per-group, int8 and int4, on a large (64M elements) and an
L2-sized (256K elements) array, with 1 and all threads.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import lowbit  # noqa: E402
from _common import banner, median_time, table  # noqa: E402
from lowbit import reference as ref  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


def cases(n: int, rng):
    cols = 4096
    x = rng.standard_normal((n // cols, cols)).astype(np.float32)
    rows = x.shape[0]
    yield "int8 per-tensor", x, dict(scale=0.02, zero_point=3, dtype="int8")
    yield "int8 per-channel", x, dict(scale=rng.uniform(0.01, 0.03, rows).astype(np.float32), zero_point=np.zeros(rows, np.int32), dtype="int8", axis=0)
    yield "int8 per-group128", x, dict(scale=rng.uniform(0.01, 0.03, (rows, cols // 128)).astype(np.float32), zero_point=0, dtype="int8", group_size=128)
    yield "int4 per-tensor", x, dict(scale=0.4, zero_point=0, dtype="int4")
    yield "int4 per-group128", x, dict(scale=rng.uniform(0.2, 0.5, (rows, cols // 128)).astype(np.float32), zero_point=0, dtype="int4", group_size=128)


def numpy_quantize(x, kw):
    s, z = ref.expand_params(x.shape, kw["scale"], kw["zero_point"], kw.get("axis"), kw.get("group_size")) if (
        kw.get("group_size")
    ) else (np.asarray(kw["scale"], np.float32).reshape(-1, 1) if kw.get("axis") is not None else np.float32(kw["scale"]), kw["zero_point"] if kw.get("axis") is None else np.asarray(kw["zero_point"]).reshape(-1, 1))
    qmin, qmax = ref.qrange(kw["dtype"])
    inv = np.float32(1) / np.asarray(s, np.float32)
    return lambda: np.clip(np.rint(x * inv) + z, qmin, qmax).astype(np.int8)


def torch_quantize(x, kw):
    if torch is None or kw["dtype"] != "int8" or kw.get("group_size"):
        return None
    t = torch.from_numpy(x)
    if kw.get("axis") is None:
        return lambda: torch.quantize_per_tensor(t, kw["scale"], kw["zero_point"], torch.qint8)
    s = torch.from_numpy(kw["scale"].astype(np.float64))
    z = torch.from_numpy(kw["zero_point"].astype(np.int64))
    return lambda: torch.quantize_per_channel(t, s, z, 0, torch.qint8)


def verify(x, kw):
    q = lowbit.quantize(x, **kw)
    sl = slice(0, min(x.shape[0], 64))
    kw_s = dict(kw)
    if kw.get("axis") is not None:
        kw_s["scale"] = kw["scale"][sl]
        kw_s["zero_point"] = kw["zero_point"][sl]
    if kw.get("group_size"):
        kw_s["scale"] = kw["scale"][sl]
    want = ref.quantize(x[sl], kw_s["scale"], kw_s["zero_point"], kw["dtype"], kw.get("axis"), kw.get("group_size"))
    if not np.array_equal(q.int_repr()[sl], want):
        raise SystemExit(f"MISMATCH against the reference: {kw}")
    deq = q.dequantize()
    if not np.array_equal(deq[sl], ref.dequantize(want, kw_s["scale"], kw_s["zero_point"], kw.get("axis"), kw.get("group_size"))):
        raise SystemExit(f"MISMATCH in dequantize: {kw}")
    return q


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small arrays only, fewer rows")
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}", help="thread counts, comma separated")
    ap.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # torch's deprecation warnings for quantized tensors
    rng = np.random.default_rng(0)
    sizes = [("L2 256K", 1 << 18)] + ([] if args.quick else [("64M", 1 << 26)])
    threads = sorted({int(t) for t in args.threads.split(",")})
    rows = []
    for size_name, n in sizes:
        for name, x, kw in cases(n, rng):
            if args.quick and "per-group" in name and "int8" in name:
                continue
            q = verify(x, kw)
            np_fn = numpy_quantize(x, kw)
            t_np = median_time(np_fn, repeat=2 if n > 1e6 else 5)
            copy_dst = np.empty_like(x)
            qbuf = np.empty_like(q.data)
            fbuf = np.empty_like(x)
            for th in threads:
                lowbit.set_num_threads(th)
                if torch is not None:
                    torch.set_num_threads(th)
                t_q = median_time(lambda: lowbit.quantize(x, **kw))
                t_qo = median_time(lambda: lowbit.quantize(x, **kw, out=qbuf))
                t_d = median_time(q.dequantize)
                t_do = median_time(lambda: q.dequantize(out=fbuf))
                t_copy = median_time(lambda: np.copyto(copy_dst, x))
                tq = torch_quantize(x, kw)
                t_t = median_time(tq) if tq else None
                bytes_q = x.nbytes + q.data.nbytes
                copy_gbs = 2 * x.nbytes / t_copy / 1e9
                rows.append([
                    size_name, name, th,
                    x.size / t_q / 1e9, x.size / t_qo / 1e9, bytes_q / t_qo / 1e9, f"{bytes_q / t_qo / 1e9 / copy_gbs:.0%}",
                    x.size / t_d / 1e9, x.size / t_do / 1e9,
                    t_np / t_q, (t_t / t_q) if t_t else "n/a", copy_gbs,
                ])
                print(f"  done {size_name} {name} threads={th}", file=sys.stderr)
    headers = [
        "size", "case", "thr", "quant Gelem/s", "quant out= Gelem/s", "quant out= GB/s", "of copy BW",
        "dequant Gelem/s", "dequant out= Gelem/s", "quant x NumPy", "quant x torch", "copy GB/s",
    ]
    out = banner() + "\n\n" + table(headers, rows)
    print(out)
    if args.out:
        with open(args.out, "w") as f:
            f.write(out + "\n")


if __name__ == "__main__":
    main()
