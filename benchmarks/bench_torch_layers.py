"""Models built from torch's own layer types that have no Linear module: nn.TransformerEncoder
(nn.MultiheadAttention inside), a U-Net-style decoder (nn.ConvTranspose2d) and nn.LSTM / nn.GRU.
lowbit decomposes them into Linear layers (lowbit.nn.MultiheadAttention, lowbit.nn.ConvTranspose,
lowbit.nn.Recurrent) and quantizes them whole; the peer is torch's ``quantize_dynamic`` (its int8
engines quantize nn.Linear, nn.LSTM and nn.GRU, not the attention's packed input projection) or, for
the decoder, torch.ao's eager static quantization (x86 engine: quantized Conv2d and ConvTranspose2d,
per-tensor weights for the transposed ones). Latency (lowbit.Timer, interleaved, median ± half IQR), cosine of the
outputs to float32, stored size (lowbit.summary for lowbit; torch's state dict for the peer).

torch's fused "fast path" of nn.TransformerEncoderLayer (inference without autograd) cannot run
torch's dynamically quantized Linear layers (AttributeError in torch 2.13), so the encoder rows run
with ``torch.backends.mha.set_fastpath_enabled(False)`` for the peer and the float model alike; a
float row with the fast path is added.

Usage: python benchmarks/bench_torch_layers.py [--threads N] [--models encoder,decoder,lstm,gru]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(__file__))
import lowbit
import torch
from _common import SMOKE, banner, format_bytes, interleaved, speedup_cell, table, timing_cell
from torch import nn


class _Rnn(nn.Module):
    def __init__(self, cls: type, size_in: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.rnn = cls(size_in, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


class _Decoder(nn.Module):
    """A U-Net-style decoder: 2x upsampling transposed convolutions between 3x3 convolutions."""

    def __init__(self, c: int, k: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(3):
            layers += [nn.ConvTranspose2d(c, c // 2, k, stride=2, padding=(k - 2) // 2), nn.ReLU(),
                       nn.Conv2d(c // 2, c // 2, 3, padding=1), nn.ReLU()]
            c //= 2
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _cases(models: list[str]) -> list[tuple[str, nn.Module, torch.Tensor, type]]:
    torch.manual_seed(0)
    out = []
    if "encoder" in models:
        for d, heads, layers, n, t in ((256, 4, 4, 8, 64), (384, 12, 6, 8, 128)):
            enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, heads, 4 * d, batch_first=True), layers,
                                        enable_nested_tensor=False)
            out.append((f"TransformerEncoder d{d} x{layers}, {n} x {t} tokens", enc.eval(), torch.randn(n, t, d),
                        nn.Linear))
    if "decoder" in models:
        for k in (2, 4):
            out.append((f"U-Net decoder 256 ch 14x14 -> 32 ch 112x112, ConvTranspose2d k{k} s2, batch 4",
                        _Decoder(256, k).eval(), torch.randn(4, 256, 14, 14), nn.ConvTranspose2d))
    for cls in (nn.LSTM, nn.GRU):
        if cls.__name__.lower() not in models:
            continue
        for size_in, hidden, layers, n, t in ((64, 128, 2, 8, 50), (256, 512, 2, 16, 32), (1024, 1024, 1, 32, 16)):
            out.append((f"{cls.__name__} {size_in}->{hidden} x{layers}, batch {n} x {t} steps",
                        _Rnn(cls, size_in, hidden, layers).eval(), torch.randn(n, t, size_in), cls))
    return out


def _torch_static(model: nn.Module, calib: list[torch.Tensor]) -> nn.Module:
    """torch.ao's eager static quantization (x86 engine) of the decoder: quantized Conv2d and
    ConvTranspose2d between a QuantStub and a DeQuantStub."""
    import copy

    import torch.ao.quantization as tq

    torch.backends.quantized.engine = "x86"
    m = nn.Sequential(tq.QuantStub(), copy.deepcopy(model.body), tq.DeQuantStub()).eval()
    m.qconfig = tq.get_default_qconfig("x86")
    for layer in m[1]:
        if isinstance(layer, nn.ConvTranspose2d):  # per-channel weights are not supported for transposed convs
            layer.qconfig = tq.QConfig(activation=m.qconfig.activation, weight=tq.default_weight_observer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tq.prepare(m, inplace=True)
        with torch.no_grad():
            for x in calib:
                m(x)
        tq.convert(m, inplace=True)
    return m


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


def _state_bytes(m: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    return buf.getbuffer().nbytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="encoder,decoder,lstm,gru")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lowbit.set_num_threads(args.threads)
    print(banner())
    rows = []
    for what, model, x, peer_type in _cases(args.models.split(",")):
        calib = [torch.randn_like(x) for _ in range(2)]
        peer_name = "torch static (x86)" if peer_type is nn.ConvTranspose2d else "torch quantize_dynamic"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao's deprecation notice
            peer = torch.ao.quantization.quantize_dynamic(model, {nn.Linear, peer_type}, dtype=torch.qint8)
        if isinstance(model, _Decoder):  # torch's dynamic quantization has no convolution: its static one
            peer = _torch_static(model, calib)
        ours = {f"lowbit {k}": lowbit.quantize_model(model, cfg, calib_data=calib, progress=False)
                for k, cfg in (("int8 dynamic", {}), ("int8 static", {"activation": "static"}),
                               ("int4 g32", {"weight": "int4", "group_size": 32}))}
        for name, q in ours.items():  # every layer quantized: nothing left float but norms and biases
            left = [r["layer"] for r in lowbit.summary(q).rows if r["action"].startswith("float")
                    and "LayerNorm" not in r["action"] and "bias kept float" not in r["action"]]
            assert not left, f"{what}, {name}: left float: {left}"
        encoder = isinstance(model, nn.TransformerEncoder)
        fast = torch.backends.mha.get_fastpath_enabled()
        with torch.no_grad():
            ref = model(x)
            fns = {"float32": lambda: model(x)}
            if encoder:
                fns["float32 (torch fast path)"] = lambda: model(x)
            fns[peer_name] = lambda: peer(x)
            fns.update({k: (lambda q=q: q(x)) for k, q in ours.items()})

            def slow(fn):
                def run():
                    torch.backends.mha.set_fastpath_enabled(False)
                    try:
                        return fn()
                    finally:
                        torch.backends.mha.set_fastpath_enabled(fast)
                return run

            timed = {k: (fn if k == "float32 (torch fast path)" or not encoder else slow(fn)) for k, fn in fns.items()}
            outs = {k: fn() for k, fn in timed.items()}
            times = interleaved(timed, repeat=3 if SMOKE else 9, min_time=0.05, what=what)
        sizes = {"float32": _state_bytes(model), peer_name: _state_bytes(peer)}
        sizes.update({k: lowbit.summary(q).bytes_after for k, q in ours.items()})
        for k in fns:
            rows.append([what, k, format_bytes(sizes.get(k, sizes["float32"])), f"{_cos(outs[k], ref):.5f}",
                         timing_cell(times[k]), speedup_cell(times["float32"], times[k]),
                         speedup_cell(times[peer_name], times[k])])
    print(f"\n## torch layer types without Linear modules, {args.threads} thread(s)")
    print(table(["model", "variant", "size", "cos to float", "latency ms", "vs float32", "vs torch int8"], rows))


if __name__ == "__main__":
    main()
