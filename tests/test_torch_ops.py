"""torch.library ops (lowbit::linear_int8, lowbit::fake_quantize): opcheck, torch.compile, torch.export."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import lowbit
from lowbit.interop import _torch_ops
from lowbit.models import DigitsCNN


@pytest.fixture
def qmodel():
    torch.manual_seed(0)
    m = DigitsCNN().eval()
    x = torch.randn(4, 1, 8, 8)
    return lowbit.quantize_model(
        m, lowbit.QuantConfig(activation="static"), calib_data=[x], progress=False
    ), x


@pytest.mark.parametrize("act", ["dynamic", "dynamic_per_tensor", "static"])
def test_opcheck_quant_linear(act):
    q = lowbit.nn.QuantLinear.from_float(
        torch.nn.Linear(20, 6), lowbit.QuantConfig(activation=act), act_qparams=(0.03, 128)
    )
    args = (
        torch.randn(3, 20),
        q.weight_int8,
        q.weight_scale,
        q.weight_zero_point,
        q.bias,
        q.act_scale,
        q.act_zero_point,
        act,
        "uint8",
    )
    torch.library.opcheck(
        torch.ops.lowbit.linear_int8.default,
        args,
        test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"),
    )


@pytest.mark.parametrize("axis", [None, 1])
def test_opcheck_fake_quantize(axis):
    x = torch.randn(4, 5)
    scale = torch.full((5,) if axis is not None else (), 0.05)
    zp = torch.zeros_like(scale, dtype=torch.int32)
    torch.library.opcheck(
        torch.ops.lowbit.fake_quantize.default,
        (x, scale, zp, "int8", axis),
        test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"),
    )
    assert torch.equal(
        torch.ops.lowbit.fake_quantize(x, scale, zp, "int8", axis),
        _torch_ops.fake_quantize_reference(x, scale, zp, "int8", axis),
    )


def test_meta_tensors_give_shapes():
    x = torch.empty(2, 7, 20, device="meta")
    w = torch.empty(6, 20, dtype=torch.int8, device="meta")
    s = torch.empty(6, device="meta")
    z = torch.empty(6, dtype=torch.int32, device="meta")
    y = torch.ops.lowbit.linear_int8(x, w, s, z, None, None, None, "dynamic", "uint8")
    assert y.shape == (2, 7, 6) and y.device.type == "meta"


def test_torch_compile_traces_through(qmodel):
    q, x = qmodel
    torch._dynamo.reset()
    compiled = torch.compile(q, backend="aot_eager", fullgraph=True)
    assert torch.equal(compiled(x), q(x))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inductor imports torch.jit internals
def test_torch_compile_inductor(qmodel):
    q, x = qmodel
    torch._dynamo.reset()
    assert torch.equal(torch.compile(q, fullgraph=True)(x), q(x))


def test_torch_export(qmodel):
    q, x = qmodel
    ep = torch.export.export(q, (x,))
    assert "lowbit.linear_int8" in ep.graph_module.code
    assert torch.equal(ep.module()(x), q(x))


def test_qat_model_compiles():
    torch.manual_seed(0)
    qat = lowbit.prepare_qat(DigitsCNN(), lowbit.QuantConfig(activation="static", weight="int4"))
    x = torch.randn(4, 1, 8, 8)
    qat.train()
    qat(x)
    qat.eval()
    torch._dynamo.reset()
    compiled = torch.compile(qat, backend="aot_eager")
    torch.testing.assert_close(compiled(x), qat(x))
