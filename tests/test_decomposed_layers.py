"""torch layers whose weights are not Linear modules, decomposed into Linear layers
(lowbit.nn.decompose) and quantized whole: nn.MultiheadAttention (nn.TransformerEncoder / Decoder /
Transformer) as lowbit.nn.MultiheadAttention, nn.LSTM / GRU / RNN as lowbit.nn.Recurrent,
nn.ConvTranspose1d / 2d as lowbit.nn.ConvTranspose. Each keeps torch's results for every argument,
and quantize_model / prepare_qat / save / load / compare / sensitivity cover it; a quantized encoder
never runs torch's fused float "fast path"."""

from __future__ import annotations

import copy
import itertools
import warnings

import lowbit
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = nn.functional


def _cos(a, b) -> float:
    return float(F.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


def _inputs(batch_first: bool, batched: bool, kdim: int, vdim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n, tgt, src = 3, 5, 7

    def shape(length, e):
        return ((n, length, e) if batch_first else (length, n, e)) if batched else (length, e)

    q, k, v = (torch.randn(shape(length, e), generator=g) for length, e in ((tgt, 32), (src, kdim), (src, vdim)))
    kpm = torch.rand((n, src) if batched else (src,), generator=g) < 0.3
    kpm[..., 0] = False  # every query sees one key at least
    am = torch.rand(tgt, src, generator=g) < 0.2
    am[:, 0] = False
    am3 = torch.randn((n * 4 if batched else 4, tgt, src), generator=g)
    calls = [{}, {"need_weights": False}, {"key_padding_mask": kpm}, {"key_padding_mask": kpm, "need_weights": False},
             {"attn_mask": am}, {"attn_mask": am, "key_padding_mask": kpm, "need_weights": False},
             {"attn_mask": torch.zeros(tgt, src).masked_fill(am, float("-inf")), "need_weights": False},
             {"key_padding_mask": torch.zeros(kpm.shape).masked_fill(kpm, -1e4)},
             {"attn_mask": am3}, {"attn_mask": am3, "need_weights": False}, {"average_attn_weights": False}]
    return (q, k, v), calls


@pytest.mark.parametrize("batch_first,kv,bias,bias_kv,zero_attn,batched",
                         list(itertools.product([True, False], [None, (24, 20)], [True, False], [False, True],
                                                [False, True], [True, False])))
def test_decomposed_attention_matches_torch_for_every_argument(batch_first, kv, bias, bias_kv, zero_attn, batched):
    torch.manual_seed(0)
    kdim, vdim = kv or (32, 32)
    mha = nn.MultiheadAttention(32, 4, bias=bias, add_bias_kv=bias_kv, add_zero_attn=zero_attn, kdim=kdim,
                                vdim=vdim, batch_first=batch_first).eval()
    mine = lowbit.nn.MultiheadAttention(mha)
    assert [type(getattr(mine, p)) for p in ("q_proj", "k_proj", "v_proj", "out_proj")] == [nn.Linear] * 4
    (q, k, v), calls = _inputs(batch_first, batched, kdim, vdim)
    for kw in calls:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch: "mismatched key_padding_mask and attn_mask types"
            for grad in (True, False):
                with torch.set_grad_enabled(grad):
                    want, got = mha(q, k, v, **kw), mine(q, k, v, **kw)
                torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5, msg=lambda m, kw=kw: f"{kw}: {m}")
                if want[1] is None:
                    assert got[1] is None
                else:
                    torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-5)


def test_decomposed_attention_shares_weights_and_keeps_the_mode():
    mha = nn.MultiheadAttention(16, 2, dropout=0.5, batch_first=True)
    mine = lowbit.nn.MultiheadAttention(mha)
    assert mine.training
    assert mine.q_proj.weight.data_ptr() == mha.in_proj_weight.data_ptr()  # a view, no copy
    assert mine.out_proj.weight is mha.out_proj.weight
    assert not lowbit.nn.MultiheadAttention(mha.eval()).training  # dropout stays off in eval
    torch.testing.assert_close(mine.in_proj_weight * 1, mha.in_proj_weight.detach())
    torch.testing.assert_close(mine.in_proj_bias, mha.in_proj_bias.detach())
    causal = nn.Transformer.generate_square_subsequent_mask(6)
    x = torch.randn(2, 6, 16)
    mha.eval(), mine.eval()
    for nw in (True, False):
        torch.testing.assert_close(mine(x, x, x, attn_mask=causal, is_causal=True, need_weights=nw)[0],
                                   mha(x, x, x, attn_mask=causal, is_causal=True, need_weights=nw)[0])
    with pytest.raises(RuntimeError, match="is_causal"):
        mine(x, x, x, is_causal=True)
    with pytest.raises(TypeError, match="mha"):
        lowbit.nn.MultiheadAttention(nn.Linear(2, 2))


class _Seq2Seq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tr = nn.Transformer(64, 4, 2, 2, 128, batch_first=True)
        self.head = nn.Linear(64, 8)

    def forward(self, src, tgt):
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
        return self.head(self.tr(src, tgt, tgt_mask=mask, tgt_is_causal=True))


def _seq2seq_data(seed: int):
    g = torch.Generator().manual_seed(seed)
    return {"src": torch.randn(4, 10, 64, generator=g), "tgt": torch.randn(4, 6, 64, generator=g)}


@pytest.mark.parametrize("config,floor", [({}, 0.999), ({"activation": "static"}, 0.999),
                                          ({"weight": "int4", "group_size": 32}, 0.98),
                                          ({"weight": "int4", "group_size": 32, "algorithm": "gptq"}, 0.98)])
def test_torch_transformer_quantizes_whole(config, floor, tmp_path):
    torch.manual_seed(0)
    model = _Seq2Seq().eval()
    calib = [_seq2seq_data(s) for s in (1, 2, 3)]
    q = lowbit.quantize_model(model, config, calib_data=calib, progress=False)
    assert isinstance(model.tr.encoder.layers[0].self_attn, nn.MultiheadAttention)  # the caller's model is intact
    rows = {r["layer"]: r for r in lowbit.summary(q).rows}
    for stack, kinds in (("encoder", ("self_attn",)), ("decoder", ("self_attn", "multihead_attn"))):
        for i, kind in itertools.product(range(2), kinds):
            for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
                assert rows[f"tr.{stack}.layers.{i}.{kind}.{p}"]["type"] == "QuantLinear"
    assert not [n for n, r in rows.items() if r["action"].startswith("float") and "LayerNorm" not in r["action"]]
    x = _seq2seq_data(0)
    with torch.no_grad():
        want, got = model(**x), q(**x)
    assert _cos(got, want) >= floor
    path = tmp_path / "t.lowbit"
    lowbit.save(q, path)
    fresh = _Seq2Seq().eval()
    back = lowbit.load(path, fresh)
    with torch.no_grad():
        assert torch.equal(back(**x), got)


def test_encoder_layer_never_takes_torchs_float_fast_path():
    """Under no_grad, nn.TransformerEncoderLayer runs a fused float kernel on its weights when they are
    plain tensors; lowbit's quantized layers must run instead (their result equals the grad-mode one)."""
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 2,
                                enable_nested_tensor=True).eval()
    q = lowbit.quantize_model(enc, progress=False)
    calls = []
    for m in q.modules():
        if isinstance(m, lowbit.nn.QuantLinear):
            m.register_forward_pre_hook(lambda mod, args: calls.append(mod))
    counted = sum(1 for m in q.modules() if isinstance(m, lowbit.nn.QuantLinear))
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        eager = q(x)
    assert len(calls) == counted
    for m in q.modules():
        m._forward_pre_hooks.clear()
    calls.clear()
    x_pad = torch.zeros(2, 5, dtype=torch.bool)
    x_pad[1, 3:] = True
    with torch.no_grad():
        q(x, src_key_padding_mask=x_pad), q(x)  # no nested-tensor conversion, no fused layer
        assert torch.equal(q(x), eager)
    assert torch.overrides.has_torch_function((q.layers[0].linear1.weight,))


def test_qat_and_onnx_export_of_a_transformer_encoder(tmp_path):
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, dropout=0.0), 2).eval()
    x = torch.randn(4, 6, 32)
    qat = lowbit.prepare_qat(enc, {"activation": "static"})
    assert type(qat.layers[0].self_attn).__name__ == "MultiheadAttention"
    opt = torch.optim.SGD(qat.parameters(), lr=1e-3)
    qat.train()
    before = qat.layers[0].self_attn.q_proj.weight.detach().clone()
    for _ in range(2):
        opt.zero_grad()
        qat(x).pow(2).mean().backward()
        opt.step()
    assert not torch.equal(qat.layers[0].self_attn.q_proj.weight, before)  # the query projection trains
    qat.eval()
    converted = lowbit.convert(qat)
    assert isinstance(converted.layers[0].self_attn.q_proj, lowbit.nn.QuantLinear)
    with torch.no_grad():
        assert _cos(converted(x), qat(x)) > 0.999
    ort = pytest.importorskip("onnxruntime")
    q = lowbit.quantize_model(enc, progress=False)
    path = tmp_path / "enc.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lowbit.export_onnx(q, (x,), path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        assert _cos(torch.from_numpy(got), q(x)) > 0.9999


def test_configs_name_the_decomposed_layers_and_inplace_replaces_the_module():
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 2).eval()
    q = lowbit.quantize_model(enc, {"exclude": ["*.self_attn.v_proj"]}, progress=False)
    assert type(q.layers[1].self_attn.v_proj) is nn.Linear
    assert isinstance(q.layers[1].self_attn.k_proj, lowbit.nn.QuantLinear)
    with pytest.raises(ValueError, match="q_prj"):
        lowbit.quantize_model(enc, {"exclude": ["layers.0.self_attn.q_prj"]}, progress=False)
    work = copy.deepcopy(enc)
    lowbit.quantize_model(work, inplace=True, progress=False)
    assert isinstance(work.layers[0].self_attn, lowbit.nn.MultiheadAttention)
    r = lowbit.compare(enc, q, torch.randn(2, 5, 32), progress=False, timing=False)
    assert "layers.0.self_attn.q_proj" in [layer.name for layer in r.layers]
    assert isinstance(enc.layers[0].self_attn, nn.MultiheadAttention)  # compare puts the float module back


# -- nn.LSTM / nn.GRU / nn.RNN (lowbit.nn.Recurrent) --

_RNN_CASES = [(cls, layers, bi, bf, bias, proj, batched, packed, init)
              for cls, layers, bi, bf, bias, proj, batched, packed, init in itertools.product(
                  [nn.LSTM, nn.GRU, nn.RNN], [1, 2], [False, True], [False, True], [True, False], [0, 5],
                  [True, False], [False, True], [False, True])
              if not (proj and cls is not nn.LSTM) and not (packed and not batched)]


def _flat(o):
    if isinstance(o, torch.nn.utils.rnn.PackedSequence):
        return [o.data, o.batch_sizes, o.sorted_indices, o.unsorted_indices]
    if isinstance(o, tuple):
        return [t for y in o for t in _flat(y)]
    return [o]


@pytest.mark.parametrize("cls,layers,bi,bf,bias,proj,batched,packed,init", _RNN_CASES)
def test_recurrent_matches_torch_for_every_argument(cls, layers, bi, bf, bias, proj, batched, packed, init):
    torch.manual_seed(0)
    rnn = cls(6, 8, num_layers=layers, bidirectional=bi, batch_first=bf, bias=bias,
              **({"proj_size": proj} if proj else {})).eval()
    mine = lowbit.nn.Recurrent(rnn)
    steps, n, d, out = 7, 4, 2 if bi else 1, proj or 8
    x = torch.randn((n, steps, 6) if bf else (steps, n, 6)) if batched else torch.randn(steps, 6)
    hx = None
    if init:
        h0 = torch.randn((layers * d, n, out) if batched else (layers * d, out))
        hx = (h0, torch.randn((layers * d, n, 8) if batched else (layers * d, 8))) if cls is nn.LSTM else h0
    if packed:
        x = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([7, 3, 5, 3]), batch_first=bf,
                                                    enforce_sorted=False)
    saved = None if hx is None else tuple(t.clone() for t in _flat(hx))
    for grad in (True, False):  # torch ops, and NumPy gate arithmetic in inference
        with warnings.catch_warnings(), torch.set_grad_enabled(grad):
            warnings.simplefilter("ignore")  # "LSTM with projections is not supported with oneDNN"
            want, got = _flat(rnn(x, hx)), _flat(mine(x, hx))
        assert len(want) == len(got)
        for w, g in zip(want, got):
            if w is None:
                assert g is None
            else:
                torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    if hx is not None:  # the caller's initial state is not modified
        for t, t0 in zip(_flat(hx), _flat(saved)):
            assert torch.equal(t, t0)


def test_recurrent_refuses_bad_input_and_keeps_the_mode():
    lstm = nn.LSTM(4, 8, num_layers=2, dropout=0.5)
    mine = lowbit.nn.Recurrent(lstm)
    assert mine.training and mine.ih_l1.weight is lstm.weight_ih_l1  # torch's own Parameters
    mine.flatten_parameters()  # models call it in their forward
    assert not lowbit.nn.Recurrent(lstm.eval()).training
    with pytest.raises(RuntimeError, match="input_size"):
        mine(torch.randn(3, 2, 5))
    with pytest.raises(RuntimeError, match="hidden size"):
        mine(torch.randn(3, 2, 4), (torch.zeros(1, 2, 8), torch.zeros(2, 2, 8)))
    with pytest.raises(ValueError, match="2D or 3D"):
        mine(torch.randn(4))
    with pytest.raises(TypeError, match="rnn"):
        lowbit.nn.Recurrent(nn.Linear(2, 2))


class _Tagger(nn.Module):
    def __init__(self, cls):
        super().__init__()
        self.rnn = cls(16, 32, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(64, 5)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("config,floor", [({}, 0.999), ({"activation": "static"}, 0.998),
                                          ({"weight": "int4", "group_size": 32}, 0.98)])
def test_recurrent_models_quantize_whole(cls, config, floor, tmp_path):
    torch.manual_seed(0)
    model = _Tagger(cls).eval()
    calib = [torch.randn(4, 12, 16) for _ in range(3)]
    q = lowbit.quantize_model(model, config, calib_data=calib, progress=False)
    rows = {r["layer"]: r for r in lowbit.summary(q).rows}
    for part in lowbit.nn.Recurrent.part_names(model.rnn):
        assert rows[f"rnn.{part}"]["type"] == "QuantLinear"
    assert not [n for n, r in rows.items() if r["action"].startswith("float")]
    x = torch.randn(4, 12, 16)
    with torch.no_grad():
        got = q(x)
        assert _cos(got, model(x)) >= floor
    path = tmp_path / "rnn.lowbit"
    lowbit.save(q, path)
    back = lowbit.load(path, _Tagger(cls).eval())
    with torch.no_grad():
        assert torch.equal(back(x), got)


def test_recurrent_qat_trains_and_converts():
    torch.manual_seed(0)
    model = _Tagger(nn.LSTM)
    qat = lowbit.prepare_qat(model, {"activation": "static"})
    opt = torch.optim.Adam(qat.parameters(), lr=1e-2)
    x, y = torch.randn(8, 10, 16), torch.randint(0, 5, (8, 10))
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = F.cross_entropy(qat(x).reshape(-1, 5), y.reshape(-1))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    qat.eval()
    q = lowbit.convert(qat)
    assert isinstance(q.rnn.hh_l1_reverse, lowbit.nn.QuantLinear)
    with torch.no_grad():
        assert _cos(q(x), qat(x)) > 0.999


def test_a_bare_recurrent_or_attention_module_is_a_model_too(tmp_path):
    torch.manual_seed(0)
    lstm = nn.LSTM(16, 32, num_layers=2, bidirectional=True).eval()
    x = torch.randn(9, 3, 16)
    q = lowbit.quantize_model(lstm, progress=False)
    assert isinstance(q, lowbit.nn.Recurrent) and isinstance(lstm, nn.LSTM)
    with torch.no_grad():
        assert _cos(q(x)[0], lstm(x)[0]) > 0.999
    r = lowbit.compare(lstm, q, x, progress=False, timing=False)
    assert sorted(layer.name for layer in r.layers) == sorted(lowbit.nn.Recurrent.part_names(lstm))
    path = tmp_path / "lstm.lowbit"
    lowbit.save(q, path)
    back = lowbit.load(path, nn.LSTM(16, 32, num_layers=2, bidirectional=True))
    with torch.no_grad():
        assert torch.equal(back(x)[0], q(x)[0])
    with pytest.raises(ValueError, match="inplace"):
        lowbit.quantize_model(lstm, inplace=True, progress=False)
    assert isinstance(lstm, nn.LSTM) and type(lstm.weight_ih_l0) is nn.Parameter  # left as it was
    s = lowbit.sensitivity(lstm, x, {"weight": "int4", "group_size": 32}, progress=False)
    assert {row["layer"] for row in s.rows} == set(lowbit.nn.Recurrent.part_names(lstm))
    mha = nn.MultiheadAttention(32, 4).eval()
    qm = lowbit.quantize_model(mha, progress=False)
    y = torch.randn(5, 2, 32)
    with torch.no_grad():
        assert _cos(qm(y, y, y)[0], mha(y, y, y)[0]) > 0.999


@pytest.mark.parametrize("config", [{"activation": "static", "algorithm": "smoothquant"},
                                    {"weight": "int4", "group_size": 32, "algorithm": "awq"},
                                    {"weight": "int4", "group_size": 32, "algorithm": lowbit.AutoRound(steps=20)},
                                    {"weight": "int4", "group_size": 32, "rotation": "hadamard"}],
                         ids=["smoothquant", "awq", "autoround", "rotation"])
def test_algorithms_run_on_decomposed_attention_and_recurrences(config):
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(64, 4, 128, batch_first=True), 2).eval()
    gru = _Tagger(nn.GRU).eval()
    for model, shape in ((enc, (4, 10, 64)), (gru, (4, 10, 16))):
        calib = [torch.randn(shape) for _ in range(3)]
        q = lowbit.quantize_model(model, config, calib_data=calib, progress=False)
        quantized = {n for n, m in q.named_modules() if isinstance(m, lowbit.nn.QuantLinear)}
        assert any(n.endswith(("self_attn.q_proj", "self_attn.q_proj.layer", "rnn.hh_l0", "rnn.hh_l0.layer"))
                   for n in quantized)
        x = torch.randn(shape)
        with torch.no_grad():
            assert _cos(q(x), model(x)) > 0.99


# -- nn.ConvTranspose1d / 2d (lowbit.nn.ConvTranspose) --

_CT_CASES = [c for c in itertools.product([1, 2], [1, 2, 3], [1, 2, 3], [0, 1], [0, 1], [1, 2], [True, False])
             if c[4] < max(c[2], c[5])]


@pytest.mark.parametrize("dims,k,s,p,op,d,batched", _CT_CASES)
def test_conv_transpose_matches_torch_for_every_argument(dims, k, s, p, op, d, batched):
    torch.manual_seed(0)
    cls = nn.ConvTranspose1d if dims == 1 else nn.ConvTranspose2d
    conv = cls(6, 5, k, stride=s, padding=p, output_padding=op, dilation=d, bias=bool(p))
    mine = lowbit.nn.ConvTranspose(conv)
    shape = (3, 6, 7) if dims == 1 else (3, 6, 7, 4)
    x = torch.randn(shape if batched else shape[1:])
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            torch.testing.assert_close(mine(x), conv(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mine.weight, conv.weight.detach())


def test_conv_transpose_output_size_bad_input_and_groups():
    torch.manual_seed(0)
    conv = nn.ConvTranspose2d(6, 5, 3, stride=2, padding=1)
    mine = lowbit.nn.ConvTranspose(conv)
    x = torch.randn(2, 6, 7, 7)
    torch.testing.assert_close(mine(x, output_size=[14, 14]), conv(x, output_size=[14, 14]))
    with pytest.raises(ValueError, match="output size"):
        mine(x, output_size=[20, 20])
    with pytest.raises(RuntimeError, match="channels"):
        mine(torch.randn(2, 5, 7, 7))
    with pytest.raises(TypeError, match="groups=1"):
        lowbit.nn.ConvTranspose(nn.ConvTranspose2d(4, 4, 2, groups=2))
    grouped = nn.Sequential(nn.ConvTranspose2d(4, 4, 2, stride=2, groups=2), nn.Conv2d(4, 2, 1))
    q = lowbit.quantize_model(grouped, progress=False)
    assert type(q[0]) is nn.ConvTranspose2d  # stays float, and summary says so
    assert lowbit.summary(q).rows[0]["action"].startswith("float")


class _AutoEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU())
        self.dec = nn.Sequential(nn.ConvTranspose2d(32, 16, 2, 2), nn.ReLU(), nn.ConvTranspose2d(16, 8, 4, 2, 1),
                                 nn.ReLU(), nn.Conv2d(8, 3, 3, 1, 1))

    def forward(self, x):
        return self.dec(self.enc(x))


@pytest.mark.parametrize("config,floor", [({}, 0.999), ({"activation": "static"}, 0.999),
                                          ({"weight": "int4", "group_size": 32}, 0.99)])
def test_transposed_convolutions_quantize(config, floor, tmp_path):
    torch.manual_seed(0)
    model = _AutoEncoder().eval()
    calib = [torch.randn(4, 3, 32, 32) for _ in range(2)]
    q = lowbit.quantize_model(model, config, calib_data=calib, progress=False)
    assert isinstance(q.dec[0].linear, lowbit.nn.QuantLinear) and isinstance(q.dec[2].linear, lowbit.nn.QuantLinear)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        got = q(x)
        assert _cos(got, model(x)) >= floor
    path = tmp_path / "ae.lowbit"
    lowbit.save(q, path)
    back = lowbit.load(path, _AutoEncoder().eval())
    with torch.no_grad():
        assert torch.equal(back(x), got)
    qat = lowbit.prepare_qat(model, {"activation": "static"})
    qat(x).sum().backward()
    assert qat.dec[2].linear.weight.grad is not None
    qat.eval()
    with torch.no_grad():
        assert _cos(lowbit.convert(qat)(x), qat(x)) > 0.999


def test_transposed_convolutions_export_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = _AutoEncoder().eval()
    q = lowbit.quantize_model(model, {"activation": "static"}, calib_data=[torch.randn(4, 3, 32, 32)], progress=False)
    x = torch.randn(2, 3, 32, 32)
    path = tmp_path / "ae.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lowbit.export_onnx(q, (x,), path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        torch.testing.assert_close(got, q(x), rtol=1e-4, atol=1e-4)


def test_activation_after_a_transposed_convolution_runs_in_place_bit_identical():
    torch.manual_seed(0)
    model = _AutoEncoder().eval()
    q = lowbit.quantize_model(model, {"activation": "static"}, calib_data=[torch.randn(4, 3, 32, 32)], progress=False)
    assert ("dec.0", "dec.1") in lowbit.nn.fused_activations(q)
    plain = copy.deepcopy(q)
    lowbit.nn.unfuse_activations_(plain)
    assert not lowbit.nn.fused_activations(plain)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(q(x), plain(x))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inductor imports torch.jit internals
def test_decomposed_layers_compile():
    """torch.compile traces the decomposed forms (functional ops there: no recycled buffers, no NumPy steps)."""
    torch.manual_seed(0)
    for model, x in ((_AutoEncoder().eval(), torch.randn(2, 3, 16, 16)), (_Tagger(nn.GRU).eval(), torch.randn(2, 6, 16))):
        q = lowbit.quantize_model(model, progress=False)
        torch._dynamo.reset()
        compiled = torch.compile(q)  # inductor: it restrided an ``out=`` result the reshape then viewed
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), q(x), rtol=1e-5, atol=1e-5)


# -- nn.Conv3d (lowbit.nn.Conv3d) --

_C3_CASES = list(itertools.product([1, 3, (3, 1, 1), (1, 3, 3)], [1, 2, (2, 1, 1)], [0, 1, (1, 0, 0)], [1, 2], [1, 2],
                                   [True, False]))


@pytest.mark.parametrize("k,s,p,d,groups,batched", _C3_CASES)
def test_conv3d_matches_torch_for_every_argument(k, s, p, d, groups, batched):
    torch.manual_seed(0)
    conv = nn.Conv3d(4, 6, k, stride=s, padding=p, dilation=d, groups=groups, bias=groups == 1)
    mine = lowbit.nn.Conv3d(conv)
    x = torch.randn((2, 4, 7, 8, 9) if batched else (4, 7, 8, 9))
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            torch.testing.assert_close(mine(x), conv(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mine.weight, conv.weight.detach())
    if groups > 1:  # one Conv2d per kernel depth over views of torch's weight; else the slices as channels
        assert mine.depth[0].weight.data_ptr() == conv.weight.data_ptr()
    else:
        assert mine.conv.in_channels == 4 * conv.kernel_size[0]


def test_conv3d_refuses_bad_input():
    conv = nn.Conv3d(4, 6, 3)
    mine = lowbit.nn.Conv3d(conv)
    with pytest.raises(ValueError, match="5-D"):
        mine(torch.randn(4, 5, 5))
    with pytest.raises(RuntimeError, match="channels"):
        mine(torch.randn(1, 3, 5, 5, 5))
    with pytest.raises(RuntimeError, match="smaller than the kernel"):
        mine(torch.randn(1, 4, 2, 5, 5))
    with pytest.raises(TypeError, match="Conv3d"):
        lowbit.nn.Conv3d(nn.Conv3d(4, 6, 3, padding="same"))


class _Video(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Conv3d(3, 16, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2)), nn.BatchNorm3d(16),
                               nn.ReLU(), nn.Conv3d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                               nn.Conv3d(32, 32, 3, padding=1, groups=4), nn.ReLU(),  # grouped: per-depth layers
                               nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(32, 5))

    def forward(self, x):
        return self.f(x)


@pytest.mark.parametrize("config,floor", [({}, 0.999), ({"activation": "static"}, 0.999),
                                          ({"weight": "int4", "group_size": 32}, 0.99)])
def test_conv3d_models_quantize(config, floor, tmp_path):
    torch.manual_seed(0)
    model = _Video().eval()
    with torch.no_grad():
        model.f[1].running_mean.uniform_(-0.2, 0.2)
        model.f[1].running_var.uniform_(0.5, 2.0)
    calib = [torch.randn(2, 3, 6, 24, 24) for _ in range(2)]
    q = lowbit.quantize_model(model, config, calib_data=calib, progress=False)
    assert type(q.f[1]) is nn.Identity  # BatchNorm3d folded into the Conv3d before it was split
    assert isinstance(q.f[0].conv, lowbit.nn.QuantConv2d) and isinstance(q.f[3].conv, lowbit.nn.QuantConv2d)
    assert all(isinstance(c, lowbit.nn.QuantConv2d) for c in q.f[5].depth)
    x = torch.randn(2, 3, 6, 24, 24)
    with torch.no_grad():
        got = q(x)
        assert _cos(got, model(x)) >= floor
    path = tmp_path / "video.lowbit"
    lowbit.save(q, path)
    fresh = _Video().eval()
    back = lowbit.load(path, fresh)
    with torch.no_grad():
        assert torch.equal(back(x), got)


def test_attention_bad_arguments_raise_what_torch_and_lowbit_callers_catch():
    mine = lowbit.nn.MultiheadAttention(nn.MultiheadAttention(16, 2, batch_first=True))
    x = torch.randn(2, 5, 16)
    for bad in (dict(query=torch.randn(2, 5, 8), key=x, value=x), dict(query=x, key=x, value=torch.randn(2, 4, 16)),
                dict(query=x, key=x, value=x, key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))):
        with pytest.raises(ValueError):
            mine(**bad)
        with pytest.raises(AssertionError):
            mine(**bad)


class _ConvAttention(nn.Module):
    """A hybrid whose BatchNorm is an attribute (not in an nn.Sequential): only the fx trace finds its pair."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x))).flatten(2).transpose(1, 2)
        return self.head(self.attn(y, y, y, need_weights=False)[0].mean(1))


def test_batchnorm_folds_in_a_model_with_decomposed_layers():
    """BatchNorms fold before the decomposition, while nn.MultiheadAttention is still an fx leaf."""
    torch.manual_seed(0)
    model = _ConvAttention().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 2.0)
    q = lowbit.quantize_model(model, progress=False)
    assert type(q.bn) is nn.Identity and isinstance(q.attn.q_proj, lowbit.nn.QuantLinear)
    row = next(r for r in lowbit.summary(q).rows if r["layer"] == "conv")
    assert "folded BatchNorm 'bn'" in row["action"]
    assert row["bytes_before"] == model.conv.weight.numel() * 4  # the float layer as it was, before the fold
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert _cos(q(x), model(x)) > 0.999
