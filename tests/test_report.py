"""Tests for lowbit.compare / QuantReport on tiny models: per-layer numbers against direct
computations with lowbit.metrics, worst-layer ranking, text/HTML/pandas/plot outputs, bad input,
and that `import lowbit` stays free of torch, pandas, matplotlib and tqdm."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import lowbit
from lowbit import metrics


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * 4 * 4, 32)
        self.norm = nn.LayerNorm(32)
        self.fc2 = nn.Linear(32, 5)

    def forward(self, x):
        x = torch.relu(self.conv(x)).flatten(1)
        return self.fc2(torch.relu(self.norm(self.fc1(x))))


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = Tiny().eval()
    data = [torch.randn(8, 2, 4, 4) for _ in range(3)]
    return model, data


def quantize(model, **kw):
    return lowbit.quantize_model(model, lowbit.QuantConfig(**kw), progress=False)


def test_layer_numbers_match_direct_computation(tiny):
    model, data = tiny
    q = quantize(model, per_layer={"fc2": {"weight": "int4"}})
    r = lowbit.compare(model, q, data, progress=False, timing=False)
    assert [layer.name for layer in r.layers] == ["conv", "fc1", "fc2"]
    assert [layer.type for layer in r.layers] == ["QuantConv2d", "QuantLinear", "QuantLinear"]
    assert [layer.bits for layer in r.layers] == [8, 8, 4]
    assert all(layer.granularity == "per_channel" and layer.activation == "dynamic" for layer in r.layers)
    assert r.float_layers == {"norm": "LayerNorm kept float32 (on lowbit's LayerNorm kernel)"}
    assert r.n_batches == 3

    # Own error of fc1: the float model's fc1 input fed to both layers, over all batches.
    inputs = []
    h = model.fc1.register_forward_hook(lambda m, a, o: inputs.append(a[0]))
    with torch.no_grad():
        outs_f = [model(x) for x in data]
        outs_q = [q(x) for x in data]
    h.remove()
    xs = torch.cat(inputs)
    with torch.no_grad():
        ref, got = model.fc1(xs), q.fc1(xs)
    fc1 = r.layers[1]
    assert fc1.output_sqnr == pytest.approx(metrics.sqnr(ref, got), rel=1e-9)
    assert fc1.output_cosine == pytest.approx(metrics.cosine_similarity(ref, got), rel=1e-12)
    assert fc1.max_abs_error == pytest.approx(metrics.max_abs_error(ref, got))
    assert fc1.weight_sqnr == pytest.approx(metrics.sqnr(model.fc1.weight.flatten(), q.fc1.dequantized_weight().flatten()))
    assert fc1.bytes_before == 4 * (64 * 32 + 32) and fc1.bytes_after == metrics.model_nbytes(q.fc1)
    assert fc1.input_shape == (8, 64)
    # The first layer sees the same input in both models: accumulated == own error.
    assert r.layers[0].accumulated_sqnr == pytest.approx(r.layers[0].output_sqnr, rel=1e-9)
    assert r.layers[2].accumulated_sqnr < r.layers[2].output_sqnr + 3

    of, oq = torch.cat(outs_f), torch.cat(outs_q)
    assert r.output_sqnr == pytest.approx(metrics.sqnr(of, oq), rel=1e-9)
    assert r.output_cosine == pytest.approx(metrics.cosine_similarity(of, oq), rel=1e-12)
    assert r.output_kl == pytest.approx(metrics.kl_divergence(of, oq), rel=1e-6)
    assert r.top1_agreement == pytest.approx(metrics.top1_agreement(of, oq))
    assert r.bytes_float == metrics.model_nbytes(model) and r.bytes_quant == metrics.model_nbytes(q)
    assert r.compression > 2.5
    assert math.isnan(r.latency_float_s) and math.isnan(r.layers[0].speedup)


def test_int4_layer_is_the_worst_and_highlighted(tiny):
    model, data = tiny
    q = quantize(model, per_layer={"fc1": {"weight": "int4", "granularity": "per_tensor"}})
    r = lowbit.compare(model, q, data, progress=False, timing=False)
    assert r.worst(1)[0].name == "fc1"
    assert next(layer.name for layer in r.worst(10)) == "fc1" and len(r.worst(10)) == 3
    assert r.layers[1].output_sqnr < min(r.layers[0].output_sqnr, r.layers[2].output_sqnr) - 10
    text = r.summary()
    assert "fc1*" in text and "worst layers (lowest output SQNR): fc1" in text
    assert "kept float: norm: LayerNorm kept float32 (on lowbit's LayerNorm kernel)" in text
    assert str(r) == text
    page = r._repr_html_()
    assert page.count("background:#fde2e2") == 2  # the worst row + the legend
    row = next(line for line in page.split("<tr") if ">fc1<" in line)
    assert "#fde2e2" in row
    assert "<details>" in page and "norm" in page


def test_timing_eval_fn_and_exports(tiny, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    model, data = tiny
    q = quantize(model)

    def agree(m):
        with torch.no_grad():
            return float((m(data[0]).argmax(1) == model(data[0]).argmax(1)).float().mean())

    r = lowbit.compare(model, q, data[0], eval_fn=agree, progress=False)
    assert r.n_batches == 1
    assert r.metric_name == "agree" and r.metric_float == 1.0 and r.metric_drop == 1.0 - r.metric_quant
    assert r.latency_float_s > 0 and r.latency_quant_s > 0 and r.speedup > 0
    assert all(layer.latency_quant_s > 0 and layer.speedup > 0 for layer in r.layers)
    df = r.to_dataframe()
    assert isinstance(df, pd.DataFrame) and list(df.index) == ["conv", "fc1", "fc2"]
    assert {"output_sqnr", "weight_sqnr", "speedup", "compression", "bytes_before"} <= set(df.columns)
    assert r.model_summary()["compression"] == r.compression
    fig = r.plot(tmp_path / "report.png")
    assert (tmp_path / "report.png").stat().st_size > 1000
    assert len(fig.axes) == 5
    import matplotlib.pyplot as plt

    plt.close(fig)
    assert "agree: float 1 -> quantized" in r.summary()


def test_models_left_as_they_were(tiny):
    model, data = tiny
    q = quantize(model)
    model.train()
    with torch.no_grad():
        before = q(data[0])
    lowbit.compare(model, q, data, progress=False, timing=False)
    assert model.training and not q.training
    assert not model.fc1._forward_hooks and not q.fc1._forward_hooks
    with torch.no_grad():
        assert torch.equal(q(data[0]), before)


def test_dict_batches_and_tuple_outputs():
    class KwModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(8, 8)

        def forward(self, input_ids, scale=1.0):
            return (self.proj(input_ids) * scale, None)

    torch.manual_seed(1)
    m = KwModel()
    q = quantize(m)
    batches = [{"input_ids": torch.randn(2, 3, 8), "scale": 2.0}]
    r = lowbit.compare(m, q, batches, progress=False, timing=False)
    assert r.output_kl is None and r.top1_agreement is None  # 3-d outputs are not logits
    assert r.output_sqnr > 30 and r.layers[0].input_shape == (2, 3, 8)


def test_bad_input(tiny):
    model, data = tiny
    q = quantize(model)
    with pytest.raises(ValueError, match="quant_model: has no lowbit quantized layer"):
        lowbit.compare(model, model, data, progress=False)
    with pytest.raises(ValueError, match="data: no batches"):
        lowbit.compare(model, q, [], progress=False)
    with pytest.raises(TypeError, match="float_model: expected a torch.nn.Module"):
        lowbit.compare("model", q, data, progress=False)
    with pytest.raises(TypeError, match="data: expected a batch"):
        lowbit.compare(model, q, 3, progress=False)
    qat = lowbit.prepare_qat(model, lowbit.QuantConfig(activation="static"))
    with pytest.raises(ValueError, match="call lowbit.convert"):
        lowbit.compare(model, qat, data, progress=False)
    other = nn.Sequential(nn.Linear(64, 32))
    with pytest.raises(ValueError, match="float_model: has no layer 'conv'"):
        lowbit.compare(other, q, data, progress=False)


def test_import_lowbit_stays_light():
    code = ("import sys, lowbit, lowbit.metrics; "
            "print([m for m in ('torch', 'pandas', 'matplotlib', 'tqdm') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", ["lowbit.report", "lowbit.mixed_precision"])
def test_docstring_examples(name):
    import doctest
    import importlib

    res = doctest.testmod(importlib.import_module(name), extraglobs={"lowbit": lowbit, "np": np, "torch": torch},
                          optionflags=doctest.ELLIPSIS)
    assert res.attempted >= 3 and res.failed == 0


def test_compare_runs_both_models_without_autograd(tiny):
    """compare's forward passes (float, quantized, per-layer replays) run under torch.no_grad(), as
    documented: no autograd graph is built even for a float model that requires grad."""
    model, data = tiny
    model.requires_grad_(True)
    q = quantize(model)
    grad_modes = []
    for m in (model, q):
        m.register_forward_hook(lambda mod, args, out: grad_modes.append(torch.is_grad_enabled()))
    lowbit.compare(model, q, data, progress=False, timing=False)
    assert grad_modes and not any(grad_modes)
