"""Error-metric speed (lowbit.metrics, C++ error_stats_f32) vs NumPy and PyTorch, side by side.

One pass of lowbit computes sum (x-y)^2, sum x^2, sum y^2, sum x*y and max |x-y| in double; the
peers compute the same five numbers with their own float64 expressions (what a careful user
writes). Results are checked against NumPy float64 (rtol 1e-12) before timing.

    python benchmarks/bench_metrics.py            # 64 K, 1 M and 16 M elements, every ISA
    python benchmarks/bench_metrics.py --quick    # 64 K and 1 M, best ISA only
"""

from __future__ import annotations

import argparse

import lowbit
import numpy as np
from _common import banner, median_time, table
from lowbit import _core


def numpy_stats(x: np.ndarray, y: np.ndarray) -> tuple[float, ...]:
    a, b = x.astype(np.float64), y.astype(np.float64)
    d = a - b
    # Element-wise sums, not `@`: NumPy's BLAS dot spins its own threads, which on a shared
    # machine measures the scheduler rather than the arithmetic.
    return float(np.sum(d * d)), float(np.sum(a * a)), float(np.sum(b * b)), float(np.sum(a * b)), float(
        np.abs(d).max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        lowbit.set_num_threads(args.threads)
    try:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    print(banner())
    sizes = [1 << 16, 1 << 20] if args.quick else [1 << 16, 1 << 20, 1 << 24]
    isas = lowbit.cpu_info()["available"][:1] if args.quick else lowbit.cpu_info()["available"]
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        x = rng.standard_normal(n, dtype=np.float32)
        y = x + np.float32(0.01) * rng.standard_normal(n, dtype=np.float32)
        want = numpy_stats(x, y)
        peers = {"NumPy float64": median_time(lambda x=x, y=y: numpy_stats(x, y), repeat=3)}
        if torch is not None:
            tx, ty = torch.from_numpy(x), torch.from_numpy(y)

            def torch_stats(tx=tx, ty=ty):
                a, b = tx.double(), ty.double()
                d = a - b
                return d @ d, a @ a, b @ b, a @ b, d.abs().max()

            peers["torch float64"] = median_time(torch_stats, repeat=3)
        for isa in isas:
            with lowbit.arch(isa):
                got = _core.error_stats_f32(x, y)
                np.testing.assert_allclose(got, want, rtol=1e-12)
                t = median_time(lambda x=x, y=y: _core.error_stats_f32(x, y), repeat=3)
            rows.append([n, f"lowbit {isa}", n / t / 1e9] + [f"{p / t:.1f}x" for p in peers.values()])
        rows += [[n, name, n / p / 1e9] + [""] * len(peers) for name, p in peers.items()]
    heads = ["elements", "implementation", "Gelem/s"] + [f"lowbit vs {k}" for k in peers]
    print(table(heads, rows))


if __name__ == "__main__":
    main()
