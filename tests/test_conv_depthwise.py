"""The depthwise convolution kernel (conv2d_depthwise_f32_s8w_f32) against lowbit.reference on every
ISA, grouped and 1-D convolutions through QuantConv2d / QuantConv1d, and proof the best kernel ran."""

from __future__ import annotations

import lowbit
import numpy as np
import pytest
from lowbit import _core
from lowbit.core import reference as R

torch = pytest.importorskip("torch")

OP = "conv2d_depthwise_f32_s8w_f32"


def _calls(isa: str) -> int:
    return dict(dict(_core.kernel_calls()).get(OP, [])).get(isa, 0)


def _run(x, qw, ws, b, k, s, p, d, act, scale, zp, dt, relu):
    c = qw.shape[0]
    return _core.conv2d_depthwise(x, qw.reshape(c, -1), ws, b, *k, *s, *p, *d, scale, zp, dt == "int8", relu, act)


@pytest.mark.parametrize("c", [1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 96])
@pytest.mark.parametrize("k,s,p,d", [((3, 3), (1, 1), (1, 1), (1, 1)), ((3, 3), (2, 2), (1, 1), (1, 1)),
                                     ((5, 3), (1, 2), (2, 0), (2, 1)), ((1, 1), (1, 1), (0, 0), (1, 1))])
def test_depthwise_kernel_is_bit_identical_to_reference(isa, c, k, s, p, d):
    rng = np.random.default_rng(c * 7 + k[0])
    x = rng.standard_normal((2, 9, 7, c)).astype(np.float32) * 2
    x[0, 0, 0, 0] = 1000.0  # saturates at qmax
    x[1, 2, 3, c - 1] = -1000.0
    qw = rng.integers(-128, 128, (c, *k)).astype(np.int8)
    qw[0].flat[0] = -128  # the extremes: 255 * -128 per tap
    ws = (rng.random(c) * 0.01 + 1e-3).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    for act, scale, zp, dt, relu, bias in [("static", 0.03, 0, "uint8", False, b), ("static", 0.02, 255, "uint8", True, b),
                                           ("static", 0.05, -7, "int8", True, None),
                                           ("dynamic_per_tensor", None, 0, "uint8", False, b)]:
        got = _run(x, qw, ws, bias, k, s, p, d, act, scale or 1.0, zp, dt, relu)
        want = R.conv2d_depthwise(x, qw, ws, bias, s, p, d, act, scale, zp, dt, relu)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_array_equal(got, want, err_msg=f"{act} {dt} zp={zp}")


def test_depthwise_kernel_layouts_and_edge_values(isa):
    """NCHW, channels-last and sliced views give the same result; NaN -> zero point, +-inf -> the ends."""
    rng = np.random.default_rng(3)
    c = 35
    base = rng.standard_normal((2, c, 12, 13)).astype(np.float32)
    base[0, 3, 4, 5], base[1, 4, 0, 0], base[0, 34, 11, 12] = np.nan, np.inf, -np.inf
    qw = rng.integers(-127, 128, (c, 3, 3)).astype(np.int8)
    ws = np.full(c, 0.01, np.float32)
    want = R.conv2d_depthwise(np.ascontiguousarray(base.transpose(0, 2, 3, 1)), qw, ws, None, (1, 1), (1, 1), (1, 1),
                              "static", 0.04, 128, "uint8", False)
    views = [base.transpose(0, 2, 3, 1), np.ascontiguousarray(base.transpose(0, 2, 3, 1))]
    big = np.zeros((2, c + 4, 15, 16), np.float32)
    big[:, 1 : c + 1, 3:15, 3:16] = base
    views.append(big[:, 1 : c + 1, 3:15, 3:16].transpose(0, 2, 3, 1))
    for v in views:
        got = _run(v, qw, ws, None, (3, 3), (1, 1), (1, 1), (1, 1), "static", 0.04, 128, "uint8", False)
        np.testing.assert_array_equal(got, want)


def test_depthwise_bad_input():
    x = np.zeros((1, 5, 5, 4), np.float32)
    qw = np.zeros((4, 9), np.int8)
    ws = np.ones(4, np.float32)
    args = (3, 3, 1, 1, 1, 1, 1, 1, 0.1, 0, False, False)
    with pytest.raises(TypeError, match="weight"):
        _core.conv2d_depthwise(x, qw.astype(np.int16), ws, None, *args)
    with pytest.raises(ValueError, match="weight"):
        _core.conv2d_depthwise(x, qw[:3], ws, None, *args)
    with pytest.raises(ValueError, match="scale"):
        _core.conv2d_depthwise(x, qw, np.zeros(4, np.float32), None, *args)
    with pytest.raises(ValueError, match="bias"):
        _core.conv2d_depthwise(x, qw, ws, np.zeros(3, np.float32), *args)
    with pytest.raises(ValueError, match="act_zero_point"):
        _core.conv2d_depthwise(x, qw, ws, None, 3, 3, 1, 1, 1, 1, 1, 1, 0.1, 256, False, False)
    with pytest.raises(ValueError, match="act"):
        _core.conv2d_depthwise(x, qw, ws, None, *args, "dynamic")
    assert _core.conv2d_depthwise(np.zeros((0, 5, 5, 4), np.float32), qw, ws, None, *args).shape == (0, 4)


def test_best_isa_depthwise_kernel_ran():
    best = next(i for i in lowbit.cpu_info()["available"] if i in dict(_core.op_isas())[OP])
    want = {"avx512vnni": "avx512", "amx": "avx512", "avxvnni": "avx2"}.get(best, best)
    want = next(i for i in lowbit.cpu_info()["available"] if i in dict(_core.op_isas())[OP])
    before = _calls(want)
    x = np.ones((1, 4, 4, 40), np.float32)
    _run(x, np.ones((40, 3, 3), np.int8), np.ones(40, np.float32), None, (3, 3), (1, 1), (1, 1), (1, 1), "static",
         0.1, 0, "uint8", False)
    assert _calls(want) > before
    if "avx512" in lowbit.cpu_info()["available"]:
        assert want == "avx512"


# ---- modules


def _conv_out(q, x):
    return q(x).contiguous()


@pytest.mark.parametrize("c,s", [(32, 1), (96, 2), (17, 1)])
def test_quant_conv2d_depthwise_static_matches_reference(c, s):
    from lowbit.nn.conv import _EAGER_CONV

    torch.manual_seed(c)
    conv = torch.nn.Conv2d(c, c, 3, stride=s, padding=1, groups=c)
    q = lowbit.nn.QuantConv2d.from_float(conv, lowbit.QuantConfig(activation="static"), act_qparams=(0.05, 120))
    assert q.depthwise and q._direct_depthwise()
    x = torch.randn(2, c, 11, 10)
    before = _calls("avx512") + _calls("avx2") + _calls("scalar")
    y = q(x)
    assert _calls("avx512") + _calls("avx2") + _calls("scalar") > before and q in _EAGER_CONV
    qw = q.weight_int8.reshape(c, 3, 3).numpy()
    want = R.conv2d_depthwise(x.permute(0, 2, 3, 1).numpy(), qw, q.weight_scale.numpy(), q.bias.numpy(), (s, s),
                              (1, 1), (1, 1), "static", 0.05, 120, "uint8")
    np.testing.assert_array_equal(y.permute(0, 2, 3, 1).reshape(-1, c).numpy(), want)
    assert float((y - conv(x).detach()).abs().max()) < 0.1
    # the torch path (compile/export, other devices) computes the same values
    assert q.dequantized_weight().shape == conv.weight.shape


@pytest.mark.parametrize("act", ["static", "dynamic", "dynamic_per_tensor"])
@pytest.mark.parametrize("groups,cin,cout", [(2, 6, 4), (4, 16, 8), (3, 3, 6)])
def test_quant_conv2d_grouped_equals_per_group_convolutions(act, groups, cin, cout):
    """A grouped QuantConv2d computes exactly what one QuantConv2d per group computes."""
    torch.manual_seed(groups * 10 + cin)
    conv = torch.nn.Conv2d(cin, cout, 3, padding=1, groups=groups)
    cfg = lowbit.QuantConfig(activation=act)
    aq = (0.03, 128) if act == "static" else None
    q = lowbit.nn.QuantConv2d.from_float(conv, cfg, act_qparams=aq)
    x = torch.randn(2, cin, 9, 8)
    y = q(x)
    cg, og = cin // groups, cout // groups
    for g in range(groups):
        part = torch.nn.Conv2d(cg, og, 3, padding=1)
        with torch.no_grad():
            part.weight.copy_(conv.weight[g * og : (g + 1) * og])
            part.bias.copy_(conv.bias[g * og : (g + 1) * og])
        qg = lowbit.nn.QuantConv2d.from_float(part, cfg, act_qparams=aq)
        np.testing.assert_array_equal(y[:, g * og : (g + 1) * og].numpy(), qg(x[:, g * cg : (g + 1) * cg]).numpy())
    assert float((y - conv(x).detach()).abs().max()) < 0.1
    assert "groups=" in repr(q) and q.spec()["groups"] == groups


def test_quant_conv1d_equals_conv2d_with_one_row():
    torch.manual_seed(0)
    c1 = torch.nn.Conv1d(8, 12, 5, stride=2, padding=2, dilation=1, groups=4)
    c2 = torch.nn.Conv2d(8, 12, (1, 5), stride=(1, 2), padding=(0, 2), groups=4)
    with torch.no_grad():
        c2.weight.copy_(c1.weight.unsqueeze(2))
        c2.bias.copy_(c1.bias)
    x = torch.randn(3, 8, 33)
    for act in ("dynamic", "static"):
        cfg = lowbit.QuantConfig(activation=act)
        aq = (0.03, 128) if act == "static" else None
        q1 = lowbit.nn.QuantConv1d.from_float(c1, cfg, act_qparams=aq)
        q2 = lowbit.nn.QuantConv2d.from_float(c2, cfg, act_qparams=aq)
        np.testing.assert_array_equal(q1(x).numpy(), q2(x.unsqueeze(2)).squeeze(2).numpy())
        assert q1(x[0]).shape == (12, 17)
        assert float((q1(x) - c1(x).detach()).abs().max()) < 0.1
    assert q1.dequantized_weight().shape == c1.weight.shape
    with pytest.raises(ValueError, match="expected input"):
        q1(torch.randn(2, 8, 1, 5))


def test_quantize_model_covers_depthwise_grouped_and_conv1d(tmp_path):
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1, groups=16), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 8, 3, padding=1, groups=4), torch.nn.Flatten(), torch.nn.Linear(8 * 36, 4)).eval()
    x = torch.randn(4, 3, 6, 6)
    for act in ("static", "dynamic_per_tensor", "dynamic", None):
        q = lowbit.quantize_model(m, lowbit.QuantConfig(activation=act), calib_data=[x], progress=False)
        assert [type(q[i]).__name__ for i in (0, 2, 4, 6)] == ["QuantConv2d"] * 3 + ["QuantLinear"]
        assert not any(r["action"].startswith("float") for r in lowbit.summary(q).rows)
        assert float((q(x) - m(x).detach()).abs().max()) < 0.15
    lowbit.save(q, tmp_path / "m.safetensors")
    back = lowbit.load(tmp_path / "m.safetensors", m.__class__(*[type(mod)() if not list(mod.parameters()) else mod
                                                                 for mod in m]))
    np.testing.assert_array_equal(back(x).numpy(), q(x).numpy())
    m1 = torch.nn.Sequential(torch.nn.Conv1d(4, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv1d(8, 8, 3, groups=8))
    q1 = lowbit.quantize_model(m1, lowbit.QuantConfig(activation="static"), calib_data=[torch.randn(2, 4, 16)],
                               progress=False)
    assert [type(q1[i]).__name__ for i in (0, 2)] == ["QuantConv1d"] * 2
    lowbit.save(q1, tmp_path / "m1.safetensors")
    back1 = lowbit.load(tmp_path / "m1.safetensors", copy_of(m1))
    z = torch.randn(2, 4, 16)
    np.testing.assert_array_equal(back1(z).numpy(), q1(z).numpy())


def copy_of(m):
    import copy

    return copy.deepcopy(m)


@pytest.mark.parametrize("groups", [8, 2])
def test_torch_op_path_equals_the_eager_kernels(groups):
    """The traced path (torch im2col + lowbit::linear_int8 per group, as under torch.compile) computes
    the eager depthwise kernel's / byte-patch path's values (static activations)."""
    from unittest import mock

    torch.manual_seed(groups)
    conv = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=groups)
    q = lowbit.nn.QuantConv2d.from_float(conv, lowbit.QuantConfig(activation="static"), act_qparams=(0.04, 128))
    x = torch.randn(2, 8, 9, 9)
    eager = q(x)
    with mock.patch("torch.compiler.is_compiling", return_value=True):
        traced = q(x)
    np.testing.assert_array_equal(traced.numpy(), eager.numpy())


@pytest.mark.parametrize("cfg", [dict(weight="int4"), dict(granularity="per_tensor"), dict(weight="fp16"),
                                 dict(weight="nf4", activation="dynamic")])
def test_depthwise_in_other_weight_schemes(cfg):
    """Depthwise layers whose scheme the direct kernel does not take run per group (or dequantized)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
    act = cfg.pop("activation", "static")
    c = lowbit.QuantConfig(activation=act if cfg.get("weight") != "fp16" else None, **cfg)
    try:
        q = lowbit.nn.QuantConv2d.from_float(conv, c, act_qparams=(0.04, 128) if c.activation.calibrated else None)
    except ValueError as e:  # a scheme whose kernel cannot take K = 9 says so
        assert "cannot run" in str(e)
        return
    x = torch.randn(2, 8, 6, 6)
    y = q(x)
    assert float((y - conv(x).detach()).abs().max()) < 0.3
