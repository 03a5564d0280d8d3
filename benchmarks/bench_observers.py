"""Observer speed, lowbit vs PyTorch, measured side by side in one run.

``update`` time per activation shape and ``compute_qparams`` time, for each lowbit observer and
PyTorch's equivalent (``torch.ao.quantization``), with the speedup; results are checked (same
qparams as PyTorch for the min/max observers, quantization MSE vs PyTorch for the histogram).

    python benchmarks/bench_observers.py            # full run
    python benchmarks/bench_observers.py --quick    # small shapes, few repeats
    python benchmarks/bench_observers.py --threads 1  # both libraries on one thread
    python benchmarks/bench_observers.py --threads 1 --cpu-time  # CPU time of the thread (shared machines)

Targets (issue 4): MinMax >= 3x PyTorch, HistogramObserver update >= 10x, compute_qparams for
2048 bins < 5 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import lowbit
import numpy as np

FULL_SHAPES = [(64, 768), (512, 3072), (16, 4096, 1024)]
QUICK_SHAPES = [(64, 768), (512, 3072)]


def timeit(fn, reps: int, best: bool = False):
    """Median seconds of ``reps`` calls after one warm-up call (and the best, if asked)."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return (statistics.median(times), min(times)) if best else statistics.median(times)


def pairs(torch):
    """(name, lowbit factory, torch factory or None, check kind)."""
    from torch.ao import quantization as tq

    aff, pc_aff = torch.per_tensor_affine, torch.per_channel_affine
    return [
        ("MinMax", lambda: lowbit.MinMaxObserver(dtype="uint8"),
         lambda: tq.MinMaxObserver(dtype=torch.quint8, qscheme=aff), "equal"),
        ("MovingAverageMinMax", lambda: lowbit.MovingAverageMinMaxObserver(dtype="uint8"),
         lambda: tq.MovingAverageMinMaxObserver(dtype=torch.quint8, qscheme=aff), "equal"),
        ("PerChannelMinMax(axis=-1)", lambda: lowbit.PerChannelMinMaxObserver(axis=-1, dtype="uint8"),
         lambda: tq.PerChannelMinMaxObserver(ch_axis=-1, dtype=torch.quint8, qscheme=pc_aff), "equal"),
        ("PerChannelMinMax(axis=0)", lambda: lowbit.PerChannelMinMaxObserver(axis=0, dtype="int8", symmetric=True),
         lambda: tq.PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric),
         "equal"),
        ("MovingAvgPerChannel(axis=-1)", lambda: lowbit.MovingAveragePerChannelMinMaxObserver(axis=-1, dtype="uint8"),
         lambda: tq.MovingAveragePerChannelMinMaxObserver(ch_axis=-1, dtype=torch.quint8, qscheme=pc_aff), "equal"),
        ("Histogram(mse)", lambda: lowbit.HistogramObserver(dtype="uint8"),
         lambda: tq.HistogramObserver(dtype=torch.quint8, qscheme=aff), "mse"),
        ("PowerOfTwo", lambda: lowbit.PowerOfTwoObserver(dtype="int8", symmetric=True), None, "-"),
    ]


def cpu_time(fn, reps: int) -> float:
    """Median CPU seconds of this thread per call: excludes time lost to other processes."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return statistics.median(times)


CLOCK = time.perf_counter  # --cpu-time: time.thread_time (one thread: time lost to other processes left out)
SPREADS: list = []  # (q1, q3) of the per-repeat ratios of the last timeit_pair calls


def timeit_pair(fa, fb, reps: int) -> tuple[float, float]:
    """Median seconds of ``fa`` and of ``fb``, their calls interleaved so that both see the same
    background load on a shared machine; the quartiles of the per-repeat ratio go to SPREADS."""
    fa()
    fb()
    ta, tb = [], []
    for _ in range(reps):
        t0 = CLOCK()
        fa()
        t1 = CLOCK()
        fb()
        t2 = CLOCK()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    r = sorted(b / max(a, 1e-9) for a, b in zip(ta, tb))
    SPREADS.append((r[len(r) // 4], r[(3 * len(r)) // 4]))
    return statistics.median(ta), statistics.median(tb)


def quant_mse(x, scale, zp, qmin, qmax) -> float:
    """Mean squared error of fake-quantizing all of x (in chunks, float64 accumulation)."""
    inv = np.float32(1.0) / np.float32(scale)
    flat = x.reshape(-1)
    total = 0.0
    for i in range(0, flat.size, 1 << 22):
        c = flat[i : i + (1 << 22)]
        q = np.clip(np.rint(c * inv) + zp, qmin, qmax)
        total += float((((q - zp) * np.float32(scale) - c).astype(np.float64) ** 2).sum())
    return total / flat.size


def check(kind, ours, theirs, x) -> str:
    if kind == "-" or theirs is None:
        return "-"
    s, z = ours.compute_qparams()
    ts, tz = theirs.calculate_qparams()
    if kind == "equal":
        ok = np.array_equal(np.float32(s), ts.numpy().astype(np.float32).reshape(np.shape(s))) and np.array_equal(
            np.asarray(z), tz.numpy().reshape(np.shape(z))
        )
        return "same qparams" if ok else "MISMATCH"
    a = quant_mse(x, s, z, 0, 255)
    b = quant_mse(x, float(ts), int(tz), 0, 255)
    return f"MSE {a / b:.3f}x torch's"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shapes and few repeats")
    ap.add_argument("--threads", type=int, default=0, help="threads for both libraries (default: their own)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="with --threads 1: time the calling thread's CPU time (steadier on a shared machine)")
    args = ap.parse_args()
    if args.cpu_time:
        if args.threads != 1:
            raise SystemExit("--cpu-time needs --threads 1 (CPU time of one thread)")
        global CLOCK
        CLOCK = time.thread_time
    import os

    import torch

    if args.threads:
        lowbit.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)

    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    reps_for = (lambda n: 3) if args.quick else (lambda n: 40 if n < 1e6 else (15 if n < 1e7 else 5))
    info = lowbit.cpu_info()
    print(f"lowbit {info['version']} arch={info['arch']} threads={lowbit.get_num_threads()}; "
          f"torch {torch.__version__} threads={torch.get_num_threads()}; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print(f"times: {'thread CPU time' if args.cpu_time else 'wall clock'}, median of interleaved repeats; "
          "speedup spread: quartiles of the per-repeat ratios\n")
    print("| observer | shape | lowbit update ms | torch update ms | speedup | spread | check |")
    print("| --- | --- | ---: | ---: | ---: | --- | --- |")
    rng = np.random.default_rng(0)
    fitted = {}
    for shape in shapes:
        x = rng.standard_normal(shape, dtype=np.float32)
        x *= np.float32(1.5)
        tx = torch.from_numpy(x)
        reps = reps_for(x.size)
        for name, ours_f, theirs_f, kind in pairs(torch):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ours = ours_f()
                theirs = theirs_f() if theirs_f else None
                if theirs is not None:
                    t_ours, t_theirs = timeit_pair(lambda o=ours, a=x: o.update(a), lambda o=theirs, a=tx: o(a), reps)
                else:
                    t_ours, t_theirs = timeit(lambda o=ours, a=x: o.update(a), reps), float("nan")
            speed = f"{t_theirs / t_ours:.1f}x" if theirs else "-"
            th = f"{t_theirs * 1e3:.3f}" if theirs else "-"
            spread = f"{SPREADS[-1][0]:.1f}-{SPREADS[-1][1]:.1f}x" if theirs else "-"
            print(f"| {name} | {shape} | {t_ours * 1e3:.3f} | {th} | {speed} | {spread} | {check(kind, ours, theirs, x)} |",
                  flush=True)
            if shape == (512, 3072):
                fitted[name] = (ours, theirs)
    print("\n| compute_qparams (after (512, 3072) updates) | lowbit ms (best) | lowbit CPU ms | torch ms | speedup |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (ours, theirs) in fitted.items():
        t_ours, b_ours = timeit(ours.compute_qparams, 5 if args.quick else 30, best=True)
        cpu = cpu_time(ours.compute_qparams, 5 if args.quick else 30)
        if theirs is not None:
            t_ours, t_theirs = timeit_pair(ours.compute_qparams, theirs.calculate_qparams, 3 if args.quick else 15)
            print(f"| {name} | {t_ours * 1e3:.3f} ({b_ours * 1e3:.3f}) | {cpu * 1e3:.3f} | {t_theirs * 1e3:.3f} | "
                  f"{t_theirs / t_ours:.1f}x |")
        else:
            print(f"| {name} | {t_ours * 1e3:.3f} ({b_ours * 1e3:.3f}) | {cpu * 1e3:.3f} | - | - |")
    hist = fitted["Histogram(mse)"][0]
    for method in ("percentile", "entropy"):
        h = lowbit.HistogramObserver(dtype="uint8", method=method)
        h.counts, h._grid, h.min_val, h.max_val = hist.counts, hist._grid, hist.min_val, hist.max_val
        h.zeros = hist.zeros
        t, b = timeit(h.compute_qparams, 5 if args.quick else 30, best=True)
        cpu = cpu_time(h.compute_qparams, 5 if args.quick else 30)
        print(f"| Histogram({method}), no torch equivalent | {t * 1e3:.3f} ({b * 1e3:.3f}) | {cpu * 1e3:.3f} | - | - |")


if __name__ == "__main__":
    main()
