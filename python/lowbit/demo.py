"""The main job: quantize real weights (all-MiniLM-L6-v2) every way lowbit can and report error and
speed against NumPy and PyTorch, measured side by side in one run.

Run with ``python -m lowbit demo``; ``--help`` lists the options.
"""

from __future__ import annotations

import time
import warnings
from typing import Callable

import numpy as np

from . import cpu, reference
from ._data import minilm_weights
from .quantize import choose_qparams, quantize

__all__ = ["run_weights_demo", "sqnr_db"]


def sqnr_db(x: np.ndarray, y: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of ``y`` approximating ``x``, in dB."""
    x = x.astype(np.float64)
    noise = np.sum((x - y.astype(np.float64)) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(x * x) / noise))


def _best_time(fn: Callable[[], object], repeat: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _schemes(w: np.ndarray):
    absmax = np.abs(w).max(axis=1)
    s8, z8 = choose_qparams(-absmax, absmax, dtype="int8", symmetric=True)
    yield "int8 per-channel", dict(scale=s8, zero_point=z8, dtype="int8", axis=0), 8 + 64 / w.shape[1]
    s, z = choose_qparams(w.min(), w.max(), dtype="uint8")
    yield "uint8 per-tensor", dict(scale=s, zero_point=z, dtype="uint8"), 8.0
    g = 32
    wg = w.reshape(w.shape[0], -1, g)
    gmax = np.abs(wg).max(axis=2)
    s4, z4 = choose_qparams(-gmax, gmax, dtype="int4", symmetric=True)
    yield f"int4 group={g}", dict(scale=s4, zero_point=z4, dtype="int4", group_size=g), 4 + 64 / g


def run_weights_demo(print_fn: Callable[[str], None] = print) -> dict:
    """Quantizes every Linear weight of all-MiniLM-L6-v2; prints error per scheme and speed.

    Returns:
        A dict with ``"error"`` (scheme -> mean SQNR dB) and ``"speed"`` (row -> seconds).
    """
    weights = {k: v for k, v in minilm_weights().items() if v.ndim == 2 and "embeddings" not in k}
    info = cpu.cpu_info()
    print_fn(f"lowbit {info['version']} | CPU ISAs: {', '.join(info['available'])} | threads: {info['num_threads']}")
    print_fn(f"all-MiniLM-L6-v2: {len(weights)} Linear weights, {sum(w.size for w in weights.values()) / 1e6:.2f} M parameters")
    print_fn("")
    print_fn(f"{'scheme':<20}{'bits/weight':>12}{'mean SQNR dB':>14}{'worst layer':>50}")
    errors = {}
    for name in ["int8 per-channel", "uint8 per-tensor", "int4 group=32"]:
        vals, bits = [], 0.0
        for lname, w in weights.items():
            for sname, kw, b in _schemes(w):
                if sname == name:
                    vals.append((sqnr_db(w, quantize(w, **kw).dequantize()), lname))
                    bits = b
        mean = float(np.mean([v for v, _ in vals]))
        worst = min(vals)
        errors[name] = mean
        print_fn(f"{name:<20}{bits:>12.2f}{mean:>14.2f}{f'{worst[1]} ({worst[0]:.1f} dB)':>50}")

    big = np.concatenate([w.reshape(-1) for w in weights.values()])
    big = np.tile(big, max(1, 16_000_000 // big.size))
    s, z = choose_qparams(big.min(), big.max(), dtype="int8")
    inv = np.float32(1) / np.float32(s)
    speed = {
        "lowbit quantize": _best_time(lambda: quantize(big, s, z)),
        "NumPy expression": _best_time(lambda: np.clip(np.rint(big * inv) + z, -128, 127).astype(np.int8), 2),
    }
    q = quantize(big, s, z)
    if not np.array_equal(q.int_repr()[:200_000], reference.quantize(big[:200_000], s, z)):
        raise RuntimeError("lowbit.quantize disagrees with lowbit.reference.quantize")
    try:
        import torch

        t = torch.from_numpy(big)
        with warnings.catch_warnings():  # torch deprecates its quantized tensors; the timing still counts
            warnings.simplefilter("ignore")
            speed["torch.quantize_per_tensor"] = _best_time(lambda: torch.quantize_per_tensor(t, s, z, torch.qint8))
    except ImportError:
        pass
    speed["lowbit dequantize"] = _best_time(q.dequantize)
    print_fn("")
    print_fn(f"quantize f32 -> int8 per tensor, {big.size / 1e6:.1f} M elements ({cpu.get_arch()}):")
    base = speed["lowbit quantize"]
    for k, v in speed.items():
        rel = f"   lowbit is {v / base:5.1f}x faster" if not k.startswith("lowbit") else ""
        print_fn(f"  {k:<28}{big.size / v / 1e9:8.2f} Gelem/s{rel}")
    return {"error": errors, "speed": speed}
