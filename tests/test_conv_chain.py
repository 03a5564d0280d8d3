"""uint8 activations between chained static convolutions (lowbit.nn.chain): the kernels' uint8
input and output against lowbit.reference on every ISA, chained models equal to unchained ones bit
for bit, and every tool (summary, compare, save/load, deepcopy, QAT convert, ONNX export)."""

from __future__ import annotations

import copy
import math

import lowbit
import numpy as np
import pytest
from lowbit import _core
from lowbit.core import reference as R

torch = pytest.importorskip("torch")
nn = torch.nn

STATIC = lowbit.QuantConfig("int8", "static")
STATIC_S8 = lowbit.QuantConfig("int8", lowbit.StaticActivations(dtype="int8"))


def _bytes(rng, shape, zp):
    q = rng.integers(0, 256, shape).astype(np.uint8)
    q.flat[0], q.flat[-1] = 0, 255
    q.flat[1] = zp
    return q


def _requant(y, scale, zp, lo, hi, signed):
    """The expected uint8 output: the float result clamped then quantized by the reference
    (int8 outputs stored + 128)."""
    with np.errstate(invalid="ignore"):
        c = np.where(np.isnan(y), y, np.clip(y, lo, hi)).astype(np.float32)
    q = R.quantize(c, scale, zp, "int8" if signed else "uint8")
    return (q + (128 if signed else 0)).astype(np.uint8)


@pytest.mark.parametrize("c", [3, 16, 17, 32, 33, 64, 65, 96])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k,relu", [((3, 3), False), ((5, 3), True)])
def test_depthwise_uint8_in_and_out_match_reference(isa, c, stride, k, relu):
    """A uint8 image is read as the quantized image (the float image that quantizes to it gives the
    same result) and a uint8 output is the float output clamped and quantized (the fused
    conv2d_depthwise_u8_s8w_u8 kernel, or the float kernel plus a requantizing pass below VNNI)."""
    rng = np.random.default_rng(c + stride)
    scale, zp = 0.05, 37
    img = _bytes(rng, (2, 9, 7, c), zp)
    xf = ((img.astype(np.float32) - zp) * np.float32(scale)).astype(np.float32)  # dequantized: quantizes back
    qw = rng.integers(-127, 128, (c, *k)).astype(np.int8)
    qw[0].flat[0] = -128
    ws = (rng.random(c) * 0.02 + 1e-3).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    if c == 65:
        b[40] = np.nan  # NaN -> the zero point (the kernels' NaN-free shortcut is off)
    pad = (k[0] // 2, k[1] // 2)
    geo = (*k, stride, stride, *pad, 1, 1, scale, zp, False, relu, "static")
    want = R.conv2d_depthwise(xf, qw, ws, b, (stride, stride), pad, (1, 1), "static", scale, zp, "uint8", relu)
    got = _core.conv2d_depthwise(img, qw.reshape(c, -1), ws, b, *geo)
    np.testing.assert_array_equal(got, want)
    for o_scale, o_zp, signed, lo, hi in [(0.02, 0, False, 0.0, 6.0), (0.01, 128, False, -math.inf, math.inf),
                                          (0.03, -5, True, 0.0, math.inf), (1e-4, 3, False, -1.0, 2.0)]:
        out = (o_scale, o_zp, signed, lo, hi)
        got8 = _core.conv2d_depthwise(img, qw.reshape(c, -1), ws, b, *geo, *out)
        assert got8.dtype == np.uint8 and got8.shape == want.shape
        np.testing.assert_array_equal(got8, _requant(want, o_scale, o_zp, lo, hi, signed), err_msg=str(out))
        got8f = _core.conv2d_depthwise(xf, qw.reshape(c, -1), ws, b, *geo, *out)  # float in, uint8 out
        np.testing.assert_array_equal(got8f, got8)


# 3x3 uint8 kernel paths: whole 64-channel blocks, tails of 1-16 (four pixels per vector), 17-32
# (two) and 33-63 channels (a masked block); images wider than a 32-pixel batch; strides,
# paddings and dilations; the ReLU folded into the clamp (output zero point > 0); outputs too large
# for the int16 epilogue; a NaN bias (the float epilogue).
@pytest.mark.parametrize("c", [1, 16, 17, 32, 48, 64, 80, 96, 144, 176])
@pytest.mark.parametrize("w,stride,pad,dil", [(40, 1, 1, 1), (37, 2, 1, 1), (11, 3, 0, 1), (9, 1, 2, 2), (6, 2, 2, 1)])
def test_depthwise_3x3_uint8_kernel_paths(isa, c, w, stride, pad, dil):
    rng = np.random.default_rng(c * 31 + w)
    scale, zp = 0.04, 21
    img = _bytes(rng, (2, 5, w, c), zp)
    xf = ((img.astype(np.float32) - zp) * np.float32(scale)).astype(np.float32)
    qw = rng.integers(-128, 128, (c, 3, 3)).astype(np.int8)
    qw[-1] = -128  # the largest accumulator: -128 * 255 on every tap
    ws = (rng.random(c) * 0.02 + 1e-3).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    for relu, bias, outs in [
        (False, b, [(0.02, 0, False, 0.0, 6.0), (0.05, 100, False, -math.inf, math.inf), (1e-8, 7, False, -1e9, 1e9)]),
        (True, b, [(0.03, 40, False, -math.inf, math.inf), (0.02, -20, True, 0.0, 3.0)]),
        (True, None, [(0.01, 0, False, -math.inf, math.inf)]),
    ]:
        geo = (3, 3, stride, stride, pad, pad, dil, dil, scale, zp, False, relu, "static")
        want = R.conv2d_depthwise(xf, qw, ws, bias, (stride, stride), (pad, pad), (dil, dil), "static", scale, zp,
                                  "uint8", relu)
        for out in outs:
            got8 = _core.conv2d_depthwise(img, qw.reshape(c, -1), ws, bias, *geo, *out)
            np.testing.assert_array_equal(got8, _requant(want, out[0], out[1], out[3], out[4], out[2]),
                                          err_msg=f"relu={relu} out={out}")
    if c == 80:
        b_nan = b.copy()
        b_nan[70] = np.nan  # NaN -> the zero point
        geo = (3, 3, stride, stride, pad, pad, dil, dil, scale, zp, False, False, "static")
        want = R.conv2d_depthwise(xf, qw, ws, b_nan, (stride, stride), (pad, pad), (dil, dil), "static", scale, zp,
                                  "uint8", False)
        got8 = _core.conv2d_depthwise(img, qw.reshape(c, -1), ws, b_nan, *geo, 0.02, 3, False, -math.inf, math.inf)
        np.testing.assert_array_equal(got8, _requant(want, 0.02, 3, -math.inf, math.inf, False))


def test_depthwise_large_uint8_output_streams_the_same_bytes(isa):
    """A 32-channel uint8 result of 2 MiB or more is written with non-temporal stores: the same
    bytes as the images convolved one at a time (each result below that size)."""
    rng = np.random.default_rng(13)
    img = _bytes(rng, (4, 130, 130, 32), 17)
    qw = rng.integers(-128, 128, (32, 9)).astype(np.int8)
    ws = (rng.random(32) * 0.02 + 1e-3).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    conv = _core.DepthwiseConv(qw, ws, b, 3, 3, 1, 1, 1, 1, 1, 1, 0.04, 17, False, False)
    out = (0.03, 0, False, 0.0, 6.0)
    whole = conv(img, *out)
    assert whole.nbytes >= 2 << 20
    rows = whole.shape[0] // 4
    for i in range(4):
        np.testing.assert_array_equal(whole[i * rows : (i + 1) * rows], conv(img[i : i + 1], *out))


def test_depthwise_conv_prepared_equals_one_call():
    """_core.DepthwiseConv (weights laid out once, what QuantConv2d holds) gives the one-call result
    whatever the previous call's output parameters, keeps its own copy of the weights, and checks
    the image's channels."""
    rng = np.random.default_rng(5)
    c = 144
    img = _bytes(rng, (1, 9, 10, c), 3)
    qw = rng.integers(-128, 128, (c, 9)).astype(np.int8)
    ws = np.full(c, 0.01, np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    args = (3, 3, 1, 1, 1, 1, 1, 1, 0.05, 3, False, True, "static")
    conv = _core.DepthwiseConv(qw, ws, b, *args)
    outs = [(0.03, 5, False, 0.0, 6.0), (0.02, 9, False, -math.inf, math.inf), ()]  # uint8, uint8, float
    want = [_core.conv2d_depthwise(img, qw, ws, b, *args, *out) for out in outs]
    qw[:] = 0  # the prepared copy is unaffected
    b[:] = 0
    for _ in range(2):  # each call's output parameters, not the previous call's (kept per call)
        for out, w in zip(outs, want):
            np.testing.assert_array_equal(conv(img, *out), w)
    with pytest.raises(ValueError, match="channels"):
        conv(img[..., :64].copy(), *out)


@pytest.mark.parametrize("k,cin,cout", [(1, 16, 24), (3, 5, 7), (1, 96, 40), (3, 200, 700)])
def test_conv2d_static_uint8_in_and_out_match_float_path(isa, k, cin, cout):
    """The byte-patch convolution reads a uint8 image and writes uint8 (chunked and, for large
    weights, all-patches paths) exactly as its float path followed by clamping and quantizing."""
    rng = np.random.default_rng(k * cin)
    scale, zp = 0.04, 120
    img = _bytes(rng, (2, 6, 5, cin), zp)
    xf = ((img.astype(np.float32) - zp) * np.float32(scale)).astype(np.float32)
    w = rng.standard_normal((cout, k * k * cin)).astype(np.float32)
    pw = lowbit.pack_weight(w)
    b = rng.standard_normal(cout).astype(np.float32)
    from lowbit.core.matmul import prepare_conv2d_static

    f = prepare_conv2d_static(pw, b, activation_scale=scale, activation_zero_point=zp, kernel_size=(k, k),
                              padding=(k // 2, k // 2))
    want = f(xf)
    np.testing.assert_array_equal(f(img), want)
    for out in [(0.05, 7, False, 0.0, 6.0), (0.02, 0, True, -math.inf, math.inf)]:
        got = f(img, out)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, _requant(want, *out[:2], out[3], out[4], out[2]))
        np.testing.assert_array_equal(f(xf, out), got)


def test_conv2d_static_large_float_output_streams_the_same_values(isa):
    """A float result of 16 MiB or more is written with non-temporal stores: the same values as the
    images convolved one at a time (each result below that size)."""
    rng = np.random.default_rng(11)
    img = _bytes(rng, (2, 184, 184, 3), 9)
    w = rng.standard_normal((64, 7 * 7 * 3)).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    from lowbit.core.matmul import prepare_conv2d_static

    f = prepare_conv2d_static(lowbit.pack_weight(w), b, activation_scale=0.05, activation_zero_point=9,
                              kernel_size=(7, 7), padding=(3, 3))
    both = f(img)
    assert both.nbytes >= 16 << 20
    half = both.shape[0] // 2
    np.testing.assert_array_equal(both[:half], f(img[:1]))
    np.testing.assert_array_equal(both[half:], f(img[1:]))


def test_uint8_image_bad_input():
    qw = np.ones((4, 9), np.int8)
    ws = np.ones(4, np.float32)
    img = np.zeros((1, 5, 5, 4), np.uint8)
    geo = (3, 3, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="act"):
        _core.conv2d_depthwise(img, qw, ws, None, *geo, 1.0, 0, False, False, "dynamic_per_tensor")
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.conv2d_depthwise(np.zeros((1, 5, 4, 5), np.uint8).transpose(0, 1, 3, 2), qw, ws, None, *geo, 1.0, 0,
                               False, False, "static")
    with pytest.raises(ValueError, match="out_zero_point"):
        _core.conv2d_depthwise(img, qw, ws, None, *geo, 1.0, 0, False, False, "static", 0.1, 300)
    with pytest.raises(ValueError, match="out_lo"):
        _core.conv2d_depthwise(img, qw, ws, None, *geo, 1.0, 0, False, False, "static", 0.1, 0, False, 2.0, 1.0)
    with pytest.raises(TypeError, match="x"):
        _core.conv2d_depthwise(img.astype(np.int8), qw, ws, None, *geo, 1.0, 0, False, False, "static")


def _randomize_bn(m: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.copy_(torch.rand(mod.num_features, generator=g) * 0.4 - 0.2)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) * 1.5 + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.rand(mod.num_features, generator=g) * 0.6 - 0.3)
    return m.eval()


def _mobilenet():
    from lowbit.demo.models import DigitsMobileNet

    torch.manual_seed(0)
    return _randomize_bn(DigitsMobileNet(width=16, size=16), 1)


MOBILENET_CHAINS = [(f"blocks.{i}.conv.{j}.0", f"blocks.{i}.conv.{j + 1}.0") for i in range(4) for j in range(2)]


@pytest.mark.parametrize("cfg", [STATIC, STATIC_S8], ids=["uint8", "int8"])
def test_chained_mobilenet_equals_unchained(cfg):
    m = _mobilenet()
    calib = torch.rand(16, 1, 8, 8)
    q = lowbit.quantize_model(m, cfg, calib_data=[calib], progress=False)
    u = lowbit.quantize_model(m, cfg, calib_data=[calib], progress=False, chain_int8=False)
    assert lowbit.nn.chained_layers(q) == MOBILENET_CHAINS  # 1x1 expand -> dw 3x3 -> 1x1 project, per block
    assert lowbit.nn.chained_layers(u) == []
    assert isinstance(q.blocks[0].conv[0][2], lowbit.nn.ChainedActivation)
    x = torch.rand(5, 1, 8, 8) * 1.3  # beyond the calibrated range too
    for xb in (x, x[:1], torch.rand(33, 1, 8, 8)):
        assert torch.equal(q(xb), u(xb))
    with lowbit.nn.unchained():
        assert torch.equal(q(x), u(x))
    # the producer's output is the next layer's quantized input
    y = q.blocks[0].conv[0](q.stem(x))
    assert y.dtype == torch.uint8 and y.is_contiguous(memory_format=torch.channels_last)
    with lowbit.nn.unchained():
        assert q.blocks[0].conv[0](q.stem(x)).dtype == torch.float32
    lowbit.nn.unchain_int8_(q)
    assert lowbit.nn.chained_layers(q) == [] and isinstance(q.blocks[0].conv[0][2], nn.ReLU6)
    assert torch.equal(q(x), u(x))


def test_chained_sequential_patterns_and_resnet():
    """ReLU / Hardtanh / Identity between layers, a depthwise layer, NaN inputs; ResNet's convolutions
    are called from forward() (no Sequential): nothing chained, nothing changed."""
    torch.manual_seed(2)
    m = nn.Sequential(nn.Conv2d(16, 64, 1), nn.BatchNorm2d(64), nn.ReLU6(),
                      nn.Sequential(nn.Conv2d(64, 64, 3, 2, 1, groups=64), nn.ReLU()),
                      nn.Conv2d(64, 24, 1), nn.Hardtanh(-1.0, 2.0), nn.Conv2d(24, 8, 3, padding=1),
                      nn.ReLU(), nn.Flatten(), nn.Linear(8 * 5 * 6, 4))
    m = _randomize_bn(m, 3)
    calib = torch.randn(4, 16, 9, 11)
    q = lowbit.quantize_model(m, STATIC, calib_data=[calib], progress=False)
    u = lowbit.quantize_model(m, STATIC, calib_data=[calib], progress=False, chain_int8=False)
    assert lowbit.nn.chained_layers(q) == [("0", "3.0"), ("3.0", "4"), ("4", "6")]
    x = torch.randn(3, 16, 9, 11) * 2
    x[0, 0, 0, 0], x[1, 2, 3, 4] = float("nan"), float("inf")
    a, b = q(x), u(x)
    assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())

    from lowbit.demo.models import DigitsResNet

    r = _randomize_bn(DigitsResNet(width=8, size=8), 4)
    qr = lowbit.quantize_model(r, STATIC, calib_data=[torch.rand(8, 1, 8, 8)], progress=False)
    assert lowbit.nn.chained_layers(qr) == []


def test_chain_tools_summary_compare_save_load_deepcopy(tmp_path):
    m = _mobilenet()
    calib = torch.rand(16, 1, 8, 8)
    q = lowbit.quantize_model(m, STATIC, calib_data=[calib], progress=False)
    u = lowbit.quantize_model(m, STATIC, calib_data=[calib], progress=False, chain_int8=False)
    x = torch.rand(6, 1, 8, 8)
    actions = {r["layer"]: r["action"] for r in lowbit.summary(q).rows}
    assert "uint8 output to 'blocks.0.conv.1.0'" in actions["blocks.0.conv.0.0"]
    assert "uint8 output" not in actions["blocks.0.conv.2.0"]
    rq = lowbit.compare(m, q, [x], progress=False, timing=False)
    ru = lowbit.compare(m, u, [x], progress=False, timing=False)
    for a, b in zip(rq.layers, ru.layers):
        assert a.name == b.name
        for f in ("output_sqnr", "accumulated_sqnr", "max_abs_error"):
            va, vb = getattr(a, f), getattr(b, f)
            assert va == vb or (math.isnan(va) and math.isnan(vb)), (a.name, f)
    path = tmp_path / "m.safetensors"
    lowbit.save(q, path)
    from lowbit.demo.models import DigitsMobileNet

    q2 = lowbit.load(path, DigitsMobileNet(width=16, size=16))
    assert lowbit.nn.chained_layers(q2) == MOBILENET_CHAINS
    assert torch.equal(q2(x), q(x))
    q3 = copy.deepcopy(q)
    assert q3.blocks[0].conv[0][0].__dict__["_chain_next"] is q3.blocks[0].conv[1][0]
    assert torch.equal(q3(x), q(x))


def test_uint8_input_to_unchained_layer_is_a_type_error():
    m = _mobilenet()
    u = lowbit.quantize_model(m, STATIC, calib_data=[torch.rand(8, 1, 8, 8)], progress=False, chain_int8=False)
    with pytest.raises(TypeError, match="blocks.0.conv.1.0: got a uint8 input"):
        u.blocks[0].conv[1][0](torch.zeros(1, 64, 8, 8, dtype=torch.uint8))
    with pytest.raises(TypeError, match="model"):
        lowbit.nn.chain_int8_("not a model")


def test_qat_convert_chains_and_matches_unchained():
    torch.manual_seed(5)
    m = nn.Sequential(nn.Conv2d(3, 16, 1), nn.ReLU6(), nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU6(),
                      nn.Conv2d(16, 8, 1))
    p = lowbit.prepare_qat(m, STATIC)
    p.train()
    for _ in range(3):
        p(torch.randn(4, 3, 7, 7))
    c = lowbit.convert(p)
    cu = lowbit.convert(p, chain_int8=False)
    assert lowbit.nn.chained_layers(c) == [("0", "2"), ("2", "4")]
    x = torch.randn(2, 3, 7, 7)
    assert torch.equal(c(x), cu(x))


def test_sensitivity_puts_unchained_layers_into_the_float_model():
    """sensitivity swaps one quantized layer at a time into the float model: none may pass uint8 on."""
    torch.manual_seed(6)
    m = nn.Sequential(nn.Conv2d(3, 16, 1), nn.ReLU6(), nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU6(),
                      nn.Conv2d(16, 8, 1), nn.Flatten(), nn.Linear(8 * 36, 4)).eval()
    x = torch.randn(8, 3, 6, 6)
    rows = lowbit.sensitivity(m, [x], STATIC, progress=False).rows
    assert {r["layer"] for r in rows} >= {"0", "2", "4"}
    assert all(math.isfinite(r["score"]) for r in rows)
