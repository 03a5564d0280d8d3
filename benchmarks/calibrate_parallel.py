"""Calibration and sensitivity on torch.distributed (gloo, launched by torchrun): wall time at 1, 2,
... processes, and a check that every process count gives the one-process result.

The parent launches ``torchrun --nproc_per_node N`` of this script in worker mode for each N > 1
(N = 1 is the plain single-process call, ``process_group=None``, in the parent). Each
rank calibrates its shard of the data (``quantize_model(..., activation=static histogram,
process_group="world")``: observers merged over the ranks) and takes its share of a
``lowbit.sensitivity`` sweep; rank 0 writes the wall times (median of ``--repeats`` runs, each
between barriers) and a SHA-256 of the quantized state_dict and of the sensitivity rows. Every
rank runs lowbit and torch on one thread, so N processes use N cores. The times include each
call's collectives, not torchrun's start-up. (lowbit.Timer is not used inside the ranks: its
adaptive loop counts could differ between ranks, and a collective needs the same calls on each.)

    python benchmarks/calibrate_parallel.py --procs 1 2 [--batches 64] [--width 384] [--layers 8]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import lowbit
import torch
from _common import banner, table


def make_model(width: int, layers: int) -> torch.nn.Module:
    torch.manual_seed(0)
    mods: list[torch.nn.Module] = []
    for _ in range(layers):
        mods += [torch.nn.Linear(width, width), torch.nn.GELU()]
    return torch.nn.Sequential(*mods).eval()


def make_data(n: int, width: int, rows: int = 64) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(rows, width, generator=g) * (1 + i % 5) for i in range(n)]


def digest(obj: object) -> str:
    h = hashlib.sha256()
    if isinstance(obj, torch.nn.Module):
        for k, t in obj.state_dict().items():
            h.update(k.encode())
            h.update(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    else:
        h.update(json.dumps(obj, sort_keys=True).encode())
    return h.hexdigest()[:16]


def measure(args: argparse.Namespace, rank: int, world: int, group: object) -> dict:
    """Times calibration and the sensitivity sweep of this rank (``group`` None: one process)."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    lowbit.set_num_threads(1)
    model, data = make_model(args.width, args.layers), make_data(args.batches, args.width)
    shard = data[rank::world]
    eval_data = data[: args.eval_batches]
    cfg = lowbit.QuantConfig(activation=lowbit.StaticActivations(observer="histogram"))
    sync = dist.barrier if group is not None else (lambda: None)

    def timed(fn):
        samples, out = [], None
        for _ in range(args.repeats):
            sync()
            t0 = time.perf_counter()
            out = fn()
            sync()
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples), out

    t_cal, q = timed(lambda: lowbit.quantize_model(model, cfg, calib_data=shard, progress=False,
                                                   process_group=group))
    t_sens, s = timed(lambda: lowbit.sensitivity(model, eval_data, {"weight": "int4"}, progress=False,
                                                 process_group=group))
    return {"calibration_s": t_cal, "sensitivity_s": t_sens, "model": digest(q), "sensitivity": digest(s.rows)}


def worker(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    result = measure(args, rank, world, "world")
    if rank == 0:
        with open(args.out, "w") as f:
            json.dump(result, f)
    dist.barrier()
    dist.destroy_process_group()


def launch(n: int, args: argparse.Namespace) -> dict:
    if n == 1:  # the baseline: a plain single-process call (no torchrun, process_group=None)
        return measure(args, 0, 1, None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_addr",
               "127.0.0.1", "--master_port", str(port), __file__, "--worker", "--out", out,
               "--batches", str(args.batches), "--width", str(args.width), "--layers", str(args.layers),
               "--eval-batches", str(args.eval_batches), "--repeats", str(args.repeats)]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        subprocess.run(cmd, check=True, env=env, timeout=args.timeout)
        with open(out) as f:
            return json.load(f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="process counts; the first is the baseline")
    ap.add_argument("--batches", type=int, default=64, help="calibration batches (64 rows each), split over ranks")
    ap.add_argument("--eval-batches", type=int, default=32, help="batches each sensitivity evaluation runs")
    ap.add_argument("--width", type=int, default=384)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    print(banner())
    print(f"MLP {args.layers} x Linear({args.width}, {args.width}); static histogram calibration on "
          f"{args.batches} batches of 64 rows; int4 sensitivity over {args.layers} layers on {args.eval_batches} "
          f"batches; 1 thread per process; median of {args.repeats}\n")
    results = {n: launch(n, args) for n in args.procs}
    base = results[args.procs[0]]
    rows = []
    for n, r in results.items():
        rows.append([n, f"{r['calibration_s']:.2f}", f"{base['calibration_s'] / r['calibration_s']:.2f}x",
                     f"{r['sensitivity_s']:.2f}", f"{base['sensitivity_s'] / r['sensitivity_s']:.2f}x",
                     "yes" if r["model"] == base["model"] else "NO",
                     "yes" if r["sensitivity"] == base["sensitivity"] else "NO"])
    print(table(["processes", "calibration s", "speedup", "sensitivity s", "speedup",
                 f"model == {args.procs[0]}-process", "report == 1-process"], rows))
    if any(r["model"] != base["model"] or r["sensitivity"] != base["sensitivity"] for r in results.values()):
        sys.exit("results differ between process counts")


if __name__ == "__main__":
    main()
