"""QuantConfig(weight=...) for every low-bit / float weight format in the torch layer: config
validation, QuantLinear / QuantConv2d storage and numerics against independent NumPy decoding,
error bounds derived from each format, save / load, sizes, torch.compile / export, reports."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import lowbit
import torch.nn.functional as F
from lowbit import metrics
from lowbit.interop import _torch_ops
from lowbit.nn import QuantConv2d, QuantLinear
from torch import nn

# bitsandbytes' NF4 codebook (bitsandbytes/functional.py, get_4bit_type("nf4")), typed in here
# so that decoding does not depend on lowbit's own table.
NF4 = np.array(
    [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
     -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
     0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
     0.7229568362236023, 1.0],
    np.float32,
)
EPS = 2.0**-23

# (id, QuantConfig fields, the kernel that must run it)
CONFIGS = [
    ("int4-channel", dict(weight="int4"), "linear_int8"),
    ("int4-g32-dynamic", dict(weight="int4", group_size=32), "linear_4bit"),
    ("int4-g64-weight-only", dict(weight="int4", group_size=64, activation=None), "linear_4bit"),
    ("int4-g64-zero-point", dict(weight="int4", group_size=64, symmetric_weights=False, activation=None), "dequantize"),
    ("uint4-channel", dict(weight="uint4", symmetric_weights=False), "dequantize"),
    ("uint4-tensor", dict(weight="uint4", granularity="per_tensor", symmetric_weights=False), "dequantize"),
    ("uint4-g32-symmetric", dict(weight="uint4", group_size=32), "dequantize"),
    ("nf4", dict(weight="nf4"), "linear_4bit"),
    ("nf4-g32", dict(weight="nf4", group_size=32), "linear_4bit"),
    ("fp16", dict(weight="fp16"), "dequantize"),
    ("bf16", dict(weight="bf16"), "dequantize"),
    ("log2", dict(weight="log2"), "dequantize"),
    ("log2-8bit", dict(weight="log2", log2_bits=8), "dequantize"),
    ("log2-tensor", dict(weight="log2", granularity="per_tensor"), "dequantize"),
    ("ternary", dict(weight="ternary"), "dequantize"),
    ("ternary-tensor", dict(weight="ternary", granularity="per_tensor"), "dequantize"),
    ("binary", dict(weight="binary"), "dequantize"),
]
IDS = [c[0] for c in CONFIGS]


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(128, 64)
        self.fc2 = nn.Linear(64, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def _mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    m = MLP().eval().requires_grad_(False)
    for lin in (m.fc1, m.fc2):  # trained-weight-like: Gaussian with a few outliers
        nn.init.normal_(lin.weight, std=0.05)
        lin.weight[0, :4] *= 6
    return m


@pytest.fixture
def x():
    return torch.randn(6, 128, generator=torch.Generator().manual_seed(1))


# -- independent decoding of the stored buffers (NumPy, from the documented layouts) --------------


def _unpack4(p: np.ndarray, k: int) -> np.ndarray:
    c = np.stack([p & 15, p >> 4], axis=-1).reshape(p.shape[0], -1)[:, :k]
    return c.astype(np.int32)


def _expand(v: np.ndarray, n: int, k: int, group: int | None) -> np.ndarray:
    """Per channel (n,), per tensor () or per group (n, G) -> broadcastable to (n, k)."""
    v = np.asarray(v)
    if v.ndim == 2:
        return np.repeat(v, group, axis=1)[:, :k]
    return v.reshape(n, 1) if v.ndim == 1 else v


def decode(q: nn.Module, n: int, k: int) -> np.ndarray:
    """The float32 (n, k) weight in the (out, kh * kw * in) order, decoded from q's buffers."""
    d, g = q.weight_dtype, q.group_size
    if d == "fp16":
        return q.weight_fp16.numpy().astype(np.float32)
    if d == "bf16":
        bits = q.weight_bf16.view(torch.int16).numpy().view(np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32)
    s = q.weight_scale.numpy().astype(np.float32)
    if d in ("int8", "int4", "uint4"):
        c = q.weight_int8.numpy().astype(np.int32) if d == "int8" else _unpack4(q.weight_packed.numpy(), k)
        if d == "int4":
            c = (c ^ 8) - 8
        zp = q.weight_zero_point.numpy() if "weight_zero_point" in q.state_dict() else np.zeros_like(s, np.int32)
        return (c - _expand(zp, n, k, g)).astype(np.float32) * _expand(s, n, k, g)
    if d == "nf4":
        return NF4[_unpack4(q.weight_packed.numpy(), k)] * _expand(s, n, k, g)
    codes = q.weight_codes.numpy()
    if d == "log2":
        b = q.log2_bits
        c = _unpack4(codes, k) if b == 4 else codes.astype(np.int32)
        top = 2 ** (b - 1) - 1
        m = c & top
        mag = np.where(m > 0, np.exp2((m - top).astype(np.float64)), 0.0).astype(np.float32)
        sign = np.where(c >> (b - 1), np.float32(-1), np.float32(1))
        return sign * mag * _expand(s, n, k, None)
    if d == "ternary":
        c = np.stack([(codes >> sh) & 3 for sh in (0, 2, 4, 6)], axis=-1).reshape(-1)[: n * k]
        v = np.select([c == 1, c == 2], [1.0, -1.0], 0.0).astype(np.float32)
        return v.reshape(n, k) * _expand(s, n, k, None)
    assert d == "binary"
    bits = np.unpackbits(codes, bitorder="little")[: n * k]
    return (1 - 2 * bits.astype(np.float32)).reshape(n, k) * _expand(s, n, k, None)


# -- per-element weight error each format guarantees, from its definition ------------------------


def _rows(w: np.ndarray, per_channel: bool) -> tuple:
    return (1,) if per_channel else None, w if per_channel else w.reshape(1, -1)


def format_error_bound(q: nn.Module, w: np.ndarray) -> np.ndarray:
    """Largest |dequantized - w| per element that the format allows, computed from w and the
    format's definition (scales recomputed here in NumPy, never read from the layer)."""
    n, k = w.shape
    d, g = q.weight_dtype, q.group_size
    per_channel = q.granularity == "per_channel"
    a = np.abs(w)
    slack = 4 * EPS * (a + a.max()) + 1e-12  # float32 rounding of values and of the scales

    def by_group(fn):
        cols = [fn(w[:, j : j + g]) for j in range(0, k, g)]
        return np.repeat(np.stack(cols, axis=1), g, axis=1)[:, :k]

    def by_row(fn):
        return fn(w).reshape(n, 1) if per_channel else np.full((n, 1), fn(w.reshape(1, -1))[0])

    if d == "fp16":
        return a * 2.0**-11 + 2.0**-25  # round to nearest: half an ulp (subnormal ulp 2**-24)
    if d == "bf16":
        return a * 2.0**-8 + 2.0**-134
    if d in ("int4", "uint4"):
        if g is not None and q.symmetric_weights and d == "int4":
            scale = by_group(lambda b: np.abs(b).max(axis=1) / 7.5)
        elif d == "int4" and g is None:
            scale = by_row(lambda b: np.abs(b).max(axis=1) / 7)
        else:  # affine over [min(lo, 0), max(hi, 0)]; symmetric uint4 spans [-absmax, absmax]
            def span(b):
                lo, hi = np.minimum(b.min(axis=1), 0), np.maximum(b.max(axis=1), 0)
                if q.symmetric_weights:
                    return 2 * np.maximum(-lo, hi) / 15
                return (hi - lo) / 15

            scale = by_group(span) if g is not None else by_row(span)
        return scale / 2 + slack
    if d == "nf4":
        half_gap = np.max(np.diff(NF4)) / 2
        return by_group(lambda b: np.abs(b).max(axis=1)) * half_gap + slack
    if d == "log2":
        top = 2 ** (q.log2_bits - 1) - 1
        clip = by_row(lambda b: np.abs(b).max(axis=1))
        # nearest power of two below the clip: within a third of |w|; below the smallest level
        # (clip * 2**(1 - top)) within half of it
        return np.maximum(a / 3, clip * 2.0 ** -top) + slack
    if d == "ternary":  # TWN: 0 where |w| <= delta = 0.7 mean|w|, else +-mean(|w| > delta)
        delta = by_row(lambda b: 0.7 * np.abs(b).mean(axis=1))
        big = a > delta
        if per_channel:
            mag = (np.where(big, a, 0).sum(1) / big.sum(1)).reshape(n, 1)
        else:
            mag = a[big].mean()
        # at the threshold itself float32 rounding may pick either side
        edge = np.abs(a - delta) <= 1e-6 * delta
        return np.where(edge, np.maximum(a, np.abs(a - mag)), np.where(big, np.abs(a - mag), a)) + slack
    assert d == "binary"
    mag = by_row(lambda b: np.abs(b).mean(axis=1))
    return np.abs(a - mag) + slack


def act_error_term(q: nn.Module, x: torch.Tensor, wq: np.ndarray) -> np.ndarray:
    """Bound of the activation-quantization error: quantized activations (uint8 per row for the
    int8 kernels, symmetric int8 per row and group for the 4-bit kernel) are within half a step of
    x, a step at most max|x_row| / 127."""
    if q.activation is None:
        return np.zeros((x.shape[0], wq.shape[0]))
    step = x.abs().amax(-1, keepdim=True).double().numpy() / 127
    return step / 2 * np.abs(wq).sum(1)[None, :] * 1.001


def layer_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    seen = {}
    hooks = [m.register_forward_pre_hook(lambda m, a, name=name: seen.setdefault(name, a[0]))
             for name, m in model.named_children()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


# -- config ---------------------------------------------------------------------------------------


def test_config_accepts_every_format_and_round_trips():
    for _, fields_, _ in CONFIGS:
        cfg = lowbit.QuantConfig(**fields_)
        assert lowbit.QuantConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    cfg = lowbit.QuantConfig(weight="int4", group_size=128, per_layer={
        "head": {"weight": "int8"}, "attn.*": {"weight": "nf4"}, "mlp": {"weight": "log2", "log2_bits": 8},
        "emb": lowbit.QuantConfig(weight="bf16")})
    assert lowbit.QuantConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    # a per_layer dict that changes the weight keeps group_size only where it applies
    assert (cfg.for_layer("head").weight.name, cfg.for_layer("head").group_size) == ("int8", None)
    assert (cfg.for_layer("attn.q").weight.name, cfg.for_layer("attn.q").group_size) == ("nf4", 128)
    assert cfg.for_layer("mlp").log2_bits == 8 and cfg.for_layer("mlp").group_size is None
    assert cfg.for_layer("other").group_size == 128
    nf4 = lowbit.QuantConfig(weight="nf4")
    assert nf4.group_size == 64 and nf4.weight == lowbit.NF4Weights(group_size=64)
    assert nf4.activation == lowbit.DynamicActivations()
    assert lowbit.QuantConfig(weight="fp16").activation == lowbit.FloatActivations()
    assert lowbit.QuantConfig(weight="int4", group_size=32).activation.name == "dynamic"
    assert [lowbit.QuantConfig(weight=w).weight_bits for w in ("int8", "int4", "nf4", "fp16", "ternary", "binary")] \
        == [8, 4, 4, 16, 2, 1]
    assert lowbit.QuantConfig(weight="log2", log2_bits=8).weight_bits == 8
    # static activations become weight-only when a static model's layer switches to a weight-only format
    static = lowbit.QuantConfig(activation="static", per_layer={"x": {"weight": "fp16"}})
    assert static.for_layer("x").activation.name == "float" and static.for_layer("y").activation.name == "static"


@pytest.mark.parametrize(
    "fields_,field",
    [
        (dict(weight="int3"), "weight"),
        (dict(weight="int8", group_size=64), "group_size"),
        (dict(weight="fp16", group_size=32), "group_size"),
        (dict(weight="int4", group_size=0), "group_size"),
        (dict(weight="nf4", group_size=33), "group_size"),
        (dict(weight="nf4", activation="static"), "activation"),
        (dict(weight="fp16", activation="static"), "activation"),
        (dict(weight="ternary", activation="dynamic_per_tensor"), "activation"),
        (dict(weight="int4", group_size=64, activation="static"), "activation"),
        (dict(weight="int4", group_size=64, granularity="per_tensor"), "granularity"),
        (dict(weight="nf4", granularity="per_tensor"), "granularity"),
        (dict(weight="int4", group_size=64, symmetric_weights=False, activation="dynamic"), "activation"),
        (dict(weight="int4", group_size=48), "group_size"),
        (dict(weight="log2", log2_bits=3), "log2_bits"),
        (dict(per_layer={"fc": {"weight": "bf16", "group_size": 64}}), "per_layer"),
    ],
)
def test_config_rejects_bad_combinations(fields_, field):
    with pytest.raises(ValueError, match=rf"QuantConfig\.{field}"):
        lowbit.QuantConfig(**fields_)


def test_config_rejects_non_int_group_size():
    with pytest.raises(TypeError, match=r"QuantConfig\.group_size"):
        lowbit.QuantConfig(weight="int4", group_size=64.0)
    with pytest.raises(ValueError, match=r"QuantConfig\.activation"):  # also via the module
        QuantLinear(64, 8, weight="nf4", activation="static")


# -- every format through quantize_model ---------------------------------------------------------


@pytest.mark.parametrize("name,fields_,kernel", CONFIGS, ids=IDS)
def test_quantize_model_every_format(name, fields_, kernel, x):
    model = _mlp()
    q = lowbit.quantize_model(model, lowbit.QuantConfig(**fields_))
    inputs = layer_inputs(model, x)
    for lname in ("fc1", "fc2"):
        layer, flt = q.get_submodule(lname), model.get_submodule(lname)
        assert isinstance(layer, QuantLinear) and layer.kernel == kernel
        n, k = flt.weight.shape
        w = flt.weight.numpy()
        wq = decode(layer, n, k)
        # the layer's dequantized weight is exactly what its buffers encode
        assert np.array_equal(layer.dequantized_weight().numpy(), wq)
        # the weight error stays within what the format guarantees
        assert np.all(np.abs(wq - w) <= format_error_bound(layer, w)), name
        h = inputs[lname]
        y = layer(h)
        assert y.shape == (h.shape[0], n) and y.dtype == torch.float32
        ref = F.linear(h, torch.from_numpy(wq), flt.bias)  # independent product, same weight
        if kernel == "dequantize":
            assert torch.equal(y, ref)
        else:  # kernels: float32 sums (lowbit.core.linear_4bit's accuracy contract, whose constants differ
            # between kernel generations: (K / g + 16) or (g + K / g + 2) half-ulps; here both, plus
            # the float32 rounding of ref itself), plus the activation rounding
            absprod = (h.abs() @ torch.from_numpy(np.abs(wq)).T).double().numpy()
            g = layer.group_size or k
            tol = ((g + -(-k // g) + k + 18) * EPS * absprod + 2.0**-23 * np.abs(ref.numpy())
                   + act_error_term(layer, h, wq))
            assert np.all(np.abs((y - ref).numpy()) <= tol + 1e-7), name
        # close to the float layer: |x| @ (weight error bound) + activation rounding
        bound = (h.abs().double().numpy() @ format_error_bound(layer, w).T
                 + act_error_term(layer, h, wq) + 1e-5)
        assert np.all(np.abs((y - flt(h)).numpy()) <= bound), name


def test_group_int4_and_nf4_store_what_pack_weight_stores():
    model = _mlp()
    w = model.fc1.weight.numpy()
    for dtype, g in (("int4", 32), ("int4", 64), ("nf4", 64), ("nf4", 128)):
        q = QuantLinear.from_float(model.fc1, lowbit.QuantConfig(weight=dtype, group_size=g))
        pw = lowbit.pack_weight(w, dtype=dtype, group_size=g)
        assert np.array_equal(q.weight_packed.numpy(), pw.packed_codes())
        assert np.array_equal(q.weight_scale.numpy(), pw.scale)
        assert np.array_equal(q.dequantized_weight().numpy(), pw.dequantize())
    # int4 groups: symmetric codes round(w / (absmax / 7.5)) clamped to [-8, 7], one scale per group
    q = QuantLinear.from_float(model.fc1, lowbit.QuantConfig(weight="int4", group_size=32))
    s = (np.abs(w).reshape(64, 4, 32).max(axis=2) / np.float32(7.5)).astype(np.float32)
    codes = np.clip(np.rint(w * np.repeat(np.float32(1) / s, 32, axis=1)), -8, 7)
    assert np.array_equal(q.weight_scale.numpy(), s)
    assert np.array_equal((_unpack4(q.weight_packed.numpy(), 128) ^ 8) - 8, codes)


def test_half_floats_are_torch_rounding(x):
    model = _mlp()
    for fmt, dt in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        q = QuantLinear.from_float(model.fc1, lowbit.QuantConfig(weight=fmt))
        stored = getattr(q, f"weight_{fmt}")
        assert stored.dtype == dt and torch.equal(stored, model.fc1.weight.to(dt))


def test_half_float_layers_survive_module_dtype_casts(x):
    q = QuantLinear.from_float(_mlp().fc1, lowbit.QuantConfig(weight="bf16"))
    y = q(x)
    q.half()  # casts every floating buffer, the bf16 weight included (exactly: bf16 -> fp16)
    assert q.weight_bf16.dtype == torch.float16
    torch.testing.assert_close(q(x), y, rtol=1e-3, atol=1e-3)


def test_ternary_binary_log2_store_lowbit_quantize_codes():
    model = _mlp()
    w = model.fc1.weight.numpy()
    for fields_ in (dict(weight="ternary"), dict(weight="binary"), dict(weight="log2"),
                    dict(weight="log2", log2_bits=8, granularity="per_tensor")):
        q = QuantLinear.from_float(model.fc1, lowbit.QuantConfig(**fields_))
        opts = {"bits": fields_.get("log2_bits", 4)} if fields_["weight"] == "log2" else {}
        ref = lowbit.quantize(w, dtype=fields_["weight"], per_channel="granularity" not in fields_, **opts)
        assert np.array_equal(q.weight_codes.numpy().reshape(-1), ref.data.reshape(-1))
        assert np.array_equal(q.weight_scale.numpy().reshape(-1), np.asarray(ref.scale, np.float32).reshape(-1))


def test_4bit_sizes_are_half_a_byte_per_weight():
    model = _mlp()
    n, k = model.fc1.weight.shape
    for fields_, scales in ((dict(weight="nf4"), n * k // 64), (dict(weight="int4", group_size=32), n * k // 32),
                            (dict(weight="int4"), n)):
        q = lowbit.quantize_model(model, lowbit.QuantConfig(**fields_))
        sd = q.fc1.state_dict()
        assert sd["weight_packed"].dtype == torch.uint8 and tuple(sd["weight_packed"].shape) == (n, k // 2)
        state = sum(t.numel() * t.element_size() for t in sd.values())
        zp = 4 * n if "weight_zero_point" in sd else 0
        assert state == n * k // 2 + 4 * scales + zp + 4 * n  # codes + scales (+ zero points) + bias
        assert q.fc1.nbytes == state == metrics.model_nbytes(q.fc1)
        rows = {r["layer"]: r for r in lowbit.summary(q).rows}
        assert rows["fc1"]["bytes_after"] == state
        assert lowbit.summary(q).bytes_after == metrics.model_nbytes(q)
    q = lowbit.quantize_model(model, lowbit.QuantConfig(weight="nf4"))
    assert 8 * q.fc1.weight_packed.nbytes / (n * k) == 4.0
    assert 8 * (q.fc1.weight_packed.nbytes + q.fc1.weight_scale.nbytes) / (n * k) == 4.5
    sizes = {w: lowbit.quantize_model(model, lowbit.QuantConfig(weight=w)).fc1.nbytes - 4 * n
             for w in ("binary", "ternary", "fp16")}
    assert sizes == {"binary": n * k // 8 + 4 * n, "ternary": n * k // 4 + 4 * n, "fp16": 2 * n * k}


def test_per_channel_int4_is_packed_and_keeps_its_meaning(x):
    model = _mlp()
    q = QuantLinear.from_float(model.fc1, lowbit.QuantConfig(weight="int4"))
    assert "weight_int8" not in q.state_dict() and q.weight_packed.shape == (64, 64)
    values = q.weight_int8  # unpacked on read
    assert values.dtype == torch.int8 and int(values.abs().max()) == 7
    s = model.fc1.weight.abs().amax(1) / 7
    expect = torch.clamp(torch.round(model.fc1.weight * torch.reciprocal(s)[:, None]), -7, 7)
    assert torch.equal(values.float(), expect)
    # state dicts written before packing (one int8 value per byte) still load
    legacy = {k: v for k, v in q.state_dict().items() if k != "weight_packed"}
    legacy["weight_int8"] = values
    fresh = QuantLinear(128, 64, weight="int4")
    fresh.load_state_dict(legacy)
    assert torch.equal(fresh(x), q(x))


def test_4bit_partial_last_group_runs_on_the_kernel():
    # K = 80 with groups of 64: the last group of each row has 16 inputs and its own scale
    m = nn.Sequential(nn.Linear(80, 16)).eval()
    q = lowbit.quantize_model(m, lowbit.QuantConfig(weight="nf4", activation=None))
    assert isinstance(q[0], QuantLinear) and q[0].kernel == "linear_4bit"
    h = torch.randn(3, 80)
    torch.testing.assert_close(q[0](h), F.linear(h, torch.from_numpy(decode(q[0], 16, 80)), m[0].bias),
                               rtol=1e-4, atol=1e-4)


def test_dequantize_weight_reference_is_bit_identical_to_the_kernels():
    """The torch path used on other devices decodes exactly like lowbit's CPU kernels, also for
    widths that are not multiples of the group or of two."""
    torch.manual_seed(3)
    for k in (80, 77):
        lin = nn.Linear(k, 12).requires_grad_(False)
        nn.init.normal_(lin.weight, std=0.05)
        for _, fields_, _ in CONFIGS:
            cfg = lowbit.QuantConfig(**fields_)
            q = QuantLinear(k, 12, weight=cfg.weight, activation="float")
            q._set_weight(lin.weight)
            stored = (getattr(q, q.scheme.data_name), getattr(q, "weight_scale", None),
                      getattr(q, "weight_zero_point", None))
            got = _torch_ops.dequantize_weight_impl(*stored, q.scheme.key, 12, k)
            want = _torch_ops.dequantize_weight_reference(*stored, q.weight_dtype, 12, k, q.group_size or 0,
                                                          q.weight_bits)
            assert torch.equal(got, want), (k, fields_)
            assert np.array_equal(got.numpy(), decode(q, 12, k)), (k, fields_)
            assert np.all(np.abs(got.numpy() - lin.weight.numpy()) <= format_error_bound(q, lin.weight.numpy()))


def test_linear_4bit_reference_matches_kernel(x):
    model = _mlp()
    for fields_ in (dict(weight="nf4"), dict(weight="int4", group_size=32, activation=None)):
        q = QuantLinear.from_float(model.fc1, lowbit.QuantConfig(**fields_))
        args = (x, q.weight_packed, q.weight_scale, q.bias, q.weight_dtype, q.group_size, "float")
        torch.testing.assert_close(_torch_ops.linear_4bit_impl(*args), _torch_ops.linear_4bit_reference(*args),
                                   rtol=1e-5, atol=1e-5)


# -- conv ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fields_", [dict(weight="nf4"), dict(weight="int4", group_size=32),
                                     dict(weight="log2"), dict(weight="bf16"), dict(weight="uint4", group_size=16)],
                         ids=["nf4", "int4-g32", "log2", "bf16", "uint4-g16"])
def test_quant_conv2d_new_formats(fields_):
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 8, 2, padding=1).eval().requires_grad_(False)  # K = 16 * 2 * 2 = 64
    nn.init.normal_(conv.weight, std=0.05)
    x = torch.randn(2, 16, 7, 6)
    q = QuantConv2d.from_float(conv, lowbit.QuantConfig(**fields_))
    wq = decode(q, 8, 64)  # (out, kh, kw, in) order
    w_khwc = conv.weight.permute(0, 2, 3, 1).reshape(8, 64).numpy()
    assert np.all(np.abs(wq - w_khwc) <= format_error_bound(q, w_khwc))
    w4 = torch.from_numpy(wq).reshape(8, 2, 2, 16).permute(0, 3, 1, 2)
    assert torch.equal(q.dequantized_weight(), w4)
    y = q(x)
    ref = conv._conv_forward(x, w4, conv.bias)
    tol = 1e-5 + (2 * x.abs().max() / 255 * w4.abs().sum((1, 2, 3)).max() if q.activation.quantized else 0)
    assert float((y - ref).abs().max()) <= float(tol)
    assert q.spec()["weight"] == {"format": q.weight_dtype, **dataclasses.asdict(q.scheme)}


def test_summary_lists_formats_and_4bit_convs():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 8))
    q = lowbit.quantize_model(m, lowbit.QuantConfig(weight="nf4", per_layer={"4": {"weight": "ternary"}}))
    rows = {r["layer"]: r for r in lowbit.summary(q).rows}
    assert rows["2"]["action"] == "nf4 weights block 64, dynamic int8 act (per row and group), 4-bit kernel"
    assert rows["4"]["action"] == "ternary weights per_channel, weight-only, dequantized per call"
    assert isinstance(q[0], QuantConv2d) and q[0].kernel == "linear_4bit"  # K = 9: one partial block
    assert rows["0"]["action"].startswith("nf4 weights block 64")
    text = str(lowbit.summary(q))
    assert "nf4 weights block 64" in text


# -- serialization, compile, autograd, reports ---------------------------------------------------


@pytest.mark.parametrize("name,fields_,kernel", CONFIGS, ids=IDS)
def test_save_load_round_trip(tmp_path, name, fields_, kernel, x):
    q = lowbit.quantize_model(_mlp(0), lowbit.QuantConfig(**fields_))
    path = tmp_path / "m.safetensors"
    lowbit.save(q, path)
    loaded = lowbit.load(path, _mlp(5))  # a skeleton with other float weights
    assert isinstance(loaded.fc1, QuantLinear) and loaded.fc1.spec() == q.fc1.spec()
    assert torch.equal(loaded(x), q(x))
    assert str(lowbit.summary(loaded)) == str(lowbit.summary(q))
    assert path.stat().st_size < metrics.model_nbytes(q) + 4096  # the file holds the compact tensors


def test_load_file_written_before_int4_packing(tmp_path, x):
    from safetensors import safe_open
    from safetensors.torch import save_file

    q = lowbit.quantize_model(_mlp(), lowbit.QuantConfig(weight="int4", per_layer={"fc2": {"weight": "int8"}}))
    path = tmp_path / "new.safetensors"
    lowbit.save(q, path)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["lowbit"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    # rewrite it as the older format did: int4 values one per byte, no group_size / log2_bits
    packed = tensors.pop("fc1.weight_packed").numpy()
    tensors["fc1.weight_int8"] = torch.from_numpy(((_unpack4(packed, 128) ^ 8) - 8).astype(np.int8))
    def flat(spec):  # a layer spec / config as files before weight schemes held them
        w, a = spec.pop("weight"), spec.pop("activation")
        spec["weight"] = w["format"]
        spec["activation"] = None if a["mode"] == "float" else a["mode"]
        spec.update(granularity=w["granularity"], symmetric_weights=w["symmetric"], activation_dtype="uint8")

    meta.pop("checksums")  # older files have none
    for spec in meta["layers"].values():
        flat(spec)
    for c in [meta["config"], *meta["config"]["per_layer"].values()]:
        flat(c)
        c.pop("on_unsupported")
        c.update(observer="minmax")
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={"lowbit": json.dumps(meta)})
    loaded = lowbit.load(old, _mlp(9))
    assert torch.equal(loaded(x), q(x)) and loaded.fc1.weight_packed.dtype == torch.uint8


def test_torch_compile_and_export_with_new_formats(x):
    cfg = lowbit.QuantConfig(weight="nf4", per_layer={"fc2": {"weight": "int4", "group_size": 32}})
    q = lowbit.quantize_model(_mlp(), cfg)
    other = lowbit.quantize_model(_mlp(), lowbit.QuantConfig(weight="log2", per_layer={"fc2": {"weight": "bf16"}}))
    for model, ops in ((q, ("lowbit.linear_4bit",)), (other, ("lowbit.dequantize_weight",))):
        torch._dynamo.reset()
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        assert torch.equal(compiled(x), model(x))
        ep = torch.export.export(model, (x,))
        assert all(op in ep.graph_module.code for op in ops)
        assert torch.equal(ep.module()(x), model(x))


def test_opcheck_new_ops(x):
    q = QuantLinear.from_float(_mlp().fc1, lowbit.QuantConfig(weight="nf4"))
    utils = ("test_schema", "test_faketensor", "test_aot_dispatch_static", "test_autograd_registration")
    torch.library.opcheck(torch.ops.lowbit.linear_4bit.default,
                          (x.clone().requires_grad_(), q.weight_packed, q.weight_scale, q.bias, "nf4", 64, "float"),
                          test_utils=utils)
    torch.library.opcheck(torch.ops.lowbit.dequantize_weight.default,
                          (q.weight_packed, q.weight_scale, None, q.scheme.key, 64, 128), test_utils=utils[:3])
    y = torch.ops.lowbit.linear_4bit(torch.empty(2, 5, 128, device="meta"), q.weight_packed.to("meta"),
                                     q.weight_scale.to("meta"), None, "nf4", 64, "float")
    assert y.shape == (2, 5, 64) and y.device.type == "meta"


def test_weight_only_4bit_passes_gradients_and_other_dtypes(x):
    lin = _mlp().fc1
    q = QuantLinear.from_float(lin, lowbit.QuantConfig(weight="nf4", activation=None))
    xg = x.clone().requires_grad_()
    q(xg).square().sum().backward()
    xr = x.clone().requires_grad_()
    F.linear(xr, q.dequantized_weight(), lin.bias).square().sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad, rtol=1e-4, atol=1e-5)
    dyn = QuantLinear.from_float(lin, lowbit.QuantConfig(weight="int4", group_size=64))
    with pytest.raises(RuntimeError, match="no backward.*lowbit.prepare_qat"):  # quantized activations
        dyn(x.clone().requires_grad_()).sum().backward()
    for dt in (torch.float16, torch.bfloat16, torch.float64):
        y = q(x.to(dt))
        assert y.dtype == dt
        torch.testing.assert_close(y.float(), q(x.to(dt).float()), rtol=1e-2, atol=1e-2)
    assert q(torch.randn(0, 128)).shape == (0, 64) and q(torch.randn(2, 3, 128)).shape == (2, 3, 64)


def test_state_dict_reload_rebuilds_the_packed_weight(x):
    a = QuantLinear.from_float(_mlp(0).fc1, lowbit.QuantConfig(weight="int4", group_size=64, activation=None))
    b = QuantLinear.from_float(_mlp(1).fc1, lowbit.QuantConfig(weight="int4", group_size=64, activation=None))
    yb = b(x)  # caches b's packed weight
    b.load_state_dict(a.state_dict())
    assert torch.equal(b(x), a(x)) and not torch.equal(b(x), yb)


def test_extra_repr_and_spec_rebuild_the_layer():
    q = QuantLinear.from_float(_mlp().fc1, lowbit.QuantConfig(weight="log2", log2_bits=8))
    assert "weight=log2 (8-bit) weights per_channel, activation=float" in repr(q)
    kwargs = {k: v for k, v in q.spec().items() if k != "kind"}
    fresh = QuantLinear(**kwargs)
    assert set(fresh.state_dict()) == set(q.state_dict()) == {"weight_codes", "weight_scale", "bias"}
    assert q.weight_codes.shape == (64, 128)


def test_qat_keeps_formats_without_fake_quant_float():
    cfg = lowbit.QuantConfig(weight="nf4", per_layer={"fc2": {"weight": "int4", "group_size": None}},
                             on_unsupported="float")
    with pytest.warns(UserWarning, match="'fc1' stays float: nf4 weights block 64 have no QAT form"):
        qat = lowbit.prepare_qat(_mlp(), cfg)
    assert type(qat.fc1) is nn.Linear and isinstance(qat.fc2, lowbit.nn.QATLinear)
    row = next(r for r in lowbit.summary(qat).rows if r["layer"] == "fc1")
    assert "nf4 weights block 64 have no QAT form" in row["action"]


@pytest.mark.parametrize("activation", ["float", "dynamic"])
def test_qat_int4_groups_train_and_convert_to_what_they_simulated(activation):
    """QAT with symmetric int4 groups (the usual 4-bit format): every group of g inputs of each
    output has its own fake-quant scale; after training, convert stores exactly those codes and
    scales (its dequantized weight equals the fake-quantized one bit for bit) and the int4 model
    computes what the QAT model did (weight-only: up to float rounding; dynamic: plus the
    activations' rounding, which QAT does not simulate). GPT-2's Conv1D (weight (in, out)) too."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), transformers.pytorch_utils.Conv1D(10, 96)).eval()
    x, y = torch.randn(128, 64), torch.randint(0, 10, (128,))
    cfg = lowbit.QuantConfig(weight="int4", group_size=32, activation=activation)
    qat = lowbit.prepare_qat(model, cfg)
    assert isinstance(qat[0], lowbit.nn.QATLinear) and isinstance(qat[2], lowbit.nn.QATLinear)
    opt = torch.optim.Adam(qat.parameters(), lr=1e-3)
    qat.train()
    for _ in range(10):
        loss = nn.functional.cross_entropy(qat(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    qat.eval()
    q = lowbit.convert(qat)
    with torch.no_grad():
        for i in (0, 2):
            assert q[i].weight_scale.shape == (q[i].out_features, q[i].in_features // 32)
            assert torch.equal(q[i].dequantized_weight(), qat[i].fake_quantized_weight())
        ref, got = qat(x), q(x)
    tol = 1e-5 if activation == "float" else 2e-2
    assert float((got - ref).abs().max()) <= tol * float(ref.abs().max())


def test_qat_int4_groups_refuse_what_they_cannot_simulate():
    """int4 groups in QAT: Linear layers whose input size is a multiple of group_size; others raise
    (or stay float with on_unsupported='float') and the model is left unchanged."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 8), nn.Linear(8, 48))
    with pytest.raises(ValueError, match="multiple of group_size"):
        lowbit.prepare_qat(model, lowbit.QuantConfig(weight="int4", group_size=32, exclude=["0", "2"]))
    with pytest.raises(ValueError, match="Linear layers whose input size"):
        lowbit.prepare_qat(model, lowbit.QuantConfig(weight="int4", group_size=32, exclude=["2", "3"]))
    with pytest.warns(UserWarning, match="stays float: QAT with int4 groups") as seen:
        qat = lowbit.prepare_qat(model, lowbit.QuantConfig(weight="int4", group_size=32, on_unsupported="float"))
    assert sorted(str(w.message).split("'")[1] for w in seen) == ["0", "3"]
    assert isinstance(qat[2], lowbit.nn.QATLinear) and type(qat[3]) is nn.Linear and type(qat[0]) is nn.Conv2d
    assert type(model[2]) is nn.Linear


def test_report_bits_and_bytes_per_layer(x):
    model = _mlp()
    q = lowbit.quantize_model(model, lowbit.QuantConfig(weight="nf4", per_layer={"fc2": {"weight": "ternary"}}))
    r = lowbit.compare(model, q, x, progress=False, timing=False)
    fc1, fc2 = r.layers
    assert (fc1.weight, fc1.bits, fc1.granularity, fc1.group_size) == ("nf4", 4, "per_block", 64)
    assert (fc2.weight, fc2.bits, fc2.granularity) == ("ternary", 2, "per_channel")
    assert fc1.bytes_after == metrics.model_nbytes(q.fc1) == 64 * 128 // 2 + 4 * 64 * 2 + 4 * 64
    assert "4 g64" in r.summary() and "2 ch" in r.summary()
    assert r.bytes_quant == metrics.model_nbytes(q) == lowbit.summary(q).bytes_after


def test_mixed_precision_accepts_new_formats(x):
    model = _mlp()
    data = [x, x * 0.5]
    s = lowbit.sensitivity(model, data, {"weight": "nf4"}, progress=False)
    assert {r["weight"] for r in s.rows} == {"nf4"} and len(s.rows) == 2
    res = lowbit.auto_mixed_precision(model, data, candidates=("ternary", "nf4", "fp16"),
                                      config={"weight": "int4", "group_size": 32}, max_drop=0.05,
                                      progress=False, timing=False)
    assert set(res.choice.values()) <= {"ternary", "nf4", "fp16"}
    assert 100 - 100 * res.report.output_cosine <= 0.05 + 1e-9
    rebuilt = lowbit.quantize_model(model, res.config)
    assert torch.equal(rebuilt(x), res.model(x))
    for name, c in res.choice.items():
        layer = res.model.get_submodule(name)
        assert layer.weight_dtype == c
        if c == "nf4":
            assert layer.group_size == 32  # the config's group size applies to nf4 candidates
    with pytest.raises(ValueError, match="candidates"):
        lowbit.auto_mixed_precision(model, data, candidates=("int2",), max_drop=1)


def test_config_is_frozen_dataclass_with_new_fields():
    cfg = lowbit.QuantConfig(weight="int4", group_size=64)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.group_size = 32
    assert cfg.with_weight("int8") == lowbit.QuantConfig(weight="int8")
    assert cfg.with_weight("nf4").weight_group_size == 64
