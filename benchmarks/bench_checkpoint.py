"""Checkpoints bigger than memory: lowbit.quantize_checkpoint on a synthetic sharded safetensors
checkpoint (bf16, LLM-like 4096 x 11008 projections), with peak resident memory and wall time,
and each quantized layer checked against quantizing that tensor in memory.

    python benchmarks/bench_checkpoint.py --gb 6 [--weight int4] [--group-size 64] [--keep DIR]

The checkpoint is written shard by shard (one shard in memory), then a fresh process quantizes
it into one lowbit file and reports its resident high-water mark (``VmHWM``) before and after the
call; a third process loads the result into a meta-device skeleton and checks every layer's
stored tensors against ``QuantLinear.from_float`` of the float tensor read alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import lowbit
import torch
from _common import banner, format_bytes, table

SHAPE = (11008, 4096)  # out, in: an LLM MLP projection, 86 MiB in bf16

_QUANTIZE = textwrap.dedent("""
    import json, sys, time, torch, lowbit
    import lowbit.interop.checkpoint
    src, dst, n, cfg = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
    out_f, in_f = {shape}
    def hwm():
        with open("/proc/self/status") as f:
            return next(int(x.split()[1]) * 1024 for x in f if x.startswith("VmHWM:"))
    with torch.device("meta"):
        skeleton = torch.nn.Sequential(*[torch.nn.Linear(in_f, out_f, bias=False, dtype=torch.bfloat16)
                                         for _ in range(n)])
    before = hwm()
    t0 = time.perf_counter()
    lowbit.quantize_checkpoint(src, dst, cfg, model=skeleton)
    print(json.dumps({{"before": before, "after": hwm(), "seconds": time.perf_counter() - t0}}))
""")

_CHECK = textwrap.dedent("""
    import json, sys, torch, lowbit
    from safetensors import safe_open
    from lowbit.nn import QuantLinear
    src_files, dst, n, cfg = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
    out_f, in_f = {shape}
    with torch.device("meta"):
        skeleton = torch.nn.Sequential(*[torch.nn.Linear(in_f, out_f, bias=False, dtype=torch.bfloat16)
                                         for _ in range(n)])
    model = lowbit.load(dst, skeleton)
    config = lowbit.QuantConfig(**cfg)
    same = 0
    for path in src_files:
        with safe_open(path, framework="pt") as f:
            for key in f.keys():
                name = key.rsplit(".", 1)[0]
                lin = torch.nn.Linear(in_f, out_f, bias=False, dtype=torch.bfloat16)
                lin.weight.data = f.get_tensor(key)
                ref = QuantLinear.from_float(lin, config, name=name).state_dict()
                got = model.get_submodule(name).state_dict()
                same += all(torch.equal(ref[k], got[k]) for k in ref) and ref.keys() == got.keys()
    print(json.dumps({{"identical_layers": same}}))
""")


def write_checkpoint(folder: str, n: int, per_shard: int) -> list[str]:
    g = torch.Generator().manual_seed(0)
    files, weight_map = [], {}
    shards = (n + per_shard - 1) // per_shard
    from safetensors.torch import save_file

    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {f"{i}.weight": (torch.randn(SHAPE, generator=g) / 64).to(torch.bfloat16)
                for i in range(s * per_shard, min(n, (s + 1) * per_shard))}
        save_file(part, os.path.join(folder, name))
        weight_map.update({k: name for k in part})
        files.append(os.path.join(folder, name))
        del part
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=6.0, help="checkpoint size in GiB (bf16 weights)")
    ap.add_argument("--weight", default="int4")
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--per-shard", type=int, default=8, help="tensors per shard file")
    ap.add_argument("--keep", help="folder to write into (kept); default: a temporary folder")
    args = ap.parse_args()
    tensor_bytes = SHAPE[0] * SHAPE[1] * 2
    n = max(1, round(args.gb * (1 << 30) / tensor_bytes))
    cfg = {"weight": args.weight, "group_size": args.group_size}
    print(banner())
    with tempfile.TemporaryDirectory(dir=args.keep) as folder:
        t0 = time.perf_counter()
        files = write_checkpoint(folder, n, args.per_shard)
        t_write = time.perf_counter() - t0
        ck_bytes = sum(os.path.getsize(p) for p in files)
        dst = os.path.join(folder, "model.lowbit")
        env = dict(os.environ)
        r = subprocess.run([sys.executable, "-c", _QUANTIZE.format(shape=SHAPE), folder, dst, str(n), json.dumps(cfg)],
                           check=True, capture_output=True, text=True, env=env)
        q = json.loads(r.stdout.strip().splitlines()[-1])
        r = subprocess.run([sys.executable, "-c", _CHECK.format(shape=SHAPE), json.dumps(files), dst, str(n),
                            json.dumps(cfg)], check=True, capture_output=True, text=True, env=env)
        c = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"{n} bf16 tensors {SHAPE} in {len(files)} shards ({format_bytes(ck_bytes)}; written in {t_write:.1f} s);"
              f" {lowbit.QuantConfig(**cfg).weight.describe()}\n")
        print(table(["checkpoint", "largest tensor", "lowbit file", "quantize s", "peak RSS before", "peak RSS after",
                     "increase", "increase / largest tensor", "layers identical to in-memory"],
                    [[format_bytes(ck_bytes), format_bytes(tensor_bytes), format_bytes(os.path.getsize(dst)),
                      f"{q['seconds']:.1f}", format_bytes(q["before"]), format_bytes(q["after"]),
                      format_bytes(q["after"] - q["before"]), f"{(q['after'] - q['before']) / tensor_bytes:.1f}x",
                      f"{c['identical_layers']}/{n}"]]))
        if c["identical_layers"] != n:
            sys.exit("quantize_checkpoint differs from quantizing in memory")


if __name__ == "__main__":
    main()
