"""lowbit.nn: QuantLinear, QuantConv2d, FakeQuantize against torch float layers and references."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import lowbit
import torch.nn.functional as F
from lowbit.interop import _torch_ops
from lowbit.nn import FakeQuantize, QuantConv2d, QuantLinear


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _bound(x: torch.Tensor, q: torch.nn.Module) -> float:
    """Error bound of a quantized linear map: activation step * sum|w| + weight step * sum|x|."""
    w = q.dequantized_weight()
    step_x = float(x.abs().max()) * 2 / 255
    return step_x * float(w.abs().sum(1).max()) + float(q.weight_scale.max()) * float(
        x.abs().sum(-1).max()
    )


@pytest.mark.parametrize("act", ["dynamic", "dynamic_per_tensor", "static", None])
@pytest.mark.parametrize("weight", ["int8", "int4"])
@pytest.mark.parametrize("shape", [(1, 16), (7, 57), (2, 3, 33)])
def test_quant_linear_close_to_float(act, weight, shape):
    k = shape[-1]
    lin = torch.nn.Linear(k, 9).requires_grad_(False)
    x = torch.randn(*shape)
    cfg = lowbit.QuantConfig(weight=weight, activation=act)
    q = QuantLinear.from_float(
        lin, cfg, act_qparams=lowbit.choose_qparams(float(x.min()), float(x.max()), dtype="uint8")
    )
    y = q(x)
    assert y.shape == (*shape[:-1], 9) and y.dtype == torch.float32 and not y.requires_grad
    ref = F.linear(x, q.dequantized_weight(), lin.bias)  # exact weights: only activation error left
    assert float((y - lin(x)).abs().max()) <= _bound(x, q)
    if act is None:
        torch.testing.assert_close(y, ref)
    else:
        assert float((y - ref).abs().max()) <= float(x.abs().max()) * 2 / 255 * float(
            q.dequantized_weight().abs().sum(1).max()
        )


@pytest.mark.parametrize(
    "act,act_dtype,zp",
    [
        ("dynamic", "uint8", 0),
        ("dynamic_per_tensor", "uint8", 0),
        ("static", "uint8", 128),
        ("static", "int8", -3),
    ],
)
@pytest.mark.parametrize("weight", ["int8", "int4"])
def test_quant_linear_kernel_matches_torch_reference(act, act_dtype, zp, weight):
    """The CPU kernel path and the torch path used on other devices are bit-identical."""
    lin = torch.nn.Linear(40, 12)
    x = torch.randn(2, 5, 40) * 3
    x[0, 1, 2] = float("nan")
    x[1, 0, :3] = torch.tensor([float("inf"), -float("inf"), 1e6])
    cfg = lowbit.QuantConfig(activation=act, activation_dtype=act_dtype, weight=weight)
    q = QuantLinear.from_float(lin, cfg, act_qparams=(0.02, zp))
    args = (
        x,
        q.weight_int8,
        q.weight_scale,
        q.weight_zero_point,
        q.bias,
        q.act_scale,
        q.act_zero_point,
        act,
        act_dtype,
    )
    y_kernel = _torch_ops.linear_int8_impl(*args)
    y_ref = _torch_ops.linear_int8_reference(*args)
    assert torch.equal(y_kernel, y_ref)


def test_quant_linear_weights_match_lowbit_quantize():
    lin = torch.nn.Linear(32, 8)
    q = QuantLinear.from_float(lin)
    scale = lin.weight.detach().abs().amax(1) / 127
    expect = lowbit.quantize(
        lin.weight.detach(), scale.numpy(), np.zeros(8, np.int32), axis=0
    ).int_repr()
    assert np.array_equal(q.weight_int8.numpy(), expect)
    assert int(q.weight_int8.abs().max()) == 127


def test_quant_linear_input_handling():
    lin = torch.nn.Linear(16, 4)
    q = QuantLinear.from_float(lin)
    x = torch.randn(6, 32)[:, ::2]  # non-contiguous
    assert not x.is_contiguous()
    torch.testing.assert_close(q(x), q(x.contiguous()))
    for dt in (torch.float16, torch.bfloat16, torch.float64):
        y = q(x.to(dt))
        assert y.dtype == dt
        torch.testing.assert_close(y.float(), q(x.to(dt).float()), rtol=1e-2, atol=1e-2)
    y = q(x.requires_grad_())
    with pytest.raises(RuntimeError, match="no backward.*lowbit.prepare_qat"):
        y.sum().backward()
    assert q(torch.randn(0, 16)).shape == (0, 4)
    with pytest.raises(TypeError, match="floating-point"):
        q(torch.ones(2, 16, dtype=torch.int32))
    with pytest.raises(TypeError, match="torch.Tensor"):
        q(np.ones((2, 16), np.float32))
    with pytest.raises(ValueError, match="last dimension 16"):
        q(torch.randn(2, 15))


def test_quant_linear_nan_input_follows_quantize_contract():
    q = QuantLinear.from_float(
        torch.nn.Linear(8, 3), lowbit.QuantConfig(activation="static"), act_qparams=(0.05, 128)
    )
    x = torch.randn(2, 8)
    x_nan = x.clone()
    x_nan[0, 3] = float("nan")
    x_zero = x.clone()
    x_zero[0, 3] = 0.0
    torch.testing.assert_close(q(x_nan), q(x_zero))


def test_quant_linear_state_dict_round_trip():
    q = QuantLinear.from_float(
        torch.nn.Linear(24, 6), lowbit.QuantConfig(activation="static"), act_qparams=(0.03, 120)
    )
    fresh = QuantLinear(24, 6, activation="static")
    x = torch.randn(3, 24)
    y_before = fresh(x)
    fresh.load_state_dict(q.state_dict())
    assert torch.equal(fresh(x), q(x)) and not torch.equal(y_before, q(x))
    assert set(q.state_dict()) == {
        "weight_int8",
        "weight_scale",
        "weight_zero_point",
        "bias",
        "act_scale",
        "act_zero_point",
    }


def test_in_place_weight_change_repacks():
    q = QuantLinear.from_float(torch.nn.Linear(16, 4))
    x = torch.randn(2, 16)
    y0 = q(x)
    with torch.no_grad():
        q.weight_int8.neg_()
    torch.testing.assert_close(q(x), -y0 + 2 * q.bias, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kw",
    [
        dict(kernel_size=3, padding=1),
        dict(kernel_size=3, stride=2),
        dict(kernel_size=(3, 1), padding=(1, 0), dilation=(2, 1)),
        dict(kernel_size=1),
        dict(kernel_size=1, stride=2),
        dict(kernel_size=3, padding=2, padding_mode="reflect"),
        dict(kernel_size=3, padding="same", bias=False),
    ],
)
@pytest.mark.parametrize("act", ["dynamic", "static", None])
def test_quant_conv2d_matches_dequantized_conv(kw, act):
    conv = torch.nn.Conv2d(5, 7, **kw).requires_grad_(False)
    x = torch.randn(2, 5, 9, 10)
    q = QuantConv2d.from_float(
        conv,
        lowbit.QuantConfig(activation=act),
        act_qparams=lowbit.choose_qparams(float(x.min()), float(x.max()), dtype="uint8"),
    )
    ref = conv._conv_forward(x, q.dequantized_weight(), conv.bias)
    y = q(x)
    assert y.shape == conv(x).shape
    # only the activation rounding differs from the dequantized-weight conv
    w_l1 = float(q.dequantized_weight().flatten(1).abs().sum(1).max())
    assert float((y - ref).abs().max()) <= float(x.abs().max()) * 2 / 255 * w_l1 + 1e-5
    torch.testing.assert_close(q(x[0]), y[0], rtol=1e-5, atol=1e-5)  # unbatched


def test_quant_conv2d_rejects_bad_input():
    q = QuantConv2d.from_float(torch.nn.Conv2d(3, 4, 3))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        q(torch.randn(1, 4, 8, 8))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        q(torch.randn(1, 3, 2, 2))
    assert QuantConv2d.from_float(torch.nn.Conv2d(3, 3, 3, groups=3)).depthwise
    with pytest.raises(ValueError, match="groups=2"):
        QuantConv2d(3, 4, 3, groups=2)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int4", "uint4"])
def test_fake_quantize_matches_lowbit_and_torch(dtype):
    x = torch.randn(4, 33) * 3
    x[0, 0] = float("nan")
    fq = FakeQuantize(dtype)
    y = fq(x)
    s, z = float(fq.scale), int(fq.zero_point)
    assert np.array_equal(
        y.numpy(), lowbit.fake_quantize(x.numpy(), s, z, dtype=dtype), equal_nan=True
    )
    qmin, qmax = lowbit.qrange(dtype)
    xt = torch.nan_to_num(
        x, nan=s * (0 - 0)
    )  # torch's op maps NaN elsewhere; compare finite inputs
    assert torch.equal(y[1:], torch.fake_quantize_per_tensor_affine(xt, s, z, qmin, qmax)[1:])
    torch.testing.assert_close(
        _torch_ops.fake_quantize_reference(x, fq.scale, fq.zero_point, dtype, None), y
    )


def test_fake_quantize_per_channel_and_ste_gradient():
    w = (torch.randn(6, 10) * torch.arange(1, 7)[:, None]).requires_grad_()
    fq = FakeQuantize("int8", symmetric=True, axis=0, channels=6, averaging_constant=1.0)
    y = fq(w)
    assert torch.equal(
        y, torch.fake_quantize_per_channel_affine(w, fq.scale, fq.zero_point, 0, -128, 127)
    )
    y.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))  # symmetric range covers w: all inside
    x = torch.tensor([-2.0, 0.0, 0.5, 3.0], requires_grad=True)
    fq2 = FakeQuantize("uint8")
    fq2.observe(torch.tensor([-1.0, 1.0]))
    fq2.eval()
    fq2(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]  # clipped straight-through estimator


def test_fake_quantize_lsq_gradient_matches_torch():
    x = (torch.randn(64) * 2).requires_grad_()
    fq = FakeQuantize("uint8", learnable=True)
    fq.observe(x[:8])  # initialise the scale from a partial range so that some values clip
    fq.eval()
    y = fq(x)
    (y * torch.linspace(-1, 1, 64)).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    s2 = fq.scale.detach().clone().reshape(1).requires_grad_()
    grad_factor = 1.0 / (64 * 255) ** 0.5
    y2 = torch._fake_quantize_learnable_per_tensor_affine(
        x2, s2, fq.zero_point.float().reshape(1), 0, 255, grad_factor
    )
    (y2 * torch.linspace(-1, 1, 64)).sum().backward()
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(fq.scale.grad.reshape(1), s2.grad, rtol=1e-4, atol=1e-6)


def test_fake_quantize_range_frozen_in_eval():
    fq = FakeQuantize("uint8", averaging_constant=0.5)
    fq(torch.tensor([-1.0, 1.0]))
    fq(torch.tensor([-3.0, 3.0]))
    assert float(fq.min_val) == -2.0 and float(fq.max_val) == 2.0
    fq.eval()
    fq(torch.tensor([-10.0, 10.0]))
    assert float(fq.max_val) == 2.0
    lowbit.nn.disable_observer(fq).train()
    fq(torch.tensor([-10.0, 10.0]))
    assert float(fq.max_val) == 2.0
    with pytest.raises(TypeError, match="floating-point"):
        fq(torch.ones(3, dtype=torch.int64))


@pytest.mark.parametrize("cfg", [{}, {"activation": "static"}, {"weight": "int4", "group_size": 32},
                                 {"weight": "nf4", "group_size": 32}])
def test_eager_call_cache_follows_buffer_changes(cfg):
    """QuantLinear prepares its eager CPU call once; in-place edits and load_state_dict must reach it."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 8)
    config = lowbit.QuantConfig(**cfg)
    act = (0.05, 128) if config.activation.name == "static" else None
    q = lowbit.nn.QuantLinear.from_float(lin, config, act_qparams=act)
    x = torch.randn(5, 64)
    y0 = q(x)
    with torch.no_grad():
        q.bias.add_(1.0)
    torch.testing.assert_close(q(x), y0 + 1.0, rtol=0, atol=1e-5)
    other = lowbit.nn.QuantLinear.from_float(torch.nn.Linear(64, 8), config, act_qparams=act)
    q.load_state_dict(other.state_dict())
    torch.testing.assert_close(q(x), other(x), rtol=0, atol=0)
    if config.activation == "static":
        with torch.no_grad():
            q.act_scale.fill_(0.1)
        assert not torch.equal(q(x), other(x))
