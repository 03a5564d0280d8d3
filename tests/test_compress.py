"""Pruning (structured channels / FFN / heads, magnitude, N:M, gradual) and distillation (issue 15):
shapes and outputs against independently masked float models, bad input leaves the model unchanged,
the digits CNN targets (accuracy only; latency lives in benchmarks/bench_pruning.py)."""

from __future__ import annotations

import copy

import lowbit
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

pytest.importorskip("sklearn")
from lowbit.demo import models as M  # noqa: E402


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(model, state):
    now = model.state_dict()
    return now.keys() == state.keys() and all(torch.equal(now[k], state[k]) for k in state)


def _kept(weight, amount):
    """Indices of the output channels kept by L2 norm (NumPy, independent of the code under test)."""
    w = weight.detach().numpy().reshape(weight.shape[0], -1).astype(np.float64)
    norms = np.sqrt((w * w).sum(1))
    keep = weight.shape[0] - int(weight.shape[0] * amount)
    return np.sort(np.argsort(-norms, kind="stable")[:keep])


def _zero_channels(modules, drop):
    with torch.no_grad():
        for m in modules:
            for t in (m.weight, m.bias):
                if t is not None:
                    t[drop] = 0


@pytest.fixture(scope="module")
def digits():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    data = M.load_digits_data()
    teacher = M.train_digits_cnn(data)
    yield data, teacher
    torch.set_num_threads(threads)


def _batches(data, epochs):
    return list(M.shuffled_batches(data.x_train, data.y_train, epochs))


# ---------------------------------------------------------------------------------------------
# structured pruning


def test_prune_channels_digits_cnn_equals_masked_float(digits):
    data, model = digits
    before = _state(model)
    p = lowbit.prune_channels(model, 0.5, example_inputs=data.x_train[:2], layers=["conv1", "conv2"])
    assert _same_state(model, before)  # the caller's model is untouched
    assert (p.conv1.out_channels, p.conv2.in_channels, p.conv2.out_channels) == (8, 8, 16)
    assert p.fc1.in_features == 16 * 16 and p.fc1.weight.shape == (64, 256)
    k1 = _kept(model.conv1.weight, 0.5)
    k2 = _kept(model.conv2.weight[:, k1], 0.5)  # scored after its removed inputs are gone (graph order)
    assert torch.equal(p.conv1.weight, model.conv1.weight[k1])
    ref = copy.deepcopy(model)  # removed channels zeroed (weights and bias): relu(0) = 0 reaches nothing
    _zero_channels([ref.conv1], np.setdiff1d(np.arange(16), k1))
    _zero_channels([ref.conv2], np.setdiff1d(np.arange(32), k2))
    x = data.x_test[:64]
    with torch.no_grad():
        torch.testing.assert_close(p(x), ref(x), rtol=1e-5, atol=1e-5)
    assert [r["after"] for r in p._lowbit_prune_report.rows] == [8, 16]


def test_prune_channels_default_skips_the_head_and_quantizes(digits):
    data, model = digits
    p = lowbit.prune_channels(model, 0.5, example_inputs=data.x_train[:2])
    assert (p.fc1.out_features, p.fc2.in_features, p.fc2.out_features) == (32, 32, 10)
    calib = [data.x_train[i : i + 256] for i in range(0, 512, 256)]
    q = lowbit.quantize_model(p, lowbit.QuantConfig(activation="static"), calib_data=calib, progress=False)
    assert type(q.conv2).__name__ == "QuantConv2d" and tuple(q.conv2.dequantized_weight().shape[:2]) == (16, 8)
    assert lowbit.summary(q).bytes_after < lowbit.summary(lowbit.quantize_model(
        model, lowbit.QuantConfig(activation="static"), calib_data=calib, progress=False)).bytes_after / 2


def test_prune_channels_follows_batchnorm_and_depthwise():
    torch.manual_seed(0)
    m = M.DigitsMobileNet(width=8, expand=3).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for bn in m.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.2, 0.2)
    name = "blocks.1.conv.0.0"  # 1x1 expansion -> BN -> ReLU6 -> depthwise -> BN -> ReLU6 -> 1x1 projection
    p = lowbit.prune_channels(m, 0.5, layers=[name])
    blk, pblk = m.blocks[1].conv, p.blocks[1].conv
    assert pblk[0][0].out_channels == 12 and pblk[0][1].num_features == 12
    assert pblk[1][0].groups == pblk[1][0].in_channels == pblk[1][0].out_channels == 12
    assert pblk[1][1].num_features == 12 and pblk[2][0].in_channels == 12
    drop = np.setdiff1d(np.arange(24), _kept(blk[0][0].weight, 0.5))
    ref = copy.deepcopy(m)
    rblk = ref.blocks[1].conv
    _zero_channels([rblk[0][0], rblk[0][1], rblk[1][1]], drop)  # BN(0) with zero gamma and beta is 0
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(p(x), ref(x), rtol=1e-5, atol=1e-5)


def test_prune_channels_refuses_residuals_and_leaves_the_model():
    torch.manual_seed(0)
    m = M.DigitsResNet(width=8).eval()
    before = _state(m)
    with pytest.raises(ValueError, match=r"layer 'conv1'.*residual add"):
        lowbit.prune_channels(m, 0.5)
    assert _same_state(m, before)
    with pytest.raises(ValueError, match=r"layer 'fc'.*model output"):
        lowbit.prune_channels(m, 0.5, layers=["fc"])
    inner = ["layer1.conv1", "layer2.conv1", "layer3.conv1"]  # inside the blocks: no residual in the way
    p = lowbit.prune_channels(m, 0.5, layers=inner)
    assert p.layer2.conv1.out_channels == 8 and p.layer2.bn1.num_features == 8 and p.layer2.conv2.in_channels == 8
    assert p(torch.rand(2, 1, 8, 8)).shape == (2, 10)


class _Cat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(12, 2)

    def forward(self, x):
        return self.head(torch.cat([self.a(x), self.b(x)], dim=1))


class _View(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 2)

    def forward(self, x):
        y = self.conv(x)
        return self.fc(y.view(y.shape[0], -1))


@pytest.mark.parametrize("make, layer, match", [
    (_Cat, "a", "concatenation"), (_View, "conv", "view"),
])
def test_prune_channels_refuses_what_it_cannot_follow(make, layer, match):
    m = make()
    before = _state(m)
    with pytest.raises(ValueError, match=rf"layer '{layer}'.*{match}"):
        lowbit.prune_channels(m, 0.5, layers=[layer])
    assert _same_state(m, before)


@pytest.mark.parametrize("amount, exc", [(-0.1, ValueError), (1.0, ValueError), (1.5, ValueError), ("0.5", TypeError)])
def test_bad_amounts_raise_and_leave_the_model(digits, amount, exc):
    _, model = digits
    before = _state(model)
    for fn in (lambda: lowbit.prune_channels(model, amount), lambda: lowbit.prune_magnitude(model, amount)):
        with pytest.raises(exc, match="amount"):
            fn()
    assert _same_state(model, before)
    with pytest.raises(ValueError, match="layers: the model has no layer 'nope'"):
        lowbit.prune_channels(model, 0.5, layers=["nope"])
    with pytest.raises(ValueError, match="calib_data"):
        lowbit.prune_channels(model, 0.5, importance="activation")


def test_activation_importance_keeps_the_busiest_channels(digits):
    data, model = digits
    calib = [data.x_train[:256]]
    p = lowbit.prune_channels(model, 0.5, layers=["conv2"], importance="activation", calib_data=calib,
                             example_inputs=calib[0][:2])
    with torch.no_grad():
        a = torch.relu(model.conv1(calib[0]))
        out = model.conv2(a).abs().mean((0, 2, 3)).numpy()
    keep = np.sort(np.argsort(-out, kind="stable")[:16])
    assert torch.equal(p.conv2.weight, model.conv2.weight[keep])


# ---------------------------------------------------------------------------------------------
# transformers: FFN channels and attention heads on a tiny random BERT


@pytest.fixture(scope="module")
def tiny_bert():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=48, max_position_embeddings=16)
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).eval()
    ids = torch.randint(0, 64, (2, 9))
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_prune_ffn_equals_masked_float(tiny_bert):
    model, batch = tiny_bert
    before = _state(model)
    p = lowbit.prune_ffn(model, 0.5)
    assert _same_state(model, before)
    ref = copy.deepcopy(model)
    for i, layer in enumerate(model.encoder.layer):
        w1, w2 = layer.intermediate.dense.weight.detach(), layer.output.dense.weight.detach()
        s = (w1.double().pow(2).sum(1).sqrt() * w2.double().pow(2).sum(0).sqrt()).numpy()
        keep = np.sort(np.argsort(-s, kind="stable")[:24])
        assert p.encoder.layer[i].intermediate.dense.out_features == 24
        assert torch.equal(p.encoder.layer[i].output.dense.weight, w2[:, keep])
        _zero_channels([ref.encoder.layer[i].intermediate.dense], np.setdiff1d(np.arange(48), keep))  # GELU(0) = 0
    assert p.config.intermediate_size == 24
    with torch.no_grad():
        torch.testing.assert_close(p(**batch).last_hidden_state, ref(**batch).last_hidden_state, rtol=1e-4, atol=1e-5)
    q = lowbit.quantize_model(p)  # dynamic int8 of the smaller model
    assert q.encoder.layer[0].intermediate.dense.out_features == 24


def test_prune_attention_heads_equals_masked_float(tiny_bert):
    model, batch = tiny_bert
    p = lowbit.prune_attention_heads(model, {0: [1, 3], 1: [0]})
    ref = copy.deepcopy(model)
    d = 8
    for i, heads in ((0, [1, 3]), (1, [0])):
        sa = ref.encoder.layer[i].attention.self
        rows = np.concatenate([np.arange(h * d, (h + 1) * d) for h in heads])
        _zero_channels([sa.query, sa.key, sa.value], rows)  # a head of zero values adds nothing
    assert p.encoder.layer[0].attention.self.num_attention_heads == 2
    assert p.encoder.layer[0].attention.output.dense.in_features == 16
    with torch.no_grad():
        torch.testing.assert_close(p(**batch).last_hidden_state, ref(**batch).last_hidden_state, rtol=1e-4, atol=1e-5)
    assert lowbit.prune_attention_heads(model, 0.5).encoder.layer[1].attention.self.num_attention_heads == 2
    with pytest.raises(ValueError, match="block 5"):
        lowbit.prune_attention_heads(model, {5: [0]})
    with pytest.raises(ValueError, match="every head"):
        lowbit.prune_attention_heads(model, {0: [0, 1, 2, 3]})


# ---------------------------------------------------------------------------------------------
# unstructured, N:M, gradual


def test_prune_magnitude_layer_and_global():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    before = _state(m)
    p = lowbit.prune_magnitude(m, 0.5)
    assert _same_state(m, before)
    for i, n in ((0, 128), (2, 32)):
        w = m[i].weight.detach().abs().numpy().ravel()
        thr = np.sort(w)[n // 2 - 1]
        assert int((p[i].weight == 0).sum()) == n // 2
        assert np.all(np.abs(p[i].weight.detach().numpy().ravel())[w > thr] > 0)
    g = lowbit.prune_magnitude(m, 0.5, scope="global")
    allw = np.concatenate([m[0].weight.detach().abs().numpy().ravel(), m[2].weight.detach().abs().numpy().ravel()])
    thr = np.sort(allw)[80 - 1]
    for i in (0, 2):
        w = m[i].weight.detach().abs().numpy().ravel()
        assert np.array_equal(g[i].weight.detach().numpy().ravel() == 0, w <= thr)
    with pytest.raises(ValueError, match="scope"):
        lowbit.prune_magnitude(m, 0.5, scope="net")


def test_prune_n_m_keeps_the_largest_per_group():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 3), nn.Conv2d(2, 4, 2))
    p = lowbit.prune_n_m(m, 2, 4)
    for i in (0, 1):
        w = m[i].weight.detach().numpy().reshape(-1, 4)
        got = p[i].weight.detach().numpy().reshape(-1, 4)
        keep = np.argsort(-np.abs(w), axis=1, kind="stable")[:, :2]
        want = np.zeros_like(w)
        np.put_along_axis(want, keep, np.take_along_axis(w, keep, 1), 1)
        assert np.array_equal(got, want)
    before = _state(m)
    with pytest.raises(ValueError, match=r"m: 3 does not divide the input size 8 of layer '0'"):
        lowbit.prune_n_m(m, 1, 3)
    with pytest.raises(ValueError, match="0 < n < m"):
        lowbit.prune_n_m(m, 4, 4)
    assert _same_state(m, before)
    rows = lowbit.sparsity_report(p)
    assert [r["sparsity"] for r in rows] == [0.5, 0.5] and all(r["masked"] for r in rows)


def test_gradual_pruner_follows_the_cubic_schedule_and_survives_updates():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(20, 10))
    pruner = lowbit.GradualPruner(m, 0.8, steps=4, start=1)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    want = [0.0] + [0.8 * (1 - (1 - t / 4) ** 3) for t in range(1, 5)] + [0.8]
    got = []
    for _ in range(6):
        opt.zero_grad()
        m(torch.randn(4, 20)).pow(2).sum().backward()
        opt.step()  # moves masked weights away from zero...
        got.append(pruner.step())  # ...and the step zeroes them again
        assert int((m[0].weight == 0).sum()) == int(200 * got[-1])
    np.testing.assert_allclose(got, want, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# distillation


def test_distillation_loss_matches_the_formula():
    torch.manual_seed(0)
    s, t, y = torch.randn(5, 7), torch.randn(5, 7), torch.randint(0, 7, (5,))
    T = 3.0
    ps = np.exp(t.numpy() / T) / np.exp(t.numpy() / T).sum(1, keepdims=True)
    qs = np.exp(s.numpy() / T) / np.exp(s.numpy() / T).sum(1, keepdims=True)
    kl = (ps * (np.log(ps) - np.log(qs))).sum(1).mean() * T * T
    ce = -np.log(np.exp(s.numpy()) / np.exp(s.numpy()).sum(1, keepdims=True))[np.arange(5), y.numpy()].mean()
    loss = lowbit.DistillationLoss(temperature=T, alpha=0.25)
    np.testing.assert_allclose(float(loss(s, t)), kl, rtol=1e-5)
    np.testing.assert_allclose(float(loss(s, t, y)), 0.25 * kl + 0.75 * ce, rtol=1e-5)
    cos = lowbit.DistillationLoss(kind="cosine")(s, t)
    num = (s.numpy() * t.numpy()).sum(1) / np.linalg.norm(s.numpy(), axis=1) / np.linalg.norm(t.numpy(), axis=1)
    np.testing.assert_allclose(float(cos), (1 - num).mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="teacher"):
        loss(s, t[:, :3])
    with pytest.raises(ValueError, match="temperature"):
        lowbit.DistillationLoss(temperature=0)


def test_distill_mismatched_teacher_raises_and_leaves_the_student():
    torch.manual_seed(0)
    teacher, student = nn.Linear(4, 3), nn.Linear(4, 5)
    before = _state(student)
    with pytest.raises(ValueError, match=r"teacher: its output \(8, 3\) does not match the student's \(8, 5\)"):
        lowbit.distill(teacher, student, [torch.randn(8, 4)])
    assert _same_state(student, before)
    t2 = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 3))
    s2 = nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 3))
    before = _state(s2)
    with pytest.raises(ValueError, match=r"features: student '0' gives \(8, 5\), teacher '0' gives \(8, 6\)"):
        lowbit.distill(t2, s2, [torch.randn(8, 4)], features=["0"])
    assert _same_state(s2, before)
    with pytest.raises(ValueError, match="the teacher has no layer 'x'"):
        lowbit.Distiller(t2, s2, features={"0": "x"})


def test_feature_distillation_pulls_hidden_states_together():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    student = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    x = torch.randn(64, 6)

    def gap():
        with torch.no_grad():
            return float((teacher[0](x) - student[0](x)).pow(2).mean())

    g0 = gap()
    lowbit.distill(teacher, student, [x], epochs=100, lr=1e-2, features=["0"], feature_weight=10.0)
    assert gap() < 0.1 * g0


def test_qat_with_a_teacher_recovers_at_least_as_much_as_qat_alone(digits):
    # The 4-bit QAT student of a 75%-channel-pruned digits CNN: QAT alone (cross-entropy) against
    # QAT + distillation from the float CNN, same seed, same batches, same steps.
    data, teacher = digits
    pruned = lowbit.prune_channels(teacher, 0.75, example_inputs=data.x_train[:2])
    cfg = lowbit.QuantConfig(weight="int4", activation="static")
    batches = _batches(data, 2)
    torch.manual_seed(0)
    alone = lowbit.prepare_qat(pruned, cfg)
    opt = torch.optim.Adam(alone.parameters(), lr=3e-3)
    alone.train()
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(alone(x), y).backward()
        opt.step()
    torch.manual_seed(0)
    kd = lowbit.distill(teacher, lowbit.prepare_qat(pruned, cfg), batches, lr=3e-3)
    acc = {k: M.accuracy(lowbit.convert(m), data.x_test, data.y_test) for k, m in (("alone", alone), ("kd", kd))}
    start = M.accuracy(pruned, data.x_test, data.y_test)
    assert acc["kd"] >= acc["alone"] > start, (start, acc)


def test_digits_targets_pruned_and_2_4_with_int8_within_one_point(digits):
    data, teacher = digits
    acc_f = M.accuracy(teacher, data.x_test, data.y_test)
    calib = [data.x_train[i : i + 256] for i in range(0, 1024, 256)]
    static = lowbit.QuantConfig(activation="static")
    p = lowbit.prune_channels(teacher, 0.5, example_inputs=data.x_train[:2], layers=["conv1", "conv2"])
    lowbit.distill(teacher, p, _batches(data, 10), lr=3e-3)
    q = lowbit.quantize_model(p, static, calib_data=calib, progress=False)
    s = lowbit.prune_n_m(teacher, 2, 4, exclude=["conv1"])  # conv1 rows hold 9 weights
    lowbit.distill(teacher, s, _batches(data, 3), lr=1e-3)
    assert [r["sparsity"] for r in lowbit.sparsity_report(s)[1:]] == [0.5, 0.5, 0.5]  # still 2:4 after training
    qs = lowbit.quantize_model(s, static, calib_data=calib, progress=False)
    accs = (M.accuracy(q, data.x_test, data.y_test), M.accuracy(qs, data.x_test, data.y_test))
    assert min(accs) >= acc_f - 1.0, (acc_f, accs)


def test_prune_ffn_reconstruct_is_the_least_squares_refit(tiny_bert):
    model, batch = tiny_bert
    g = torch.Generator().manual_seed(1)
    calib = [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}
             for ids in (torch.randint(0, 64, (4, 12), generator=g) for _ in range(2))]  # 96 tokens, 25 unknowns
    p = lowbit.prune_ffn(model, 0.5, reconstruct=True, damp=0.0, calib_data=calib)
    inter, out = model.encoder.layer[0].intermediate, model.encoder.layer[0].output.dense
    acts = []
    h = inter.register_forward_hook(lambda m, a, o: acts.append(o.detach().reshape(-1, o.shape[-1])))
    with torch.no_grad():
        for b in calib:
            model(**b)
    h.remove()
    a = torch.cat(acts).double().numpy()  # block 0 sees the same inputs in the pruned model
    w1, w2 = inter.dense.weight.detach().double(), out.weight.detach().double()
    s = (w1.pow(2).sum(1).sqrt() * w2.pow(2).sum(0).sqrt()).numpy()
    keep = np.sort(np.argsort(-s, kind="stable")[:24])
    y = a @ w2.numpy().T + out.bias.detach().double().numpy()
    design = np.concatenate([a[:, keep], np.ones((len(a), 1))], 1)
    sol = np.linalg.lstsq(design, y, rcond=None)[0]
    got = p.encoder.layer[0].output.dense
    np.testing.assert_allclose(got.weight.detach().numpy(), sol[:-1].T, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got.bias.detach().numpy(), sol[-1], rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="calib_data"):
        lowbit.prune_ffn(model, 0.5, reconstruct=True)


def test_prune_channels_per_layer_amounts_round_to_and_flatten_module():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                      nn.Flatten(), nn.Linear(64, 20), nn.GELU(), nn.Linear(20, 3)).eval()
    x = torch.rand(2, 1, 6, 6)
    p = lowbit.prune_channels(m, {"0": 0.3, "5": 0.5}, example_inputs=x, round_to=4)
    # 16 - floor(4.8) = 12 (a multiple of 4); 20 - 10 = 10 -> 12
    assert (p[0].out_channels, p[1].num_features, p[5].in_features, p[5].out_features, p[7].in_features) == (
        12, 12, 48, 12, 12)
    assert p(x).shape == (2, 3)
    with pytest.raises(ValueError, match="round_to"):
        lowbit.prune_channels(m, 0.5, example_inputs=x, round_to=0)
    with pytest.raises(ValueError, match=r"amount\['0'\]"):
        lowbit.prune_channels(m, {"0": 1.0}, example_inputs=x)
    with pytest.raises(ValueError, match="pass example_inputs"):
        lowbit.prune_channels(m, 0.5, layers=["0"])


def test_2_4_on_a_qat_model_survives_distillation_and_convert(digits):
    data, teacher = digits
    qat = lowbit.prepare_qat(teacher, lowbit.QuantConfig(weight="int8", activation="static"))
    sparse = lowbit.prune_n_m(qat, 2, 4, exclude=["conv1"])
    lowbit.distill(teacher, sparse, _batches(data, 1)[:5], lr=1e-3)
    q = lowbit.convert(sparse)
    rows = {r["layer"]: r["sparsity"] for r in lowbit.sparsity_report(q)}
    assert min(rows["conv2"], rows["fc1"], rows["fc2"]) >= 0.5  # int8 rounding may add zeros, never lose them


# ---- sparse storage (bitmask + values) ----


def _sparse_mlp(amount=0.7, n_m=None):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 8))
    return lowbit.prune_n_m(m, *n_m) if n_m else lowbit.prune_magnitude(m, amount)


@pytest.mark.parametrize("weight", [dict(weight="int8"), dict(weight="int4"), dict(weight="int4", group_size=32),
                                    dict(weight="uint4", group_size=16), dict(weight="int8", symmetric_weights=False,
                                                                              activation="float")])
def test_sparse_storage_is_smaller_exact_and_round_trips(tmp_path, weight):
    q = lowbit.quantize_model(_sparse_mlp(), lowbit.QuantConfig(**weight), progress=False)
    s = lowbit.sparse_storage(q)
    x = torch.randn(5, 64)
    assert torch.equal(s(x), q(x))  # the dense kernel on the rebuilt codes: bit-identical
    for name in ("0", "2"):
        a, b = q.get_submodule(name), s.get_submodule(name)
        data = a.scheme.data_name
        assert data in a._buffers and data not in b._buffers  # stored: mask + values only
        assert set(b._buffers) >= {"weight_mask", "weight_values"}
        assert torch.equal(getattr(b, data), getattr(a, data))  # exact dense reconstruction
        # expected stored bytes from first principles: one bit per code + the nonzero codes
        codes = a.dequantized_weight() != 0
        n, k = codes.shape
        c = k if a.weight_bits == 8 else 2 * ((k + 1) // 2)
        nnz = int(codes.sum())
        assert b.weight_mask.numel() == -(-n * c // 8)
        assert b.weight_values.numel() == (nnz if a.weight_bits == 8 else -(-nnz // 2))
    assert lowbit.metrics.model_nbytes(s) < lowbit.metrics.model_nbytes(q)
    assert lowbit.summary(s).bytes_after == lowbit.metrics.model_nbytes(s)
    assert "stored sparse" in str(lowbit.summary(s))
    path = tmp_path / "s.safetensors"
    lowbit.save(s, path)
    loaded = lowbit.load(path, nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 8)))
    assert torch.equal(loaded(x), q(x))
    assert lowbit.metrics.model_nbytes(loaded) == lowbit.metrics.model_nbytes(s)
    assert "weight_values" in loaded.get_submodule("0")._buffers
    # the caller's model is untouched
    assert q.get_submodule("0").scheme.data_name in q.get_submodule("0")._buffers


def test_sparse_storage_2_4_int8_sizes_and_dense_models_stay():
    q = lowbit.quantize_model(_sparse_mlp(n_m=(2, 4)), lowbit.QuantConfig(weight="int8"), progress=False)
    s = lowbit.sparse_storage(q)
    lin = s.get_submodule("0")
    assert lin.weight_values.numel() <= 48 * 64 // 2 and lin.weight_mask.numel() == 48 * 64 // 8
    dense = lowbit.quantize_model(nn.Sequential(nn.Linear(64, 48)), progress=False)
    assert "weight_mask" not in lowbit.sparse_storage(dense).get_submodule("0")._buffers  # not sparse enough
    with pytest.raises(ValueError, match="min_sparsity"):
        lowbit.sparse_storage(q, min_sparsity=1.0)
    with pytest.raises(ValueError, match="layers"):
        lowbit.sparse_storage(q, layers=["1"])
    nf4 = lowbit.quantize_model(_sparse_mlp(), lowbit.QuantConfig(weight="nf4"), progress=False)
    assert "weight_mask" not in lowbit.sparse_storage(nf4).get_submodule("0")._buffers  # not a supported format


def test_sparse_storage_load_refuses_a_mask_that_does_not_match(tmp_path):
    s = lowbit.sparse_storage(lowbit.quantize_model(_sparse_mlp(), progress=False))
    path = tmp_path / "s.safetensors"
    bad = copy.deepcopy(s)  # a file with valid checksums whose mask has more bits than stored values
    bad.get_submodule("0").weight_mask.fill_(255)
    lowbit.save(bad, path)
    with pytest.raises(ValueError, match="bits set"):
        lowbit.load(path, nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 8)))


def test_everyday_sentences_are_reproducible_and_share_no_4_gram_with_the_evaluation_set():
    import re

    from lowbit.demo.text import everyday_sentences

    a = everyday_sentences(300, seed=1)
    assert a == everyday_sentences(300, seed=1) and len(set(a)) == 300
    assert a != everyday_sentences(300, seed=2)
    words = lambda s: re.findall(r"[a-z']+", s.lower())  # noqa: E731
    held = {tuple(w[i : i + 4]) for s in M.SENTENCES for w in [words(s)] for i in range(len(w) - 3)}
    assert all(not any(tuple(w[i : i + 4]) in held for i in range(len(w) - 3)) for s in a for w in [words(s)])


def test_prune_ffn_refit_ignores_padding_tokens(tiny_bert):
    model, _ = tiny_bert
    g = torch.Generator().manual_seed(2)
    seqs = [torch.randint(1, 64, (n,), generator=g) for n in (12, 7, 10, 5, 12, 9, 11, 6)]
    # one batch per sentence (no padding) against two padded batches of the same sentences
    single = [{"input_ids": s[None], "attention_mask": torch.ones(1, len(s), dtype=torch.long)} for s in seqs]
    padded = []
    for part in (seqs[:4], seqs[4:]):
        ids = torch.zeros(len(part), 12, dtype=torch.long)
        mask = torch.zeros(len(part), 12, dtype=torch.long)
        for i, s in enumerate(part):
            ids[i, : len(s)], mask[i, : len(s)] = s, 1
        padded.append({"input_ids": ids, "attention_mask": mask})
    a = lowbit.prune_ffn(model, 0.5, importance="activation", reconstruct=True, calib_data=single)
    b = lowbit.prune_ffn(model, 0.5, importance="activation", reconstruct=True, calib_data=padded)
    for la, lb in zip(a.encoder.layer, b.encoder.layer):
        torch.testing.assert_close(la.intermediate.dense.weight, lb.intermediate.dense.weight)
        torch.testing.assert_close(la.output.dense.weight, lb.output.dense.weight, rtol=1e-4, atol=1e-5)


def _calib_with_padding(seed, n_batches=2):
    """Batches of 4 random sequences of 5..12 tokens, right-padded (attention_mask 0 on the padding)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        lens = torch.randint(5, 13, (4,), generator=g)
        ids = torch.randint(1, 64, (4, 12), generator=g)
        mask = (torch.arange(12)[None, :] < lens[:, None]).long()
        out.append({"input_ids": ids * mask, "attention_mask": mask})
    return out


def _block0_rows(model, calib):
    """Real-token rows of block 0 of the float model: attention output, FFN activations, LayerNorm input."""
    layer, got, rows = model.encoder.layer[0], {}, {"a": [], "act": [], "z": []}
    hooks = [layer.intermediate.register_forward_hook(lambda m, a, o: got.update(a=a[0], act=o)),
             layer.output.LayerNorm.register_forward_pre_hook(lambda m, a: got.update(z=a[0]))]
    with torch.no_grad():
        for b in calib:
            model(**b)
            real = b["attention_mask"].bool()
            for k in rows:
                rows[k].append(got[k][real])
    for h in hooks:
        h.remove()
    return {k: torch.cat(v).double().numpy() for k, v in rows.items()}


def test_prune_ffn_block_closed_form_fits_the_float_block(tiny_bert):
    model, _ = tiny_bert
    calib = _calib_with_padding(3)
    p = lowbit.prune_ffn(model, 0.5, importance="activation", reconstruct="block", damp=0.0, block_steps=0,
                         calib_data=calib)
    r = _block0_rows(model, calib)  # block 0 sees the same inputs in the float and the pruned model
    w2 = model.encoder.layer[0].output.dense.weight.detach().double().numpy()
    s = np.sqrt((r["act"] ** 2).mean(0)) * np.sqrt((w2 ** 2).sum(0))
    keep = np.sort(np.argsort(-s, kind="stable")[:24])
    design = np.concatenate([r["act"][:, keep], np.ones((len(r["act"]), 1))], 1)
    sol = np.linalg.lstsq(design, r["z"] - r["a"], rcond=None)[0]  # the float LayerNorm input, minus the residual
    got = p.encoder.layer[0]
    assert torch.equal(got.intermediate.dense.weight, model.encoder.layer[0].intermediate.dense.weight[keep])
    np.testing.assert_allclose(got.output.dense.weight.detach().numpy(), sol[:-1].T, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got.output.dense.bias.detach().numpy(), sol[-1], rtol=1e-3, atol=1e-4)
    assert p.config.intermediate_size == 24 and model.config.intermediate_size == 48


def test_prune_ffn_obs_removes_the_channel_with_the_least_refit_error(tiny_bert):
    model, _ = tiny_bert
    calib = _calib_with_padding(4, n_batches=4)
    p = lowbit.prune_ffn(model, 0.03, importance="obs", reconstruct=True, damp=0.0, calib_data=calib)  # 1 of 48
    r = _block0_rows(model, calib)
    out = model.encoder.layer[0].output.dense
    y = r["act"] @ out.weight.detach().double().numpy().T + out.bias.detach().double().numpy()
    sse = []
    for j in range(48):  # brute force: refit without channel j
        design = np.concatenate([np.delete(r["act"], j, 1), np.ones((len(y), 1))], 1)
        sol = np.linalg.lstsq(design, y, rcond=None)[0]
        sse.append(((design @ sol - y) ** 2).sum())
    j = int(np.argmin(sse))
    keep = [i for i in range(48) if i != j]
    assert torch.equal(p.encoder.layer[0].intermediate.dense.weight, model.encoder.layer[0].intermediate.dense.weight[keep])


def test_prune_ffn_block_training_beats_the_refit_against_the_float_model(tiny_bert):
    model, _ = tiny_bert
    calib = _calib_with_padding(5, n_batches=8)

    def err(m):  # squared error of the last hidden states to the float model's, real tokens of calib
        with torch.no_grad():
            return sum(float(((m(**b).last_hidden_state - model(**b).last_hidden_state)[b["attention_mask"].bool()]
                              ** 2).sum()) for b in calib)

    before = _state(model)
    refit = lowbit.prune_ffn(model, 0.5, importance="activation", reconstruct=True, calib_data=calib)
    closed = lowbit.prune_ffn(model, 0.5, importance="activation", reconstruct="block", block_steps=0,
                              calib_data=calib)
    trained = lowbit.prune_ffn(model, 0.5, importance="activation", reconstruct="block", block_steps=50,
                               calib_data=calib)
    e_refit, e_closed, e_trained = err(refit), err(closed), err(trained)
    assert e_trained < e_closed < e_refit, (e_refit, e_closed, e_trained)
    assert not any(p.requires_grad is False or p.grad is not None for p in trained.parameters())
    assert _same_state(model, before) and not model.training


@pytest.mark.parametrize("kwargs, match", [
    (dict(reconstruct="blocks"), "reconstruct"),
    (dict(reconstruct="block"), "calib_data"),
    (dict(importance="obs", calib_data="C"), "importance"),
    (dict(reconstruct="block", calib_data="C", block_steps=-1), "block_steps"),
    (dict(reconstruct="block", calib_data="C", block_lr=0.0), "block_lr"),
    (dict(reconstruct="block", calib_data="C", round_to=0), "round_to"),
])
def test_prune_ffn_block_bad_input_raises_and_leaves_the_model(tiny_bert, kwargs, match):
    model, batch = tiny_bert
    before = _state(model)
    kwargs = {k: ([batch] if v == "C" else v) for k, v in kwargs.items()}
    with pytest.raises(ValueError, match=match):
        lowbit.prune_ffn(model, 0.5, **kwargs)
    assert _same_state(model, before) and not model.training


def test_prune_ffn_one_share_per_block(tiny_bert):
    model, batch = tiny_bert
    for kwargs in (dict(), dict(importance="obs", reconstruct="block", block_steps=2, calib_data=[batch])):
        p = lowbit.prune_ffn(model, [0.75, 0.25], **kwargs)
        assert [b.intermediate.dense.out_features for b in p.encoder.layer] == [12, 36]
        assert [b.output.dense.in_features for b in p.encoder.layer] == [12, 36]
        with torch.no_grad():
            assert p(**batch).last_hidden_state.shape == (2, 9, 32)
    for bad in ([0.5], [0.5, 1.0]):
        with pytest.raises(ValueError, match="amount"):
            lowbit.prune_ffn(model, bad)


def test_word_sequences_are_seeded_vocabulary_words_apart_from_the_evaluation_set():
    from lowbit.demo.text import word_sequences

    vocab = ["the", "cat", "sits", "outside", "##ing", "on", "A", "x1", "warm"]
    seqs = word_sequences(vocab, n=2000, seed=1, length=(4, 4))
    assert seqs == word_sequences(vocab, n=2000, seed=1, length=(4, 4)) != word_sequences(vocab, n=2000, seed=2,
                                                                                            length=(4, 4))
    assert {w for s in seqs for w in s.split()} == {"the", "cat", "sits", "outside", "warm"}  # whole lowercase words
    assert all(len(s.split()) == 4 for s in seqs)
    assert "the cat sits outside" not in seqs  # 4 words of M.SENTENCES[0]: about 3 in 2000 draws without the filter
    with pytest.raises(ValueError, match="vocabulary"):
        word_sequences(["##a", "B", "on"])
    with pytest.raises(ValueError, match="length"):
        word_sequences(vocab, length=(3, 2))
