"""Calibration split over worker processes, merged into one set of observers.

Each worker calibrates its own observers on one shard of the data (here: a seeded random shard
run through a small fixed NumPy MLP), returns their ``state_dict()`` (plain JSON-able data), and the
parent merges them. Min/max and histogram observers then equal a single-process pass exactly.

    python benchmarks/calibrate_parallel.py --workers 2 --shards 8
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import time

import lowbit
import numpy as np

LAYERS = ("fc1", "fc2")


def make_observers() -> dict:
    return {
        "input": lowbit.HistogramObserver(bins=2048, dtype="uint8"),
        "fc1": lowbit.MinMaxObserver(dtype="uint8"),
        "fc1_per_channel": lowbit.PerChannelMinMaxObserver(axis=-1, dtype="int8", symmetric=True),
        "fc2": lowbit.HistogramObserver(bins=1024, dtype="int8", symmetric=True),
    }


def model(batch: np.ndarray) -> dict:
    """A fixed two-layer MLP; returns the activations to observe."""
    rng = np.random.default_rng(1234)
    w1 = rng.standard_normal((64, 128)).astype(np.float32) / 8
    w2 = rng.standard_normal((128, 32)).astype(np.float32) / 11
    h = np.maximum(batch @ w1, 0)
    return {"input": batch, "fc1": h, "fc1_per_channel": h, "fc2": h @ w2}


def shard(index: int, batches: int = 4) -> list:
    """Shard ``index`` of the calibration set: a few seeded batches (generated in the worker)."""
    rng = np.random.default_rng(index)
    return [rng.standard_t(4, size=(32, 64)).astype(np.float32) for _ in range(batches)]


def calibrate_shard(index: int) -> dict:
    """Worker: calibrate fresh observers on one shard, return their JSON-able states."""
    observers = lowbit.calibrate(model, shard(index), make_observers(), progress=False)
    return {name: obs.state_dict() for name, obs in observers.items()}


def merge_states(states: list) -> dict:
    merged = make_observers()
    for state in states:
        for name, d in state.items():
            merged[name].merge(lowbit.Observer.from_state_dict(d))
    return merged


def calibrate_in_processes(n_shards: int, workers: int) -> dict:
    ctx = mp.get_context("spawn")  # safe with threads in the parent (lowbit's pool, torch, ...)
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        states = list(pool.map(calibrate_shard, range(n_shards)))
    # The states cross process (or machine) boundaries as JSON.
    return merge_states([json.loads(json.dumps(s)) for s in states])


def calibrate_single(n_shards: int) -> dict:
    batches = [b for i in range(n_shards) for b in shard(i)]
    return lowbit.calibrate(model, batches, make_observers(), progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shards", type=int, default=8)
    args = ap.parse_args()
    t0 = time.perf_counter()
    merged = calibrate_in_processes(args.shards, args.workers)
    t1 = time.perf_counter()
    single = calibrate_single(args.shards)
    t2 = time.perf_counter()
    print(f"{args.shards} shards on {args.workers} processes: {t1 - t0:.2f} s; single process: {t2 - t1:.2f} s")
    for name in merged:
        same = merged[name].state_dict() == single[name].state_dict()
        qp = merged[name].compute_qparams()
        print(f"{name:16} merged == single: {same}   qparams: {qp if np.ndim(qp[0]) == 0 else '(per channel)'}")


if __name__ == "__main__":
    main()
