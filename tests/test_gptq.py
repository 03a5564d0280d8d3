"""GPTQ (lowbit.core.gptq): the algorithm against round-to-nearest on the same Hessian, the
schemes' fixed-parameter rounding, the streaming Hessian, and quantize_model(algorithm="gptq")."""

from __future__ import annotations

import json

import lowbit
import numpy as np
import pytest
from lowbit.core.gptq import GPTQ, HessianObserver, gptq_quantize

SCHEMES = [lowbit.Int8Weights(), lowbit.Int4Weights(), lowbit.Int4Weights(group_size=32),
           lowbit.Int4Weights(group_size=48, symmetric=False), lowbit.UInt4Weights(group_size=32),
           lowbit.NF4Weights(group_size=32), lowbit.NF4Weights(double_quant=True)]


def _correlated_inputs(rng, m, k):
    """Inputs with correlated features and unequal channel scales (where GPTQ has room to help)."""
    base = rng.standard_normal((m, k // 4)).astype(np.float32)
    x = base @ rng.standard_normal((k // 4, k)).astype(np.float32) + 0.3 * rng.standard_normal((m, k)).astype(np.float32)
    return x * np.linspace(0.2, 2.0, k, dtype=np.float32)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.describe())
@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_beats_round_to_nearest_on_its_hessian(scheme, act_order, rng):
    n, k = 24, 128
    w = (rng.standard_normal((n, k)) * 0.1).astype(np.float32)
    x = _correlated_inputs(rng, 512, k)
    h = HessianObserver(k)
    h.update(x[:256])
    h.update(x[256:])
    stored, stats = gptq_quantize(w, h.hessian(), scheme, GPTQ(act_order=act_order, block_size=32))
    rtn = scheme.quantize(w)
    assert set(stored) == set(rtn)
    for name in stored:  # same stored form; the parameters are round-to-nearest's
        assert stored[name].shape == rtn[name].shape and stored[name].dtype == rtn[name].dtype
        if name != scheme.data_name:
            np.testing.assert_array_equal(stored[name], rtn[name])
    y = x @ w.T
    err_gptq = np.mean((y - x @ scheme.dequantize(stored, n, k).T) ** 2)
    err_rtn = np.mean((y - x @ scheme.dequantize(rtn, n, k).T) ** 2)
    assert stats["loss_gptq"] < 0.8 * stats["loss_rtn"] and err_gptq < 0.8 * err_rtn
    np.testing.assert_allclose(stats["loss_rtn"], err_rtn, rtol=1e-3)  # the loss is the output MSE
    packed = scheme.pack(stored, n, k)  # kernels run the GPTQ weights
    np.testing.assert_array_equal(packed.dequantize(), scheme.dequantize(stored, n, k))


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.describe())
def test_fixed_parameter_rounding_reproduces_round_to_nearest(scheme, rng):
    w = (rng.standard_normal((9, 96)) * 0.1).astype(np.float32)
    rtn = scheme.quantize(w)
    deq = scheme.dequantize(rtn, 9, 96)
    for name, a in scheme.requantize(deq, rtn).items():  # the stored levels are fixed points
        np.testing.assert_array_equal(a, rtn[name])
    col = scheme.column_quantizer(rtn, 9, 96)
    if getattr(scheme, "double_quant", False):  # codes from the exact absmax, kernels read the decoded one
        return
    for name, a in scheme.requantize(w, rtn).items():
        np.testing.assert_array_equal(a, rtn[name])
    for j in (0, 31, 32, 95):
        np.testing.assert_array_equal(col(j, w[:, j]), deq[:, j])


def test_identity_hessian_gptq_equals_round_to_nearest(rng):
    """With uncorrelated unit inputs no error can be compensated: GPTQ is round-to-nearest."""
    w = (rng.standard_normal((8, 64)) * 0.1).astype(np.float32)
    s = lowbit.Int4Weights(group_size=32)
    stored, stats = gptq_quantize(w, np.eye(64), s, GPTQ(damp=0.0))
    np.testing.assert_array_equal(stored["weight_packed"], s.quantize(w)["weight_packed"])
    assert stats["loss_gptq"] == pytest.approx(stats["loss_rtn"])


def test_hessian_observer_streams_merges_and_round_trips(rng):
    x = rng.standard_normal((100, 16)).astype(np.float32)
    a, b, whole = HessianObserver(16), HessianObserver(16), HessianObserver(16)
    a.update(x[:30])
    b.update(x[30:].reshape(7, 10, 16))
    whole.update(x)
    np.testing.assert_allclose(a.merge(b).hessian(), whole.hessian(), rtol=1e-12)
    np.testing.assert_allclose(whole.hessian(), x.astype(np.float64).T @ x / 100, rtol=1e-12)
    back = HessianObserver.from_state_dict(json.loads(json.dumps(whole.state_dict())))
    np.testing.assert_array_equal(back.hessian(), whole.hessian())
    with pytest.raises(ValueError, match="no inputs"):
        HessianObserver(4).hessian()
    with pytest.raises(ValueError, match="finite"):
        HessianObserver(2).update(np.float32([[1, np.nan]]))
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        HessianObserver(4).update(np.ones((2, 3), np.float32))


def test_config_and_bad_input():
    assert lowbit.QuantConfig(weight="int4", group_size=64, algorithm="gptq").algorithm == GPTQ()
    cfg = lowbit.QuantConfig(weight="nf4", algorithm=GPTQ(damp=0.05, act_order=True))
    assert lowbit.QuantConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="QuantConfig.algorithm: GPTQ needs fixed-parameter rounding.*fp16"):
        lowbit.QuantConfig(weight="fp16", algorithm="gptq")
    with pytest.raises(ValueError, match="did you mean 'gptq'"):
        lowbit.QuantConfig(algorithm="gtpq")
    with pytest.raises(ValueError, match="GPTQ.damp"):
        GPTQ(damp=2.0)
    with pytest.raises(ValueError, match="hessian"):
        gptq_quantize(np.ones((2, 4), np.float32), np.eye(3), lowbit.Int8Weights())
    with pytest.raises(ValueError, match="GPTQ: fp16 weights have no fixed-parameter rounding"):
        gptq_quantize(np.ones((2, 4), np.float32), np.eye(4), lowbit.FP16Weights())


def test_quantize_model_with_gptq_on_the_digits_cnn():
    pytest.importorskip("torch")
    from lowbit.demo.models import accuracy, load_digits_data, train_digits_cnn

    data = load_digits_data()
    model = train_digits_cnn(data, epochs=4).eval()
    calib = [data.x_train[i:i + 64] for i in range(0, 256, 64)]
    x = data.x_test[:200]
    model.requires_grad_(False)
    ref = model(x)
    errors = {}
    for algo in (None, "gptq"):
        cfg = lowbit.QuantConfig(weight="int4", group_size=32, activation="float", algorithm=algo)
        q = lowbit.quantize_model(model, cfg, calib_data=calib, progress=False)
        errors[algo] = float(((q(x) - ref) ** 2).mean())
        rows = lowbit.summary(q).rows
        assert all(r["action"].endswith(", GPTQ") == (algo == "gptq") for r in rows if r["type"].startswith("Quant"))
    assert errors["gptq"] < errors[None]
    report = lowbit.compare(model, q, x, progress=False, timing=False)
    for r in report.layers:  # the algorithm and its own criterion (calibration output error) before/after
        assert r.algorithm == "gptq" and r.algorithm_loss < r.algorithm_loss_rtn
        assert f"gptq ({100 * (r.algorithm_gain - 1):+.0f}%)" in report.summary()
    assert accuracy(q, data.x_test, data.y_test) >= accuracy(model, data.x_test, data.y_test) - 1.0
    with pytest.raises(ValueError, match="GPTQ statistics needs calibration data"):
        lowbit.quantize_model(model, lowbit.QuantConfig(weight="int4", algorithm="gptq"))
    with pytest.raises(ValueError, match="post-training algorithm"):
        lowbit.prepare_qat(model, lowbit.QuantConfig(weight="int4", algorithm="gptq"))


@pytest.mark.parametrize("scheme", [lowbit.Int8Weights(), lowbit.Int8Weights(granularity="per_tensor"),
                                    lowbit.Int4Weights(), lowbit.Int4Weights(group_size=32),
                                    lowbit.UInt4Weights(group_size=32), lowbit.NF4Weights(group_size=32)],
                         ids=lambda s: s.describe())
def test_mse_clipping_never_worse_than_round_to_nearest(scheme, rng):
    w = (rng.standard_normal((16, 96)) * 0.1).astype(np.float32)
    w[3, 5], w[7, 40] = 1.5, -2.0  # outliers that stretch their channel's / group's grid
    stored, stats = lowbit.mse_clip_quantize(w, scheme)
    rtn = scheme.quantize(w)
    assert set(stored) == set(rtn)
    err = (scheme.dequantize(stored, 16, 96) - w) ** 2
    err_rtn = (scheme.dequantize(rtn, 16, 96) - w) ** 2
    assert stats["weight_mse"] == pytest.approx(float(err.mean())) and stats["weight_mse_rtn"] == pytest.approx(
        float(err_rtn.mean()))
    if scheme.group_size is not None:  # every group at least as good (ratio 1 is on the grid)
        starts = np.arange(0, 96, scheme.group_size)
        assert np.all(np.add.reduceat(err, starts, axis=1) <= np.add.reduceat(err_rtn, starts, axis=1) + 1e-12)
    elif getattr(scheme, "granularity", "") == "per_channel":
        assert np.all(err.sum(axis=1) <= err_rtn.sum(axis=1) + 1e-12)
    assert stats["weight_mse"] <= stats["weight_mse_rtn"]
    if scheme.code_bits == 4:  # 16 levels: the outliers' channels / groups gain from clipping
        assert stats["weight_mse"] < 0.95 * stats["weight_mse_rtn"]
    s = np.asarray(stored["weight_scale"])
    assert np.all(s <= np.asarray(rtn["weight_scale"]) + 0) and np.all(s > 0)
    if getattr(scheme, "granularity", "") == "per_tensor":
        assert np.all(s == s.flat[0])  # one ratio for the whole tensor


def test_mse_clipping_in_configs_and_models():
    torch = pytest.importorskip("torch")
    assert lowbit.QuantConfig(weight="nf4", algorithm="mse").algorithm == lowbit.MSEClip()
    with pytest.raises(ValueError, match="double_quant"):
        lowbit.QuantConfig(weight="nf4", double_quant=True, algorithm="mse")
    with pytest.raises(ValueError, match="MSEClip.min_ratio"):
        lowbit.MSEClip(min_ratio=0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8)).eval()
    with torch.no_grad():
        model[0].weight[0, 0] = 3.0
    x = torch.randn(16, 64)
    ref = model(x).detach()
    err = {}
    for algo in (None, "mse"):
        q = lowbit.quantize_model(model, lowbit.QuantConfig(weight="int4", group_size=32, algorithm=algo))
        err[algo] = float(((q(x) - ref) ** 2).mean())
        assert lowbit.summary(q).rows[0]["action"].endswith(", MSE") == (algo == "mse")
    assert err["mse"] < err[None]
    assert GPTQ(clip=True).to_dict()["clip"] is True


def _branchy_model():
    """Two layers reading the same tensor (like q/k/v), then a layer reading their sum."""
    import torch

    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b, self.c = torch.nn.Linear(64, 64), torch.nn.Linear(64, 64), torch.nn.Linear(64, 8)
            self.passes = 0

        def forward(self, x):
            self.passes += 1
            return self.c(torch_relu(self.a(x) + self.b(x)))

    return Branchy().eval().requires_grad_(False)


def torch_relu(t):
    return t.clamp_min(0)


def test_layer_sequential_gptq_takes_statistics_from_quantized_predecessors(rng):
    """With sequential=True (the default) layer c's Hessian is that of its input in the model whose
    a and b are already quantized; a and b, which read the same tensor, share one pass; with
    sequential=False every layer sees the float model's inputs."""
    torch = pytest.importorskip("torch")
    model = _branchy_model()
    calib = [torch.from_numpy(_correlated_inputs(rng, 128, 64)) for _ in range(3)]
    scheme = lowbit.Int4Weights(group_size=32)
    for sequential in (True, False):
        model.passes = 0
        cfg = lowbit.QuantConfig(weight="int4", group_size=32, activation="float",
                                 algorithm=GPTQ(sequential=sequential))
        q = lowbit.quantize_model(model, cfg, calib_data=iter(calib), progress=False)  # a one-shot iterator
        assert model.passes == 0  # the caller's model is never run (a copy is)
        src = q if sequential else model  # whose a and b produce c's calibration inputs
        h = HessianObserver(64)
        for x in calib:
            h.update(torch_relu(src.a(x) + src.b(x)))
        expect, _ = gptq_quantize(model.c.weight, h.hessian(), scheme, GPTQ())
        for name, a in expect.items():
            np.testing.assert_array_equal(getattr(q.c, name).numpy().reshape(a.shape), a)
        h_ab = HessianObserver(64)
        for x in calib:
            h_ab.update(x)
        expect_a, _ = gptq_quantize(model.a.weight, h_ab.hessian(), scheme, GPTQ())
        for name, a in expect_a.items():
            np.testing.assert_array_equal(getattr(q.a, name).numpy().reshape(a.shape), a)
    work = _branchy_model()
    seen = []
    work.c.register_forward_hook(lambda m, args, out: seen.append(1))  # completed calls
    lowbit.quantize_model(work, lowbit.QuantConfig(weight="int4", group_size=32, activation="float",
                                                   algorithm="gptq"), calib_data=calib, inplace=True, progress=False)
    assert len(seen) == 3  # a+b's pass stops before c runs; c's pass runs it once per batch


def test_layer_sequential_gptq_reports_unreached_layers(rng):
    torch = pytest.importorskip("torch")

    class Skips(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.unused = torch.nn.Linear(32, 32), torch.nn.Linear(32, 32)

        def forward(self, x):
            return self.a(x)

    calib = [torch.randn(16, 32)]
    cfg = lowbit.QuantConfig(weight="int4", group_size=32, activation="float", algorithm="gptq")
    with pytest.raises(ValueError, match="'unused'.*never called"):
        lowbit.quantize_model(Skips(), cfg, calib_data=calib, progress=False)
    with pytest.warns(UserWarning, match="'unused' stays float"):
        q = lowbit.quantize_model(Skips(), lowbit.QuantConfig(weight="int4", group_size=32, activation="float",
                                                              algorithm="gptq", on_unsupported="float"),
                                  calib_data=calib, progress=False)
    assert type(q.a).__name__ == "QuantLinear" and type(q.unused).__name__ == "Linear"


@pytest.mark.parametrize("sequential", [True, False])
def test_gptq_statistics_skip_padding_tokens(sequential, rng):
    """Tokenizer-style dict batches: rows where attention_mask is 0 (padding) never enter the
    Hessian, so padding with any values gives the weights of the real tokens alone."""
    torch = pytest.importorskip("torch")

    class Tokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.proj = torch.nn.Linear(32, 16)

        def forward(self, hidden, attention_mask):
            return self.proj(hidden) * attention_mask[..., None]

    x = torch.from_numpy(_correlated_inputs(rng, 2 * 12, 32)).reshape(2, 12, 32)
    mask = torch.ones(2, 12, dtype=torch.int64)
    mask[0, 7:] = 0
    mask[1, 10:] = 0
    padded = x.clone()
    padded[mask == 0] = 1e3 * torch.randn(int((mask == 0).sum()), 32)
    cfg = lowbit.QuantConfig(weight="int4", group_size=32, activation="float", algorithm=GPTQ(sequential=sequential))
    model = Tokens().eval()
    q_pad = lowbit.quantize_model(model, cfg, calib_data=[{"hidden": padded, "attention_mask": mask}], progress=False)
    q_real = lowbit.quantize_model(model, cfg, calib_data=[{"hidden": x[0:1, :7], "attention_mask": mask[0:1, :7]},
                                                           {"hidden": x[1:2, :10], "attention_mask": mask[1:2, :10]}],
                                   progress=False)
    h = HessianObserver(32)
    h.update(x[mask.bool()])
    expect, _ = gptq_quantize(model.proj.weight, h.hessian(), lowbit.Int4Weights(group_size=32))
    for name, a in expect.items():
        np.testing.assert_array_equal(getattr(q_pad.proj, name).numpy().reshape(a.shape), a)
        np.testing.assert_array_equal(getattr(q_real.proj, name).numpy().reshape(a.shape), a)


def _stack_model(between: float = 0.0, inputs: int = 16, pool: bool = True):
    """A transformer-like stack: input projection (``inputs`` features), a ModuleList of blocks called
    as ``block(hidden, mask)``, a head (on the mean over tokens, or per token with ``pool=False``);
    ``between`` adds a shift between blocks (then chaining the blocks alone no longer reproduces the
    model)."""
    import torch

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.o = torch.nn.Linear(32, 32), torch.nn.Linear(32, 32), torch.nn.Linear(32, 32)

        def forward(self, h, mask):
            a = torch.softmax(self.q(h) @ self.k(h).transpose(1, 2) + (mask[:, None, :] - 1) * 1e4, -1) @ h
            return (h + self.o(a),)

    class Stack(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(3)
            self.inp = torch.nn.Linear(inputs, 32)
            self.layers = torch.nn.ModuleList([Block() for _ in range(3)])
            self.head = torch.nn.Linear(32, 4)

        def forward(self, x, attention_mask):
            h = self.inp(x)
            for block in self.layers:
                h = block(h, attention_mask.float())[0] + between
            return self.head(h.mean(1) if pool else h)

    return Stack().eval().requires_grad_(False)


def test_block_by_block_gptq_equals_whole_model_passes(monkeypatch, rng):
    """Blocks of a ModuleList run on their cached inputs (one block's activations at a time) give
    exactly the weights of whole-model passes, with far fewer runs of the early blocks; a model whose
    blocks do not chain falls back to whole-model passes."""
    torch = pytest.importorskip("torch")
    from lowbit.interop import convert

    model = _stack_model()
    calib = [{"x": torch.from_numpy(rng.standard_normal((4, 6, 16)).astype(np.float32)),
              "attention_mask": torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 5 + [0], [1] * 6])} for _ in range(3)]
    cfg = lowbit.QuantConfig(weight="int4", group_size=32, activation="float", algorithm="gptq")
    targets = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    plan = convert._block_plan(model, targets, calib)
    assert plan is not None and set(plan[2]) == {"inp"} and set(plan[3]) == {"head"}
    assert convert._block_plan(_stack_model(between=0.5), targets, calib) is None

    runs = {}

    def quantize(whole: bool):
        counter = [0]
        work = _stack_model()
        work.layers[0].register_forward_hook(lambda m, a, o: counter.__setitem__(0, counter[0] + 1))
        if whole:
            monkeypatch.setattr(convert, "_block_plan", lambda *a: None)
        q = lowbit.quantize_model(work, cfg, calib_data=calib, inplace=True, progress=False)
        monkeypatch.undo()
        runs[whole] = counter[0]
        return q

    blockwise, whole = quantize(False), quantize(True)
    for name, m in blockwise.named_modules():
        if type(m).__name__ == "QuantLinear":
            for buf, t in m.named_buffers():
                assert torch.equal(t, whole.get_submodule(name).get_buffer(buf)), (name, buf)
    assert sum(type(m).__name__ == "QuantLinear" for m in blockwise.modules()) == 11
    assert runs[False] < runs[True]
@pytest.mark.parametrize("scheme", SCHEMES + [lowbit.Int8Weights(granularity="per_tensor"), lowbit.UInt4Weights()],
                         ids=lambda s: s.describe())
def test_compiled_column_loop_equals_the_numpy_float32_loop(scheme, rng):
    """The C++ loop on the scheme's ColumnGrid and the NumPy loop on its column_quantizer: same
    float32 operations in the same order, so the same values bit for bit (threads split rows).
    Act-order columns (a permutation: groups looked up through it); the plain order is covered by
    gptq_quantize's tests."""
    from lowbit.core.gptq import _columns_compiled, _columns_numpy, _unit_upper_factor

    act_order = True
    n, k = 37, 160
    w = (rng.standard_normal((n, k)) * 0.1).astype(np.float32)
    x = _correlated_inputs(rng, 512, k)
    h = x.astype(np.float64).T @ x / 512 + 0.01 * np.eye(k)
    order = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(k)
    a = _unit_upper_factor(h[np.ix_(order, order)])
    wp = np.ascontiguousarray(w[:, order])
    rtn = scheme.quantize(w)
    col = scheme.column_quantizer(rtn, n, k)
    want, x_want = _columns_numpy(wp, a, lambda j, c: col(int(order[j]), c), 48)
    before = lowbit.get_num_threads()
    for threads in (1, 3):
        lowbit.set_num_threads(threads)
        try:
            got, x_got = _columns_compiled(wp, a, scheme.column_grid(rtn, n, k), order, 48)
        finally:
            lowbit.set_num_threads(before)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(x_got, x_want)


def _obs_gptq_float64(w, h, quantize_column, block):
    """GPTQ exactly as the paper writes it (float64): upper Cholesky factor of H^-1, OBS update of
    the not yet rounded columns after each column, lazy batches."""
    n, k = w.shape
    u = np.linalg.cholesky(np.linalg.inv(h)).T
    work, out = w.astype(np.float64), np.empty((n, k))
    for s in range(0, k, block):
        e = min(s + block, k)
        err = np.empty((n, e - s))
        for j in range(s, e):
            q = quantize_column(j, work[:, j].astype(np.float32)).astype(np.float64)
            out[:, j] = q
            err[:, j - s] = (work[:, j] - q) / u[j, j]
            work[:, j + 1:e] -= np.outer(err[:, j - s], u[j, j + 1:e])
        work[:, e:] -= err @ u[s:e, e:]
    return out


@pytest.mark.parametrize("scheme", [lowbit.Int4Weights(group_size=32), lowbit.NF4Weights(group_size=32),
                                    lowbit.Int8Weights()], ids=lambda s: s.describe())
def test_gptq_equals_the_papers_float64_obs_updates(scheme, rng):
    """The telescoped float32 recursion (one reversed Cholesky, no inverse) rounds like the OBS
    updates of the paper in float64: losses agree and almost every code is equal."""
    n, k = 48, 128
    w = (rng.standard_normal((n, k)) * 0.1).astype(np.float32)
    x = _correlated_inputs(rng, 512, k)
    h = HessianObserver(k)
    h.update(x)
    hd = h.hessian() + 0.01 * np.mean(np.diag(h.hessian())) * np.eye(k)
    rtn = scheme.quantize(w)
    ref = _obs_gptq_float64(w, hd, scheme.column_quantizer(rtn, n, k), 32)
    stored, stats = gptq_quantize(w, h.hessian(), scheme, GPTQ(block_size=32))
    got = scheme.dequantize(stored, n, k)
    assert np.mean(got == ref.astype(np.float32)) > 0.99
    d_ref = w - ref
    loss_ref = float(np.sum((d_ref @ h.hessian()) * d_ref) / n)
    assert stats["loss_gptq"] == pytest.approx(loss_ref, rel=1e-3)


def test_compiled_column_loop_checks_its_arguments():
    from lowbit import _core

    n, k = 4, 8
    f = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    args = dict(x=f(n, k), w=f(n, k), q=f(n, k), delta=f(n, k), a=f(k, k), begin=0, end=k, scale=np.ones((n, 1), np.float32),
                zero_point=None, group=np.zeros(k, np.int32), qmin=-8, qmax=7, levels=None, thresholds=None)
    _core.gptq_columns(**args)
    for bad, match in [({"group": np.full(k, 1, np.int32)}, "group"), ({"end": k + 1}, "begin/end"),
                       ({"a": f(k, k + 1)}, "a:"), ({"x": f(n, k)[:, ::2].copy().reshape(n, k // 2)}, "x:"),
                       ({"zero_point": np.full((n, 1), 9, np.int32)}, "zero_point"),
                       ({"levels": np.zeros(4, np.float32)}, "levels/thresholds"),
                       ({"levels": np.zeros(4, np.float32), "thresholds": np.zeros(2, np.float32)}, "thresholds")]:
        with pytest.raises(ValueError, match=match):
            _core.gptq_columns(**{**args, **bad})
    with pytest.raises(TypeError, match="w: expected a float32"):
        _core.gptq_columns(**{**args, "w": np.zeros((n, k))})
    ro = f(n, k)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="q: array is read-only"):
        _core.gptq_columns(**{**args, "q": ro})


def test_schemes_without_a_grid_run_the_numpy_loop(rng):
    """A registered scheme with only a column_quantizer (no ColumnGrid) still gets GPTQ, through
    the NumPy loop: here int4 groups with the grid withheld, equal to the compiled result."""

    class NoGrid(lowbit.Int4Weights):
        def column_grid(self, stored, n, k):
            return None

    w = (rng.standard_normal((16, 96)) * 0.1).astype(np.float32)
    x = _correlated_inputs(rng, 256, 96)
    h = x.astype(np.float64).T @ x / 256
    got, _ = gptq_quantize(w, h, NoGrid(group_size=32))
    want, _ = gptq_quantize(w, h, lowbit.Int4Weights(group_size=32))
    np.testing.assert_array_equal(got["weight_packed"], want["weight_packed"])
