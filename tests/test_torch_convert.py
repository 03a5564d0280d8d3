"""quantize_model / prepare_qat / convert / summary and QuantConfig on small synthetic models."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
import lowbit
from lowbit.nn import QATConv2d, QATLinear, QuantConv2d, QuantLinear
from torch import nn

# Net's even-kernel 'same' convolution (and, in static mode, its unused layer) cannot be quantized: these
# tests opt in to keeping them float (test_unsupported_layers_raise_unless_opted_in checks the default).
pytestmark = [pytest.mark.filterwarnings("ignore:lowbit. layer .* stays float:UserWarning"),
              pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")]


def QC(**kw):
    return lowbit.QuantConfig(on_unsupported="float", **kw)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 6)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 4, padding="same")
        self.fc1 = nn.Linear(8 * 4 * 4, 32)
        self.norm = nn.LayerNorm(32)
        self.head = nn.Linear(32, 5)
        self.unused = nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.dw(torch.relu(self.conv(x))))
        x = torch.nn.functional.max_pool2d(x, 2).flatten(1)
        return self.head(self.norm(torch.relu(self.fc1(x))))


@pytest.fixture
def net():
    torch.manual_seed(0)
    return Net().eval().requires_grad_(False)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(4, 3, 8, 8, generator=g) for _ in range(3)]


def test_import_lowbit_does_not_import_torch():
    code = "import sys, lowbit; lowbit.QuantConfig(); assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_config_validation_and_overrides():
    cfg = lowbit.QuantConfig(exclude="head", per_layer={"fc*": {"weight": "int4"}})
    assert cfg.exclude == ("head",)
    assert cfg.for_layer("fc1").weight.name == "int4" and cfg.for_layer("conv").weight.name == "int8"
    assert cfg.is_excluded("head") and not cfg.is_excluded("fc1")
    assert lowbit.QuantConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.weight = "int4"  # frozen
    for bad in (
        dict(weight="int3"),
        dict(activation="sometimes"),
        dict(granularity="per_row"),
        dict(observer="magic"),
        dict(per_layer={"x": {"wieght": "int4"}}),
    ):
        with pytest.raises(ValueError):
            lowbit.QuantConfig(**bad)
    with pytest.raises(TypeError):
        lowbit.quantize_model(nn.Linear(2, 2), config="int8")


@pytest.mark.parametrize("act", ["dynamic", "static", None])
def test_quantize_model_modes(net, data, act):
    q = lowbit.quantize_model(
        net, QC(activation=act), calib_data=data, progress=False
    )
    assert (
        isinstance(q.conv, QuantConv2d)
        and isinstance(q.fc1, QuantLinear)
        and isinstance(q.head, QuantLinear)
    )
    assert type(net.conv) is nn.Conv2d and type(net.fc1) is nn.Linear  # original untouched
    y, yq = net(data[0]), q(data[0])
    assert float((y - yq).abs().max()) < 0.05 * float(y.abs().max()) + 0.05
    rows = {r["layer"]: r for r in lowbit.summary(q).rows}
    assert rows["dw"]["action"].startswith("float: padding='same' with an asymmetric padding")
    assert rows["emb"]["action"].startswith("float: Embedding kept float")
    assert rows["norm"]["action"] == "float: LayerNorm kept float32 (on lowbit's LayerNorm kernel)"
    assert rows["fc1"]["bytes_after"] < rows["fc1"]["bytes_before"] / 3
    if act == "static":
        assert rows["unused"]["action"].startswith("float: static: never called")
        assert q.fc1.act_scale is not None
    else:
        assert isinstance(q.unused, QuantLinear)


def test_quantize_model_exclude_per_layer_inplace(net, data):
    cfg = QC(
        exclude=("head",), per_layer={"fc1": {"weight": "int4", "activation": None}}
    )
    q = lowbit.quantize_model(net, cfg, inplace=True)
    assert q is net
    assert (
        type(net.head) is nn.Linear
        and net.fc1.weight_dtype == "int4"
        and net.fc1.activation.name == "float"
    )
    assert net.conv.weight_dtype == "int8" and net.conv.activation.name == "dynamic"
    text = str(lowbit.summary(net))
    assert "excluded by config" in text and "int4 weights per_channel, weight-only" in text
    assert text.splitlines()[-1].startswith("total")


def test_quantize_model_bad_input(net, data):
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv2d.*LayerNorm"):
        lowbit.quantize_model(nn.Sequential(nn.LayerNorm(4), nn.ReLU()))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        lowbit.quantize_model(object())
    with pytest.raises(ValueError, match="needs calibration data"):
        lowbit.quantize_model(net, QC(activation="static"))
    with pytest.raises(ValueError, match="batch 0 does not fit the model in layer 'conv'"):
        lowbit.quantize_model(
            net,
            QC(activation="static"),
            calib_data=[torch.randn(2, 5, 8, 8)],
            progress=False,
        )
    with pytest.raises(ValueError, match="batch 1 does not fit the model in layer 'fc1'"):
        lowbit.quantize_model(
            net,
            QC(activation="static"),
            calib_data=[data[0], torch.randn(2, 3, 12, 12)],
            progress=False,
        )
    with pytest.raises(ValueError, match="no batches"):
        lowbit.quantize_model(
            net, QC(activation="static"), calib_data=[], progress=False
        )
    assert type(net.conv) is nn.Conv2d  # untouched after the failures


def test_calibration_accepts_dataloader_style_batches(net, data):
    batches = [(x, torch.zeros(4)) for x in data]
    q1 = lowbit.quantize_model(
        net, QC(activation="static"), calib_data=batches, progress=False
    )
    q2 = lowbit.quantize_model(
        net, QC(activation="static"), calib_data=data, progress=False
    )
    assert torch.equal(q1(data[0]), q2(data[0]))
    lo = min(float(x.min()) for x in data)
    hi = max(float(x.max()) for x in data)
    assert (float(q1.conv.act_scale), int(q1.conv.act_zero_point)) == pytest.approx(
        lowbit.choose_qparams(lo, hi, dtype="uint8")
    )


def test_prepare_qat_trains_and_convert_agrees(net, data):
    net.requires_grad_(True).train()
    cfg = QC(weight="int4", activation="static")
    qat = lowbit.prepare_qat(net, cfg)
    assert (
        isinstance(qat.conv, QATConv2d)
        and isinstance(qat.fc1, QATLinear)
        and type(qat.dw) is nn.Conv2d
    )
    assert qat.fc1.weight is not net.fc1.weight  # a copy (inplace=False)
    opt = torch.optim.SGD(qat.parameters(), lr=0.01)
    w0 = qat.fc1.weight.detach().clone()
    for x in data:
        opt.zero_grad()
        qat(x).square().mean().backward()
        opt.step()
    assert not torch.equal(w0, qat.fc1.weight)
    qat.eval()
    c = lowbit.convert(qat)
    assert (
        isinstance(c.conv, QuantConv2d)
        and c.conv.activation.name == "static"
        and c.fc1.weight_dtype == "int4"
    )
    assert int(c.fc1.weight_int8.min()) >= -8 and int(c.fc1.weight_int8.max()) <= 7
    with torch.no_grad():
        for x in data:
            # layer by layer, on the same input: equal to float rounding
            h = torch.relu(qat.conv(x))
            torch.testing.assert_close(c.conv(x), qat.conv(x), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(
                c.fc1(h.flatten(1)[:, :128]), qat.fc1(h.flatten(1)[:, :128]), rtol=1e-5, atol=1e-5
            )
            # whole model: within one quantization step of each output
            y_fq, y_int = qat(x), c(x)
            step = float(y_fq.max() - y_fq.min()) / 255
            assert float((y_fq - y_int).abs().max()) <= step


def test_convert_errors(net):
    with pytest.raises(ValueError, match="no QAT layer"):
        lowbit.convert(net)
    qat = lowbit.prepare_qat(net, QC(activation="static"))
    with pytest.raises(ValueError, match="layer 'conv' never saw data"):
        lowbit.convert(qat)


def test_learnable_scale_is_trained(net, data):
    net.requires_grad_(True)
    qat = lowbit.prepare_qat(
        net, QC(weight="int4", activation="static"), learnable_scale=True
    )
    assert isinstance(qat.fc1.weight_fake_quant.scale, nn.Parameter)
    qat.train()
    qat(data[0])
    s0 = qat.fc1.weight_fake_quant.scale.detach().clone()
    opt = torch.optim.Adam(qat.parameters(), lr=1e-3)
    for x in data:
        opt.zero_grad()
        qat(x).square().mean().backward()
        opt.step()
    assert not torch.equal(s0, qat.fc1.weight_fake_quant.scale.detach())
    c = lowbit.convert(qat.eval())
    torch.testing.assert_close(c.fc1.weight_scale, qat.fc1.weight_fake_quant.scale.detach())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_quantize_model_in_other_float_dtypes(net, data, dtype):
    model = copy.deepcopy(net).to(dtype)
    q = lowbit.quantize_model(
        model,
        QC(activation="static"),
        calib_data=[d.to(dtype) for d in data],
        progress=False,
    )
    y = q(data[0].to(dtype))
    assert y.dtype == dtype
    ref = lowbit.quantize_model(
        net, QC(activation="static"), calib_data=data, progress=False
    )
    torch.testing.assert_close(y.float(), ref(data[0]), rtol=0.05, atol=0.05)


def test_meta_device_model_traces_shapes(net, data):
    q = lowbit.quantize_model(
        net, QC(activation="static"), calib_data=data, progress=False
    )
    y = q.to("meta")(data[0].to("meta"))
    assert y.device.type == "meta" and y.shape == (4, 5)


def test_calibration_with_a_dataloader(net, data):
    ds = torch.utils.data.TensorDataset(torch.cat(data), torch.zeros(12))
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    q = lowbit.quantize_model(
        net, QC(activation="static"), calib_data=loader, progress=False
    )
    ref = lowbit.quantize_model(
        net, QC(activation="static"), calib_data=data, progress=False
    )
    assert torch.equal(q(data[1]), ref(data[1]))


def test_embeddings_quantized_when_asked(net, data):
    q = lowbit.quantize_model(net, QC())
    assert type(q.emb) is nn.Embedding
    assert "embedding='int8'" in {r["layer"]: r for r in lowbit.summary(q).rows}["emb"]["action"]
    q8 = lowbit.quantize_model(net, QC(embedding="int8"))
    assert isinstance(q8.emb, lowbit.nn.QuantEmbedding)
    idx = torch.tensor([[0, 3, 9], [2, 2, 1]])
    err = (q8.emb(idx) - net.emb(idx)).abs()
    step = net.emb.weight.abs().amax(1)[idx] / 127
    assert bool((err <= step[..., None] / 2 + 1e-6).all())
    rows = {r["layer"]: r for r in lowbit.summary(q8).rows}
    assert rows["emb"]["bytes_after"] == 10 * 6 + 10 * 4
    with pytest.raises(TypeError, match="index tensor"):
        q8.emb(idx.float())


def test_non_finite_weights_stay_float(net):
    with torch.no_grad():
        net.fc1.weight[0, 0] = float("nan")
    q = lowbit.quantize_model(net, QC())
    assert type(q.fc1) is nn.Linear and isinstance(q.head, QuantLinear)
    assert {r["layer"]: r for r in lowbit.summary(q).rows}["fc1"][
        "action"
    ] == "float: weights contain NaN or inf"


def test_quantized_model_pickles_and_deepcopies(net, data, tmp_path):
    q = lowbit.quantize_model(
        net, QC(activation="static"), calib_data=data, progress=False
    )
    torch.save(q, tmp_path / "full.pt")
    q2 = torch.load(tmp_path / "full.pt", weights_only=False)
    assert torch.equal(q2(data[0]), q(data[0]))
    assert torch.equal(copy.deepcopy(q)(data[0]), q(data[0]))


def test_qat_with_dynamic_activations_fakes_weights_only(net, data):
    qat = lowbit.prepare_qat(net, QC(weight="int4"))
    assert qat.fc1.input_fake_quant is None
    qat.train()
    qat(data[0])
    qat.eval()
    c = lowbit.convert(qat)
    assert c.fc1.activation.name == "dynamic" and c.fc1.weight_dtype == "int4"
    with torch.no_grad():
        x = torch.relu(qat.fc1(torch.randn(3, 128)))
        h = torch.randn(3, 128)
        wq = qat.fc1.weight_fake_quant(qat.fc1.weight)
        torch.testing.assert_close(c.fc1.dequantized_weight(), wq)
        step = float(h.abs().max()) * 2 / 255 * float(wq.abs().sum(1).max())
        assert float((c.fc1(h) - qat.fc1(h)).abs().max()) <= step
    assert x.shape == (3, 32)


def test_summary_renders_html_and_totals(net):
    s = lowbit.summary(lowbit.quantize_model(net, QC()))
    html = s._repr_html_()
    assert html.startswith("<table>") and "QuantConv2d" in html and lowbit.format_bytes(s.bytes_after).removesuffix(" MiB") in html and "MiB after" in html
    assert s.bytes_after == sum(r["bytes_after"] for r in s.rows) < s.bytes_before


# -- shared weights ------------------------------------------------------------------------------


class SharedPair(nn.Module):
    """Two Linear layers using one weight Parameter (own biases), a third registered twice."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(64, 64)
        self.b = nn.Linear(64, 64)
        self.b.weight = self.a.weight
        self.c = nn.Linear(64, 8)
        self.c_again = self.c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_again(torch.relu(self.c(torch.relu(self.b(torch.relu(self.a(x)))))[..., :8].repeat(1, 8)))


def shared_pair() -> SharedPair:
    torch.manual_seed(0)
    return SharedPair().eval()


@pytest.mark.parametrize("weight", ["int8", "nf4", "fp16", "ternary"])
def test_weight_shared_by_linear_layers_is_quantized_and_stored_once(weight):
    m = shared_pair()
    x = torch.randn(3, 64)
    q = lowbit.quantize_model(m, lowbit.QuantConfig(weight=weight))
    assert q.c is q.c_again and isinstance(q.c, QuantLinear)
    for name in q.a.scheme.storage_spec(64, 64):
        assert q.a._buffers[name] is q.b._buffers[name]
    assert q.a.bias is not q.b.bias
    torch.testing.assert_close(q.a.dequantized_weight(), q.b.dequantized_weight(), rtol=0, atol=0)
    s = lowbit.summary(q)
    assert s.bytes_before == lowbit.metrics.model_nbytes(m) == 4 * (64 * 64 + 2 * 64 + 64 * 8 + 8)
    assert s.bytes_after == lowbit.metrics.model_nbytes(q) < s.bytes_before
    if weight != "ternary":
        assert (q(x) - m(x)).abs().max() < 0.2 * m(x).abs().max()


def test_shared_weight_with_a_float_or_different_user_stays_float_in_all():
    m = shared_pair()
    for cfg in (lowbit.QuantConfig(exclude=["b"]), lowbit.QuantConfig(per_layer={"b": {"weight": "int4"}})):
        q = lowbit.quantize_model(m, cfg)
        rows = {r["layer"]: r for r in lowbit.summary(q).rows}
        assert type(q.a) is nn.Linear and type(q.b) is nn.Linear and q.a.weight is q.b.weight
        assert rows["a"]["action"].startswith("float: shares its weight with 'b' and ")
        assert isinstance(q.c, QuantLinear)
        assert lowbit.metrics.model_nbytes(q) < lowbit.metrics.model_nbytes(m)


def test_tied_embedding_and_head_share_one_int8_table():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Embedding(100, 32), nn.LayerNorm(32), nn.Linear(32, 100, bias=False)).eval()
    m[2].weight = m[0].weight
    idx = torch.randint(0, 100, (2, 7))
    q = lowbit.quantize_model(m, lowbit.QuantConfig(embedding="int8"))
    assert q[2].weight_int8 is q[0].weight_int8 and q[2].weight_scale is q[0].weight_scale
    # the table is the int8 per-row quantization the embedding alone would store
    alone = lowbit.nn.QuantEmbedding.from_float(m[0])
    assert torch.equal(alone.weight_int8, q[0].weight_int8)
    torch.testing.assert_close(alone.weight_scale, q[0].weight_scale, rtol=0, atol=0)
    assert lowbit.metrics.model_nbytes(q) == lowbit.summary(q).bytes_after < lowbit.metrics.model_nbytes(m) / 3
    with torch.no_grad():
        assert (q(idx) - m(idx)).abs().max() < 0.05 * m(idx).abs().max()
    q_float_emb = lowbit.quantize_model(m)  # embedding float: the tied head stays float (not an error)
    assert type(q_float_emb[2]) is nn.Linear and q_float_emb[2].weight is q_float_emb[0].weight
    assert lowbit.summary(q_float_emb).rows[2]["action"] == (
        "float: tied to '0'; quantize the embedding too with QuantConfig(embedding='int8')")


# -- a quantized model is never larger than its float model --------------------------------------


def _transformer(kind: str) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=256, n_positions=32,
                                      bos_token_id=0, eos_token_id=0)
        return transformers.GPT2LMHeadModel(cfg).eval()
    if kind == "bert":
        cfg = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=128, vocab_size=256, max_position_embeddings=32)
        return transformers.BertModel(cfg).eval()
    cfg = transformers.LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                   intermediate_size=128, vocab_size=256, max_position_embeddings=32,
                                   bos_token_id=0, eos_token_id=0, tie_word_embeddings=True)
    return transformers.LlamaForCausalLM(cfg).eval()


def _test_models() -> dict:
    from lowbit.models import DigitsCNN

    g = torch.Generator().manual_seed(2)
    tokens = {"input_ids": torch.randint(0, 256, (2, 16), generator=g)}

    def mlp():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4)).eval()

    def tied_twice():
        tied = nn.Linear(4, 4, bias=False)
        return nn.Sequential(tied, tied).eval()

    def net():
        torch.manual_seed(0)
        return Net().eval()

    def tied_lm():  # the tied table is most of the model: a second copy would make it larger
        torch.manual_seed(0)
        m = nn.Sequential(nn.Embedding(256, 32), nn.LayerNorm(32), nn.Linear(32, 256, bias=False)).eval()
        m[2].weight = m[0].weight
        return m

    return {
        "net": (net, torch.randn(2, 3, 8, 8, generator=g)),
        "digits_cnn": (lambda: DigitsCNN().eval(), torch.randn(2, 1, 8, 8, generator=g)),
        "mlp": (mlp, torch.randn(2, 64, generator=g)),
        "tied_twice": (tied_twice, torch.randn(2, 4, generator=g)),
        "tied_lm": (tied_lm, tokens["input_ids"]),
        "shared_pair": (shared_pair, torch.randn(2, 64, generator=g)),
        "gpt2_tied": (lambda: _transformer("gpt2"), tokens),
        "bert": (lambda: _transformer("bert"), tokens),
        "llama_tied": (lambda: _transformer("llama"), tokens),
    }


SIZE_CONFIGS = {
    "int8": {},
    "int8_static": {"activation": "static"},
    "int8_weight_only": {"activation": None},
    "int8_emb": {"embedding": "int8"},
    "int4": {"weight": "int4"},
    "int4_g32_emb": {"weight": "int4", "group_size": 32, "embedding": "int8"},
    "nf4": {"weight": "nf4"},
    "uint4": {"weight": "uint4", "activation": None},
    "fp16": {"weight": "fp16"},
    "bf16_emb": {"weight": "bf16", "embedding": "int8"},
    "log2": {"weight": "log2"},
    "ternary": {"weight": "ternary"},
    "binary": {"weight": "binary"},
}


@pytest.mark.parametrize("config", list(SIZE_CONFIGS))
@pytest.mark.parametrize("model_name", list(_test_models()))
def test_quantized_model_is_never_larger_than_float(model_name, config):
    make, batch = _test_models()[model_name]
    m = make()
    q = lowbit.quantize_model(m, QC(**SIZE_CONFIGS[config]), calib_data=[batch], progress=False)
    s = lowbit.summary(q)
    float_bytes, quant_bytes = lowbit.metrics.model_nbytes(m), lowbit.metrics.model_nbytes(q)
    # summary lists layers with parameters; buffers of parameterless modules (BERT's position_ids,
    # Llama's rotary inv_freq) are in model_nbytes only, the same bytes on both sides
    assert float_bytes - s.bytes_before == quant_bytes - s.bytes_after >= 0
    assert quant_bytes <= float_bytes and s.bytes_after <= s.bytes_before
    if any(isinstance(mod, (QuantLinear, QuantConv2d)) for mod in q.modules()):
        assert quant_bytes < float_bytes


class SharedPairSkippingB(SharedPair):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # 'b' never runs: no static activation range
        return self.c(self.a(x))


def test_shared_weight_group_stays_float_when_a_member_falls_back_at_calibration():
    torch.manual_seed(0)
    m = SharedPairSkippingB().eval()
    with pytest.warns(UserWarning, match="'b' stays float"):
        q = lowbit.quantize_model(m, QC(activation="static"), calib_data=[torch.randn(2, 64)], progress=False)
    rows = {r["layer"]: r for r in lowbit.summary(q).rows}
    assert type(q.a) is nn.Linear and type(q.b) is nn.Linear and q.a.weight is q.b.weight
    assert rows["a"]["action"] == "float: shares its weight with 'b', which stays float"
    assert isinstance(q.c, QuantLinear) and q.c is q.c_again
    assert lowbit.metrics.model_nbytes(q) < lowbit.metrics.model_nbytes(m)
