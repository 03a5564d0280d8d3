"""Quantized 3x3 / 7x7 convolutions (ResNet-like shapes) against float32 and PyTorch's quantized
convolution, side by side in one run.

lowbit variants: QuantConv2d with per-row dynamic activations (the "dynamic" default: every patch
row quantized on its own), per-tensor dynamic activations and static (calibrated) activations;
the last two quantize the image once and build the patches from its bytes. Peer: torch.ao's
quantized Conv2d (static, per-channel weights) for each quantized engine that runs here, timed
as quantize_per_tensor -> qconv -> dequantize so that float goes in and float comes out, as with
lowbit (torch's output is also requantized to int8, lowbit's stays float32; its default x86 /
onednn observer is a histogram that clips outliers). Every variant is checked against the float32
output: relative L2 error ||y - y_f32|| / ||y_f32||.

Depthwise 3x3 convolutions of MobileNetV2 (``DW_SHAPES``; ``--depthwise`` runs only those): float32
(NCHW and channels-last input) against lowbit's depthwise kernel with static and per-tensor dynamic
activations (float in, float out), and static chained (uint8 in, uint8 out: the layer inside a
chained static MobileNetV2 block, its ReLU6 fused; error against float on the dequantized input).

Usage: python benchmarks/bench_conv.py [--threads N] [--batch N] [--rounds R] [--depthwise] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lowbit  # noqa: E402
from _common import banner, speedup_cell, table, timing_cell  # noqa: E402
from bench_models import interleaved_times  # noqa: E402

SHAPES = [  # (channels in, size, channels out, kernel, stride)
    (3, 224, 64, 7, 2),
    (64, 56, 64, 3, 1),
    (128, 28, 128, 3, 1),
    (256, 14, 256, 3, 1),
    (512, 7, 512, 3, 1),
]

DW_SHAPES = [  # MobileNetV2's depthwise 3x3 layers: (channels, input size, stride)
    (32, 112, 1),
    (96, 112, 2),
    (144, 56, 1),
    (144, 56, 2),
    (192, 28, 1),
    (384, 14, 1),
    (576, 14, 1),
    (960, 7, 1),
]


def _dw_block(conv: torch.nn.Conv2d, batch: int, hw: int) -> tuple:
    """``conv`` inside a static int8 MobileNetV2 block (1x1 expand, ReLU6, conv, ReLU6, 1x1
    project), chained: the depthwise layer's uint8 input (what the expand layer writes), the layer,
    and a function that dequantizes its uint8 output (in the project layer's input quantization)."""
    c = conv.in_channels
    cin = max(8, c // 6)
    torch.manual_seed(1)
    block = torch.nn.Sequential(torch.nn.Conv2d(cin, c, 1), torch.nn.ReLU6(), conv, torch.nn.ReLU6(),
                                torch.nn.Conv2d(c, 32, 1)).eval()
    xb = torch.rand(batch, cin, hw, hw) * 2 - 0.5
    q = lowbit.quantize_model(block, lowbit.QuantConfig(activation="static"), calib_data=[xb], progress=False)
    assert lowbit.nn.chained_layers(q) == [("0", "2"), ("2", "4")]
    with torch.no_grad():
        u8 = q[0](xb)
    dw, nxt = q[2], q[4]

    def deq(t: torch.Tensor, m: torch.nn.Module) -> torch.Tensor:
        return (t.to(torch.int32) - int(m.act_zero_point)).to(torch.float32) * float(m.act_scale)

    return u8, dw, deq(u8, dw), lambda y: deq(y, nxt)


def bench_depthwise(batch: int, rounds: int) -> list[list[str]]:
    """Depthwise int8 (lowbit's direct kernel) against float32 on MobileNetV2's shapes: float in and
    out (a layer alone), and uint8 in and out as the layer runs inside a chained static model."""
    rows = []
    torch.manual_seed(0)
    for c, hw, s in DW_SHAPES:
        conv = torch.nn.Conv2d(c, c, 3, stride=s, padding=1, groups=c).eval()
        x = torch.nn.functional.relu6(torch.randn(batch, c, hw, hw) * 2)
        xcl = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            ref = conv(x)
        seq = torch.nn.Sequential(conv)
        st = lowbit.quantize_model(seq, lowbit.QuantConfig(activation="static"), calib_data=[x], progress=False)
        dy = lowbit.quantize_model(seq, lowbit.QuantConfig(activation="dynamic_per_tensor"), progress=False)
        u8, dw, x_dw, deq_out = _dw_block(conv, batch, hw)
        with torch.no_grad():
            ref_dw = torch.nn.functional.relu6(conv(x_dw))  # the chained layer's float reference (its ReLU6 fused)
        chained = "lowbit static int8 chained (uint8 in -> uint8 out)"
        fns = {"float32 (NCHW)": lambda: conv(x), "float32 (channels-last)": lambda: conv(xcl),
               "lowbit static int8": lambda: st(xcl), "lowbit dynamic per-tensor int8": lambda: dy(xcl),
               chained: lambda: dw(u8)}
        with torch.no_grad():
            err = {n: float((f() - ref).norm() / ref.norm()) for n, f in fns.items() if n != chained}
            y8 = dw(u8)
            assert y8.dtype == torch.uint8
            err[chained] = float((deq_out(y8) - ref_dw).norm() / ref_dw.norm())
            t = interleaved_times(fns, dict.fromkeys(fns, ""), rounds, 0.2)
        best_f = min(("float32 (NCHW)", "float32 (channels-last)"), key=lambda n: t[n].median)
        for name in fns:
            rows.append([f"{batch}x{c}x{hw}x{hw} dw3x3 s{s}", name, timing_cell(t[name]), speedup_cell(t[best_f], t[name]),
                         "-", f"{err[name]:.4f}"])
    return rows


def torch_static(conv: torch.nn.Conv2d, x: torch.Tensor, engine: str) -> torch.nn.Module:
    """torch.ao eager static quantization of one convolution (per-channel weights, histogram-free
    MinMax activation observer calibrated on x)."""
    from torch.ao import quantization as tq

    torch.backends.quantized.engine = engine
    m = torch.nn.Sequential(tq.QuantStub(), torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                                            stride=conv.stride, padding=conv.padding), tq.DeQuantStub())
    m[1].load_state_dict(conv.state_dict())
    m.eval()
    m.qconfig = tq.get_default_qconfig(engine)
    tq.prepare(m, inplace=True)
    m(x)
    tq.convert(m, inplace=True)
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="torch and lowbit threads (0: all cores)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--depthwise", action="store_true", help="only the depthwise shapes")
    ap.add_argument("--out", help="also write the table to this Markdown file")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
        lowbit.set_num_threads(args.threads)
    print(banner() + f" | torch threads {torch.get_num_threads()}")
    engines = [e for e in torch.backends.quantized.supported_engines if e in ("x86", "fbgemm", "onednn")]
    rows = []
    torch.manual_seed(0)
    for c, hw, o, k, s in [] if args.depthwise else SHAPES:
        conv = torch.nn.Conv2d(c, o, k, stride=s, padding=k // 2).eval()
        x = torch.relu(torch.randn(args.batch, c, hw, hw))
        with torch.no_grad():
            ref = conv(x)
        seq = torch.nn.Sequential(conv)
        variants = {
            "float32": (seq, ""),
            "lowbit dynamic (per row)": (lowbit.quantize_model(seq, progress=False), ""),
            "lowbit dynamic per-tensor": (
                lowbit.quantize_model(seq, lowbit.QuantConfig(activation="dynamic_per_tensor"), progress=False), ""),
            "lowbit static": (
                lowbit.quantize_model(seq, lowbit.QuantConfig(activation="static"), calib_data=[x], progress=False), ""),
        }
        for eng in engines:
            try:
                variants[f"torch static ({eng})"] = (torch_static(conv, x, eng), eng)
            except Exception as e:  # an engine that does not run here is reported, not fatal
                print(f"torch static ({eng}): {type(e).__name__}: {e}")
        err = {}
        with torch.no_grad():
            for name, (m, eng) in variants.items():
                if eng:
                    torch.backends.quantized.engine = eng
                err[name] = float((m(x) - ref).norm() / ref.norm())
            t = interleaved_times({n: (lambda m=m: m(x)) for n, (m, _) in variants.items()},
                                  {n: e for n, (_, e) in variants.items()}, args.rounds, 0.2)
        peer = min((n for n in t if n.startswith("torch static")), key=lambda n: t[n].median, default=None)
        for name in variants:
            rows.append([f"{args.batch}x{c}x{hw}x{hw} k{k} s{s} -> {o}", name, timing_cell(t[name]),
                         speedup_cell(t["float32"], t[name]), speedup_cell(t[peer], t[name]) if peer else "-",
                         f"{err[name]:.4f}"])
    rows += bench_depthwise(args.batch, args.rounds)
    out = table(["conv (N x C x H x W)", "variant", "ms (median ± half IQR)", "vs float32 (range)",
                 "vs best torch static (range)", "rel L2 err"], rows)
    print(out)
    if args.out:
        with open(args.out, "w") as f:
            f.write(banner() + "\n\n" + out + "\n")


if __name__ == "__main__":
    main()
