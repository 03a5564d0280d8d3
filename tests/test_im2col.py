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
