"""Tests for the scheme layer (lowbit.schemes): the vocabulary, scheme objects through QuantConfig,
pack_weight, linear, the lowbit.nn layers, summary and save/load, and a toy weight format added by
touching only the scheme layer."""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import lowbit
import numpy as np
import pytest
from lowbit import schemes
from lowbit.schemes import (
    ACTIVATION_SHORTHANDS,
    WEIGHT_SCHEMES,
    DynamicActivations,
    FloatActivations,
    StaticActivations,
    WeightScheme,
    register_weight_scheme,
    weight_scheme,
    weight_scheme_from_key,
)

ALL_WEIGHTS = [
    lowbit.Int8Weights(), lowbit.Int8Weights(granularity="per_tensor"), lowbit.Int8Weights(symmetric=False),
    lowbit.Int4Weights(), lowbit.Int4Weights(group_size=32), lowbit.Int4Weights(group_size=48, symmetric=False),
    lowbit.UInt4Weights(), lowbit.UInt4Weights(group_size=16), lowbit.NF4Weights(), lowbit.NF4Weights(group_size=32),
    lowbit.NF4Weights(double_quant=True),
    lowbit.FP16Weights(), lowbit.BF16Weights(), lowbit.Log2Weights(), lowbit.Log2Weights(bits=8),
    lowbit.TernaryWeights(), lowbit.BinaryWeights(granularity="per_tensor"),
]


# -- a toy format: 2-bit symmetric codes, written as a user would -------------------------------------


@dataclass(frozen=True)
class Int2Weights(WeightScheme):
    """Codes in [-2, 1] times one scale per output channel (max|w| / 2), four per byte over each row;
    weight-only, with a plain NumPy kernel."""

    name: ClassVar[str] = "int2"

    @property
    def code_bits(self) -> int:
        return 2

    def storage_spec(self, n: int, k: int) -> dict:
        return {"weight_codes": ((n, (k + 3) // 4), "uint8"), "weight_scale": ((n,), "float32")}

    def quantize(self, w: np.ndarray, scale: Any = None, zero_point: Any = None) -> dict:
        self._check_given(scale, zero_point)
        n, k = w.shape
        s = np.maximum(np.abs(w).max(axis=1, initial=0) / np.float32(2), np.float32(1e-8)).astype(np.float32)
        q = np.clip(np.rint(w / s[:, None]), -2, 1).astype(np.int8)
        u = np.zeros((n, -(-k // 4) * 4), np.uint8)
        u[:, :k] = q.astype(np.uint8) & 3
        codes = u[:, 0::4] | (u[:, 1::4] << 2) | (u[:, 2::4] << 4) | (u[:, 3::4] << 6)
        return {"weight_codes": np.ascontiguousarray(codes), "weight_scale": s}

    def dequantize(self, stored: dict, n: int, k: int) -> np.ndarray:
        c = np.asarray(stored["weight_codes"], np.uint8)
        u = np.stack([(c >> sh) & 3 for sh in (0, 2, 4, 6)], axis=-1).reshape(n, -1)[:, :k].astype(np.int8)
        q = np.where(u >= 2, u - 4, u).astype(np.float32)
        return (q * np.asarray(stored["weight_scale"], np.float32)[:, None]).astype(np.float32)


@pytest.fixture
def int2():
    register_weight_scheme(Int2Weights)
    yield Int2Weights()
    WEIGHT_SCHEMES.pop("int2", None)


def _int2_reference(w: np.ndarray) -> np.ndarray:
    """The toy format written out independently of the class: round(w / s) clipped to [-2, 1] times s."""
    s = np.maximum(np.abs(w).max(axis=1) / np.float32(2), np.float32(1e-8)).astype(np.float32)
    return (np.clip(np.rint(w / s[:, None]), -2, 1) * s[:, None]).astype(np.float32)


def test_toy_format_runs_through_numpy_api(int2, rng):
    w = rng.standard_normal((12, 37)).astype(np.float32)
    x = rng.standard_normal((5, 37)).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    for pw in (lowbit.pack_weight(w, dtype="int2"), lowbit.pack_weight(w, dtype=int2), lowbit.quantize(w, dtype=int2)):
        assert pw.scheme == int2 and pw.shape == (12, 37)
        np.testing.assert_array_equal(pw.dequantize(), _int2_reference(w))
        assert pw.nbytes == 12 * 10 + 4 * 12
        want = x.astype(np.float64) @ _int2_reference(w).T.astype(np.float64) + b
        np.testing.assert_allclose(lowbit.linear(x, pw, b), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="'dynamic' is not supported with int2 weights per_channel.*weight-only"):
        lowbit.linear(x, pw, activation="dynamic")


def test_toy_format_runs_through_torch_layers_summary_and_files(int2, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(24, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    cfg = lowbit.QuantConfig(weight="int2", per_layer={"2": {"weight": "int8"}})
    assert cfg.weight == int2 and cfg.activation == FloatActivations()  # weight-only: "auto" is float
    q = lowbit.quantize_model(model, cfg)
    layer = q[0]
    assert layer.kernel == "dequantize" and layer.weight_dtype == "int2"
    wq = _int2_reference(model[0].weight.detach().numpy())
    assert np.array_equal(layer.dequantized_weight().numpy(), wq)
    x = torch.randn(3, 24)
    h = torch.nn.functional.linear(x, torch.from_numpy(wq), model[0].bias)
    torch.testing.assert_close(layer(x), h)
    rows = {r["layer"]: r for r in lowbit.summary(q).rows}
    assert rows["0"]["action"] == "int2 weights per_channel, weight-only, dequantized per call"
    assert rows["0"]["bytes_after"] == 16 * 6 + 4 * 16 + 4 * 16  # codes, scales, bias
    path = tmp_path / "m.lowbit"
    lowbit.save(q, path)
    fresh = torch.nn.Sequential(torch.nn.Linear(24, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    loaded = lowbit.load(path, fresh)
    assert loaded[0].scheme == int2 and torch.equal(loaded(x), q(x))
    WEIGHT_SCHEMES.pop("int2")
    with pytest.raises(ValueError, match="lowbit.load: .*got 'int2'"):
        lowbit.load(path, torch.nn.Sequential(torch.nn.Linear(24, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)))


# -- the vocabulary ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ALL_WEIGHTS, ids=lambda s: s.key)
def test_every_weight_scheme_round_trips_and_counts_its_bytes(scheme, rng):
    assert weight_scheme(scheme.to_dict()) == scheme
    assert weight_scheme_from_key(scheme.key) == scheme
    assert weight_scheme(json.loads(json.dumps(scheme.to_dict()))) == scheme
    n, k = 9, 100
    w = (rng.standard_normal((n, k)) * 0.1).astype(np.float32)
    stored = scheme.quantize(w)
    spec = scheme.storage_spec(n, k)
    assert set(stored) == set(spec)
    for name, a in stored.items():
        shape, dt = spec[name]
        assert a.shape == shape and a.dtype == np.dtype(np.uint16 if dt == "bfloat16" else dt), name
    assert scheme.nbytes(n, k) == sum(a.nbytes for a in stored.values())
    deq = scheme.dequantize(stored, n, k)
    assert deq.shape == (n, k) and deq.dtype == np.float32
    loose = scheme.name in ("ternary", "binary")  # one or two levels per channel
    assert np.abs(deq - w).max() <= (1.0 if loose else 0.6) * np.abs(w).max()


@pytest.mark.parametrize("scheme", ALL_WEIGHTS, ids=lambda s: s.key)
def test_pack_weight_and_linear_for_every_scheme(scheme, rng):
    n, k = 16, 96
    w = (rng.standard_normal((n, k)) * 0.1).astype(np.float32)
    x = rng.standard_normal((3, k)).astype(np.float32)
    if not scheme.supports(FloatActivations()) and not scheme.supports(DynamicActivations()):
        pytest.skip("no kernel")
    pw = lowbit.pack_weight(w, dtype=scheme)
    assert pw.scheme == scheme
    wq = pw.dequantize()
    act = scheme.default_activation()
    y = lowbit.linear(x, pw, activation="float") if scheme.supports(FloatActivations()) else None
    if y is not None:
        np.testing.assert_allclose(y, x @ wq.T, rtol=1e-4, atol=1e-4)
    if act.quantized:  # the quantized path: within a few activation steps of the float product
        yq = lowbit.linear(x, pw)
        bound = 3 * (np.abs(x).max(axis=1, keepdims=True) / 127) * np.abs(wq).sum(axis=1)
        assert np.all(np.abs(yq - x @ wq.T) <= bound + 1e-4)


def test_shorthand_tables_and_activation_schemes():
    assert set(WEIGHT_SCHEMES) >= {"int8", "int4", "uint4", "nf4", "fp16", "bf16", "log2", "ternary", "binary"}
    assert ACTIVATION_SHORTHANDS["dynamic"] == DynamicActivations()
    assert ACTIVATION_SHORTHANDS["dynamic_per_tensor"] == DynamicActivations("tensor")
    assert ACTIVATION_SHORTHANDS[None] == FloatActivations() == ACTIVATION_SHORTHANDS["float"]
    s = schemes.activation_scheme("static", observer="histogram", dtype="int8")
    assert s == StaticActivations("histogram", "int8") and s.calibrated and s.quantized
    assert schemes.activation_scheme(s.to_dict()) == s
    with pytest.raises(ValueError, match="did you mean 'dynamic'"):
        schemes.activation_scheme("dynamc")
    with pytest.raises(ValueError, match="did you mean 'nf4'"):
        weight_scheme("nf5")
    with pytest.raises(ValueError, match="multiples of 32"):
        lowbit.NF4Weights(group_size=48)
    with pytest.raises(ValueError, match="symmetric=False for weight-only int4 with any group size"):
        lowbit.Int4Weights(group_size=48)
    assert lowbit.Int4Weights(group_size=48, symmetric=False).kernel(FloatActivations()) == "dequantize"
    with pytest.raises(ValueError, match="options.*with the scheme object"):
        lowbit.QuantConfig(weight=lowbit.NF4Weights(), group_size=32)


def test_config_composes_schemes_and_keeps_old_spellings():
    cfg = lowbit.QuantConfig(weight="int4", group_size=64, activation="dynamic")
    assert cfg == lowbit.QuantConfig(weight=lowbit.Int4Weights(group_size=64), activation=DynamicActivations())
    assert cfg.group_size == cfg.weight_group_size == 64 and cfg.weight_bits == 4
    assert lowbit.QuantConfig(weight="fp16").activation == FloatActivations()
    assert lowbit.QuantConfig(weight="nf4", activation=None).activation == FloatActivations()
    with pytest.raises(ValueError, match="QuantConfig.activation: 'dynamic' is not supported with fp16 weights"):
        lowbit.QuantConfig(weight="fp16", activation="dynamic")
    with pytest.raises(ValueError, match="QuantConfig.on_unsupported"):
        lowbit.QuantConfig(on_unsupported="skip")
    static = lowbit.QuantConfig(activation="static", observer="entropy", per_layer={"a": {"weight": "nf4"}})
    assert static.for_layer("a").activation == DynamicActivations()  # nf4 cannot run static: its default
    assert static.for_layer("b").activation == StaticActivations("entropy")
    old = {"weight": "int4", "activation": "static", "granularity": "per_channel", "symmetric_weights": True,
           "observer": "minmax", "activation_dtype": "int8", "embedding": None, "exclude": [], "per_layer": {},
           "group_size": None, "log2_bits": 4}  # a config as files written before schemes hold it
    assert lowbit.QuantConfig.from_dict(old) == lowbit.QuantConfig(
        weight=lowbit.Int4Weights(), activation=StaticActivations(dtype="int8"))


def test_deprecated_keywords_warn_and_still_work(rng):
    w = rng.standard_normal((4, 64)).astype(np.float32)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    pw = lowbit.pack_weight(w)
    with pytest.warns(DeprecationWarning, match="'act' is deprecated, use 'activation'"):
        y = lowbit.linear(x, pw, act="dynamic_per_tensor")
    np.testing.assert_array_equal(y, lowbit.linear(x, pw, activation="dynamic_per_tensor"))
    with pytest.warns(DeprecationWarning, match="'act_scale' is deprecated"):
        lowbit.linear(x, pw, activation="static", act_scale=0.05, activation_zero_point=128)
    with pytest.raises(TypeError, match="unexpected keyword argument 'actt'"):
        lowbit.linear(x, pw, actt="dynamic")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lowbit.linear(x, pw, activation="static", activation_scale=0.05, activation_zero_point=128)


def test_linear_rejects_what_the_weight_kernel_cannot_run(rng):
    w = rng.standard_normal((4, 64)).astype(np.float32)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    with pytest.raises(ValueError, match="'static' is not supported with nf4 weights block 64"):
        lowbit.linear(x, lowbit.pack_weight(w, dtype="nf4"), activation="static")
    with pytest.raises(ValueError, match="activation_scale/out_scale.*4-bit weights"):
        lowbit.linear(x, lowbit.pack_weight(w, dtype="int4"), activation_scale=0.1, out_scale=0.1)
    with pytest.raises(TypeError, match="pack it once with lowbit.pack_weight"):
        lowbit.linear(x, w)
    int8_float = lowbit.linear(x, lowbit.pack_weight(w), activation="float")
    np.testing.assert_allclose(int8_float, x @ lowbit.pack_weight(w).dequantize().T, rtol=1e-5, atol=1e-5)


# -- no silent fallbacks in the torch layer ------------------------------------------------------------


def _net():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 4, padding="same"), torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, 10)).eval()


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_unsupported_layers_raise_unless_opted_in():
    torch = pytest.importorskip("torch")
    net = _net()
    with pytest.raises(ValueError, match=r"layer '1' cannot be quantized.*padding='same'.*exclude=\['1'\].*on_unsupported"):
        lowbit.quantize_model(net)
    with pytest.warns(UserWarning, match="layer '1' stays float: padding='same'"):
        q = lowbit.quantize_model(net, lowbit.QuantConfig(on_unsupported="float"))
    rows = {r["layer"]: r for r in lowbit.summary(q).rows}
    assert rows["1"]["action"].startswith("float: padding='same'") and rows["3"]["type"] == "QuantLinear"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = lowbit.quantize_model(net, lowbit.QuantConfig(exclude=["1"]))  # explicit: no warning
    assert lowbit.summary(q).rows[1]["action"] == "float: excluded by config"
    assert q(torch.randn(2, 3, 4, 4)).shape == (2, 10)
    class TwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = torch.nn.Linear(64, 8), torch.nn.Linear(64, 8)

        def forward(self, x: Any) -> Any:
            return self.used(x)

    with pytest.raises(ValueError, match="layer 'unused' cannot be quantized.*never called"):
        lowbit.quantize_model(TwoHeads(), lowbit.QuantConfig(activation="static"), calib_data=[torch.randn(2, 64)],
                              progress=False)


def test_unknown_layer_names_raise_with_close_matches():
    pytest.importorskip("torch")
    net = _net()
    with pytest.raises(ValueError, match=r"QuantConfig.exclude: 'fc' matches no layer"):
        lowbit.quantize_model(net, lowbit.QuantConfig(exclude=["fc"]))
    import torch

    named = torch.nn.Sequential()
    named.add_module("encoder", torch.nn.Linear(4, 4))
    named.add_module("classifier", torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"per_layer: 'clasifier' matches no layer.*did you mean 'classifier'"):
        lowbit.quantize_model(named, lowbit.QuantConfig(per_layer={"clasifier": {"weight": "int4"}}))
    with pytest.raises(ValueError, match=r"per_layer: 'dec\*' matches no layer"):
        lowbit.prepare_qat(named, lowbit.QuantConfig(per_layer={"dec*": {"weight": "int4"}}))
    assert lowbit.quantize_model(named, lowbit.QuantConfig(per_layer={"enc*": {"weight": "int4"}})).encoder.weight_dtype \
        == "int4"


def test_backward_through_inference_layers_points_to_qat():
    torch = pytest.importorskip("torch")
    q = lowbit.quantize_model(torch.nn.Sequential(torch.nn.Linear(16, 4)))
    x = torch.randn(2, 16, requires_grad=True)
    with pytest.raises(RuntimeError, match="'0'.*no backward.*lowbit.prepare_qat"):
        q(x).sum().backward()
    wo = lowbit.quantize_model(torch.nn.Sequential(torch.nn.Linear(16, 4)), lowbit.QuantConfig(activation="float"))
    wo(x).sum().backward()  # weight-only layers pass gradients to their input
    assert x.grad is not None and x.grad.shape == x.shape


def test_load_returns_eval_mode(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    def make():
        return torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))

    m = make()
    m.train()
    m(torch.randn(16, 8))  # moves the running statistics
    q = lowbit.quantize_model(m.eval())
    lowbit.save(q, tmp_path / "m.lowbit")
    fresh = make().train()
    loaded = lowbit.load(tmp_path / "m.lowbit", fresh)
    assert not any(mod.training for mod in loaded.modules())
    stats = loaded[1].running_mean.clone()
    loaded(torch.randn(4, 8) * 10)
    assert torch.equal(loaded[1].running_mean, stats)  # BatchNorm statistics do not move after a load


def test_layer_specs_hold_scheme_dicts_and_rebuild_the_layer():
    torch = pytest.importorskip("torch")
    q = lowbit.nn.QuantLinear.from_float(torch.nn.Linear(64, 8), lowbit.QuantConfig(weight="nf4", group_size=32))
    spec = q.spec()
    assert spec["weight"] == {"format": "nf4", "group_size": 32, "double_quant": False}
    assert spec["activation"] == {"mode": "dynamic"}
    again = lowbit.nn.QuantLinear(**{k: v for k, v in spec.items() if k != "kind"})
    assert again.scheme == q.scheme and again.activation == q.activation
    assert dataclasses.asdict(again.scheme) == {"group_size": 32, "double_quant": False}


def test_nf4_double_quant_stores_int8_block_scales_everywhere(rng, tmp_path):
    torch = pytest.importorskip("torch")
    w = (rng.standard_normal((300, 128)) * 0.05).astype(np.float32)  # 600 block scales: 3 nested groups
    dq, plain = lowbit.NF4Weights(double_quant=True), lowbit.NF4Weights()
    pw, pp = lowbit.pack_weight(w, dtype=dq), lowbit.pack_weight(w, dtype=plain)
    nested = lowbit.quantize(w.reshape(-1), dtype="nf4", double_quant=True)  # the tensor format, same rows
    np.testing.assert_array_equal(pw.dequantize().reshape(-1), nested.dequantize())
    assert pw.nbytes == 300 * 64 + 600 + 4 * 3 + 4 < pp.nbytes == 300 * 64 + 4 * 600
    assert pw.bits_per_weight < 4.2
    lin = torch.nn.Linear(128, 300)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
    model = torch.nn.Sequential(lin).eval()
    q = lowbit.quantize_model(model, lowbit.QuantConfig(weight="nf4", double_quant=True))
    layer = q[0]
    assert set(layer.state_dict()) == {"weight_packed", "weight_scale_codes", "weight_scale_scale",
                                       "weight_scale_offset", "bias"}
    assert np.array_equal(layer.dequantized_weight().numpy(), pw.dequantize())
    x = torch.randn(4, 128)
    want = torch.from_numpy(lowbit.linear(x.numpy(), pw, lin.bias.detach().numpy()))
    assert torch.equal(layer(x), want)
    assert lowbit.summary(q).rows[0]["action"].startswith("nf4 weights block 64 double-quant")
    lowbit.save(q, tmp_path / "dq.lowbit")
    loaded = lowbit.load(tmp_path / "dq.lowbit", torch.nn.Sequential(torch.nn.Linear(128, 300)))
    assert torch.equal(loaded(x), layer(x))


def test_qat_conv1d_converts_to_quant_conv1d_and_agrees():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(4, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv1d(8, 8, 3, padding=1, groups=2), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 16, 5))
    qat = lowbit.prepare_qat(model, lowbit.QuantConfig(activation="static"))
    assert isinstance(qat[0], lowbit.nn.QATConv1d) and isinstance(qat[2], lowbit.nn.QATConv1d)
    opt = torch.optim.SGD(qat.parameters(), lr=0.01)
    qat.train()
    for _ in range(5):
        x = torch.randn(8, 4, 16)
        loss = qat(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    qat.eval()
    q = lowbit.convert(qat)
    assert isinstance(q[0], lowbit.nn.QuantConv1d) and isinstance(q[2], lowbit.nn.QuantConv1d)
    x = torch.randn(4, 4, 16)
    with torch.no_grad():
        torch.testing.assert_close(q(x), qat(x), rtol=1e-4, atol=1e-4)
