"""lowbit's im2col (the patches QuantConv2d multiplies) against torch's F.unfold, for any
geometry and input layout, and its bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from lowbit import _core

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("n,c,h,w", [(2, 1, 8, 8), (1, 3, 7, 5), (3, 16, 6, 9), (1, 4, 1, 1)])
@pytest.mark.parametrize("k,s,p,d", [((3, 3), (1, 1), (1, 1), (1, 1)), ((1, 1), (2, 2), (0, 0), (1, 1)),
                                     ((2, 3), (2, 1), (0, 2), (1, 2)), ((3, 1), (1, 3), (2, 0), (2, 1))])
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "sliced"])
def test_im2col_matches_unfold(n, c, h, w, k, s, p, d, layout):
    g = torch.Generator().manual_seed(n * 100 + c)
    x = torch.randn(n, c, h + 3, w + 2, generator=g)[:, :, 1 : h + 1, 2 : w + 2] if layout == "sliced" else \
        torch.randn(n, c, h, w, generator=g)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    ho = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    wo = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    if ho <= 0 or wo <= 0:
        with pytest.raises(ValueError, match="smaller"):
            _core.im2col(x.permute(0, 2, 3, 1).numpy(), *k, *s, *p, *d)
        return
    got = _core.im2col(x.permute(0, 2, 3, 1).numpy(), *k, *s, *p, *d)
    # unfold gives (n, c * kh * kw, L) in (c, kh, kw) order; lowbit's rows are (kh, kw, c)
    want = F.unfold(x, k, dilation=d, padding=p, stride=s).reshape(n, c, k[0], k[1], ho * wo)
    want = want.permute(0, 4, 2, 3, 1).reshape(n * ho * wo, k[0] * k[1] * c).numpy()
    np.testing.assert_array_equal(got, want)


def test_im2col_bad_input():
    x = np.zeros((1, 4, 4, 2), np.float32)
    with pytest.raises(TypeError, match="x"):
        _core.im2col(x.astype(np.float64), 3, 3, 1, 1, 1, 1, 1, 1)
    with pytest.raises(TypeError, match="x"):
        _core.im2col(x[0], 3, 3, 1, 1, 1, 1, 1, 1)
    for args, name in [((0, 3, 1, 1, 1, 1, 1, 1), "kernel"), ((3, 3, 0, 1, 1, 1, 1, 1), "stride"),
                       ((3, 3, 1, 1, -1, 1, 1, 1), "padding"), ((3, 3, 1, 1, 1, 1, 0, 1), "dilation"),
                       ((5, 5, 1, 1, 0, 0, 1, 1), "smaller")]:
        with pytest.raises(ValueError, match=name):
            _core.im2col(x, *args)
    assert _core.im2col(np.zeros((0, 4, 4, 2), np.float32), 3, 3, 1, 1, 1, 1, 1, 1).shape == (0, 18)
    # an empty image with padding: all patches are padding
    np.testing.assert_array_equal(_core.im2col(np.zeros((2, 0, 0, 3), np.float32), 1, 1, 1, 1, 1, 1, 1, 1),
                                  np.zeros((2 * 2 * 2, 3), np.float32))


@pytest.mark.parametrize("c,k,s,p,d,hw", [(1, (3, 3), (1, 1), (1, 1), (1, 1), (7, 6)),
                                          (16, (3, 3), (2, 2), (1, 1), (1, 1), (7, 6)),
                                          (5, (2, 3), (1, 2), (2, 0), (2, 1), (7, 6)),
                                          (3, (1, 1), (1, 1), (0, 0), (1, 1), (7, 6)),
                                          # NCHW planes transposed to NHWC in 16 x 16 byte blocks, with edges
                                          (35, (3, 3), (1, 1), (1, 1), (1, 1), (5, 37))])
@pytest.mark.parametrize("act_dtype,zp", [("uint8", 100), ("int8", -3)])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_static_conv_path_is_bit_identical_to_im2col_and_linear(c, k, s, p, d, hw, act_dtype, zp, layout):
    """QuantConv2d's static path quantizes the image once and builds byte patches (padding = the
    zero point): it must give exactly what float patches + linear(activation="static") give."""
    import lowbit

    g = torch.Generator().manual_seed(c)
    x = torch.randn(2, c, *hw, generator=g) * 2
    x[0, 0, 1, 1] = float("nan")
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    kk = k[0] * k[1] * c
    pw = lowbit.pack_weight(torch.randn(9, kk, generator=g).numpy())
    bias = torch.randn(9, generator=g).numpy()
    xh = x.permute(0, 2, 3, 1).numpy()
    cols = _core.im2col(xh, *k, *s, *p, *d)
    want = lowbit.linear(cols, pw, bias, activation="static", activation_scale=0.03, activation_zero_point=zp, activation_dtype=act_dtype)
    f = lowbit.matmul.prepare_conv2d_static(pw, bias, activation_scale=0.03, activation_zero_point=zp, activation_dtype=act_dtype,
                                            kernel_size=k, stride=s, padding=p, dilation=d)
    np.testing.assert_array_equal(f(xh), want)
    with pytest.raises(ValueError, match="activation_zero_point"):
        lowbit.matmul.prepare_conv2d_static(pw, bias, activation_scale=0.03, activation_zero_point=300, kernel_size=k)
    with pytest.raises(ValueError, match="activation: expected 'static' or 'dynamic_per_tensor'"):
        lowbit.matmul.prepare_conv2d_static(pw, bias, activation="dynamic", kernel_size=k)
    with pytest.raises(ValueError, match="act"):
        _core.conv2d_static(xh, pw._packed, pw._colsum, 9, pw.scale, bias, *k, *s, *p, *d, 0.03, 0, False, False, "x")


def test_quant_conv2d_static_module_uses_the_fused_path():
    import lowbit

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    q = lowbit.nn.QuantConv2d.from_float(conv, lowbit.QuantConfig(activation="static"), act_qparams=(0.02, 128))
    x = torch.randn(4, 3, 9, 9).clamp(-2.5, 2.5)  # inside the activation range: no clipping
    y = q(x)
    # the traced op path (torch im2col + lowbit::linear_int8) gives the same bits
    with torch.no_grad():
        xh = x.permute(0, 2, 3, 1)
        cols = q._torch_im2col(xh, x, 9, 9).reshape(4, 81, 27)
        ref = torch.ops.lowbit.linear_int8(cols.contiguous(), q.weight_int8, q.weight_scale, q.weight_zero_point,
                                            q.bias, q.act_scale, q.act_zero_point, "static", "uint8")
    torch.testing.assert_close(y, ref.reshape(4, 9, 9, 8).permute(0, 3, 1, 2), rtol=0, atol=0)
    with torch.no_grad():
        assert float((y - conv(x)).abs().max()) < 0.1


@pytest.mark.parametrize("size,k,s,p,d", [(8, 3, 1, 1, 1), (9, 3, 2, 1, 1), (8, 2, 2, 0, 1), (8, 3, 2, 0, 1),
                                         (5, 1, 1, 0, 1), (9, 3, 1, 0, 2), (11, 5, 3, 2, 1), (7, 1, 2, 0, 1)])
def test_conv_covers_input_matches_brute_force(size, k, s, p, d):
    import lowbit

    ho = (size + 2 * p - d * (k - 1) - 1) // s + 1
    seen = {t * s - p + i * d for t in range(ho) for i in range(k)}
    brute = all(y in seen for y in range(size))
    # conservative: never claims coverage that is not there (dilation > 1 always answers False)
    got = lowbit.matmul.conv_covers_input(size, k, s, p, d)
    assert got == brute or (not got and d > 1)


@pytest.mark.parametrize("c,k,s,p,d,hw", [(3, 3, 1, 1, 1, 8), (16, 3, 2, 1, 1, 9), (4, 2, 2, 0, 1, 8), (5, 3, 2, 0, 1, 8),
                                          (1, 5, 3, 2, 1, 11), (3, 3, 1, 0, 2, 9), (33, 3, 1, 1, 1, 18)])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_quant_conv2d_dynamic_per_tensor_fused_path_is_bit_identical(c, k, s, p, d, hw, layout):
    """Per-tensor dynamic convolutions whose windows cover every pixel take the byte-patch path
    (parameters from the image's range); the others the float patches. Both must give what
    torch im2col + lowbit::linear_int8 give."""
    import lowbit
    from lowbit.nn.conv import _EAGER_CONV

    torch.manual_seed(1)
    conv = torch.nn.Conv2d(c, 7, k, stride=s, padding=p, dilation=d)
    q = lowbit.nn.QuantConv2d.from_float(conv, lowbit.QuantConfig(activation="dynamic_per_tensor"))
    x = torch.randn(2, c, hw, hw) * 3
    x[0, 0, 0, 0] = -40.0  # the range's ends in a corner pixel
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = q(x)
        ho, wo = y.shape[2], y.shape[3]
        cols = q._torch_im2col(x.permute(0, 2, 3, 1), x, ho, wo).reshape(2, ho * wo, k * k * c)
        ref = torch.ops.lowbit.linear_int8(cols.contiguous(), q.weight_int8, q.weight_scale, q.weight_zero_point,
                                            q.bias, None, None, "dynamic_per_tensor", "uint8")
    torch.testing.assert_close(y, ref.reshape(2, ho, wo, 7).permute(0, 3, 1, 2), rtol=0, atol=0)
    covered = lowbit.matmul.conv_covers_input(hw, k, s, p, d)
    assert (q in _EAGER_CONV) == covered
