"""LayerNorm on lowbit's kernel (lowbit/norm.hpp, lowbit.nn.LayerNorm): every ISA against a float64
evaluation, NaN rows, bad input, and the module switch inside quantized models."""

from __future__ import annotations

import lowbit
import numpy as np
import pytest
from lowbit import _core

torch = pytest.importorskip("torch")


def layer_norm64(x, gamma, beta, eps):
    x = x.astype(np.float64)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y


@pytest.mark.parametrize("n", [1, 3, 16, 17, 40, 384, 1000])
@pytest.mark.parametrize("affine", [True, False])
def test_kernel_matches_float64(isa, rng, n, affine):
    x = (rng.standard_normal((33, n)) * 3 + 5).astype(np.float32)
    x[3] *= 1e3  # a loud row
    g = rng.standard_normal(n).astype(np.float32) if affine else None
    b = rng.standard_normal(n).astype(np.float32) if affine else None
    y = _core.layer_norm(x, g, b, 1e-5)
    want = layer_norm64(x, g, b, 1e-5)
    scale = np.abs(want).max(-1, keepdims=True) + 1
    assert np.all(np.abs(y - want) <= 2e-5 * scale), float(np.max(np.abs(y - want) / scale))


def test_nan_rows_and_inplace(rng):
    x = rng.standard_normal((4, 64)).astype(np.float32)
    x[1, 7] = np.nan
    x[2, 0] = np.inf
    y = _core.layer_norm(x, None, None, 1e-5)
    assert np.isnan(y[1]).all() and np.isnan(y[2]).all()
    assert np.isfinite(y[[0, 3]]).all()
    z = x[[0, 3]].copy()
    assert _core.layer_norm(z, None, None, 1e-5, z) is z
    np.testing.assert_allclose(z, layer_norm64(x[[0, 3]], None, None, 1e-5), atol=1e-5)


def test_bad_input(rng):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="gamma"):
        _core.layer_norm(x, np.ones(7, np.float32), None, 1e-5)
    with pytest.raises(ValueError, match="beta"):
        _core.layer_norm(x, None, np.ones(9, np.float32), 1e-5)
    with pytest.raises(ValueError, match="eps"):
        _core.layer_norm(x, None, None, -1.0)
    with pytest.raises(TypeError, match="x"):
        _core.layer_norm(x.astype(np.float64), None, None, 1e-5)
    with pytest.raises(ValueError, match="x"):
        _core.layer_norm(np.zeros((3, 0), np.float32), None, None, 1e-5)
    with pytest.raises(ValueError, match="out"):
        _core.layer_norm(x, None, None, 1e-5, np.empty((4, 9), np.float32))


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(48, 48)
        self.norm = torch.nn.LayerNorm(48)
        self.norm2 = torch.nn.LayerNorm((4, 48))  # over two axes: torch's
        with torch.no_grad():
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.norm(self.fc(x) + x))


def test_module_switch_in_quantized_models(tmp_path):
    torch.manual_seed(0)
    m = Block().eval()
    x = torch.randn(2, 4, 48)
    q = lowbit.quantize_model(m, progress=False)
    assert type(q.norm) is lowbit.nn.LayerNorm and type(q.norm2) is torch.nn.LayerNorm
    assert type(m.norm) is torch.nn.LayerNorm  # the float model is untouched
    assert set(q.state_dict()) >= {"norm.weight", "norm.bias"}
    assert "on lowbit's LayerNorm kernel" in str(lowbit.summary(q))
    with torch.no_grad():
        y = q(x)
        ref = q.norm2(torch.nn.functional.layer_norm(q.fc(x) + x, (48,), q.norm.weight, q.norm.bias))
    torch.testing.assert_close(y, ref, atol=2e-5, rtol=0)
    lowbit.save(q, tmp_path / "q.safetensors")
    back = lowbit.load(tmp_path / "q.safetensors", Block())
    assert type(back.norm) is lowbit.nn.LayerNorm
    with torch.no_grad():
        assert torch.equal(back(x), y)
    assert lowbit.nn.use_torch_layernorm_(q) == ["norm"] and type(q.norm) is torch.nn.LayerNorm


def test_module_falls_back_to_torch_for_autograd_and_other_dtypes():
    torch.manual_seed(1)
    ln = torch.nn.LayerNorm(32)
    seq = torch.nn.Sequential(ln)
    assert lowbit.nn.use_lowbit_layernorm_(seq) == ["0"]
    x = torch.randn(5, 32, requires_grad=True)
    y = ln(x)  # parameters require grad: torch's function, with its backward
    y.pow(2).sum().backward()
    assert x.grad is not None and ln.weight.grad is not None
    with torch.no_grad():
        torch.testing.assert_close(ln(x), torch.nn.functional.layer_norm(x, (32,), ln.weight, ln.bias),
                                   atol=2e-6, rtol=0)
        xd = x.double()
        ln.double()
        assert ln(xd).dtype == torch.float64
    with pytest.raises(TypeError, match="model"):
        lowbit.nn.use_lowbit_layernorm_("not a model")
