"""Activations run in place on a QuantLinear's result (lowbit.nn.fused): which pairs fuse, the
same values bit for bit as the unfused model, and every unsafe case falling back to the module."""

import copy
import io
import pickle

import lowbit
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn


def _mlp(act: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), act, nn.Linear(32, 8)).eval()


def _act_calls(model: nn.Module) -> list[int]:
    """Counts the calls of each wrapped activation's original module (the fallback path)."""
    calls = [0]
    for m in model.modules():
        if isinstance(m, lowbit.nn.InplaceActivation):
            m.act.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    return calls


ACTS = [nn.ReLU(), nn.GELU(), nn.GELU(approximate="tanh"), nn.SiLU(), nn.Tanh(), nn.Sigmoid()]


@pytest.mark.parametrize("act", ACTS, ids=lambda a: repr(a))
def test_fused_equals_unfused_and_runs_in_place(act):
    q = lowbit.quantize_model(_mlp(act), progress=False)
    assert lowbit.nn.fused_activations(q) == [("0", "1")]
    plain = copy.deepcopy(q)
    lowbit.nn.unfuse_activations_(plain)
    assert type(plain[1]) is type(act)
    x = torch.randn(64, 16)
    calls = _act_calls(q)
    with torch.no_grad():
        y = q(x)
        want = plain(x)
    assert torch.equal(y, want)
    assert calls[0] == 0  # the in-place path ran
    # and the layer alone still returns its own (pre-activation) result
    with torch.no_grad():
        assert torch.equal(q[0](x), plain[0](x))


def test_transformers_gelu_activation():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64)
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).eval()
    q = lowbit.quantize_model(model, progress=False)
    pairs = dict(lowbit.nn.fused_activations(q))
    for i in range(2):
        assert pairs[f"encoder.layer.{i}.intermediate.dense"] == f"encoder.layer.{i}.intermediate.intermediate_act_fn"
    plain = copy.deepcopy(q)
    lowbit.nn.unfuse_activations_(plain)
    ids = torch.randint(0, 64, (3, 12))
    calls = _act_calls(q)
    with torch.no_grad():
        assert torch.equal(q(input_ids=ids).last_hidden_state, plain(input_ids=ids).last_hidden_state)
    assert calls[0] == 0


class _TwoUses(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.act = nn.GELU()

    def forward(self, x):
        h = self.fc(x)
        return self.act(h) + h  # the pre-activation result is used again: must not be overwritten


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.act = nn.GELU()

    def forward(self, x):
        if float(x.sum()) > 0:  # data-dependent control flow: fx cannot trace it
            return self.act(self.fc(x))
        return self.act(self.fc(-x))


def test_unsafe_structures_are_not_fused():
    torch.manual_seed(0)
    for cls in (_TwoUses, _Untraceable):
        m = cls().eval()
        q = lowbit.quantize_model(m, progress=False)
        assert lowbit.nn.fused_activations(q) == []
        x = torch.randn(4, 8)
        with torch.no_grad():
            assert torch.equal(q(x), q(x))
    shared = nn.GELU()
    m = nn.Sequential(nn.Linear(8, 8), shared, nn.Linear(8, 8), shared).eval()
    assert lowbit.nn.fused_activations(lowbit.quantize_model(m, progress=False)) == []


def test_fallbacks_keep_values_and_hooked_results():
    q = lowbit.quantize_model(_mlp(nn.GELU()), progress=False)
    plain = copy.deepcopy(q)
    lowbit.nn.unfuse_activations_(plain)
    x = torch.randn(8, 16)
    with torch.no_grad():
        want_pre, want = plain[0](x), plain(x)
    calls = _act_calls(q)
    # a forward hook on the producer may keep its result: no in-place
    kept = []
    h = q[0].register_forward_hook(lambda mod, inp, out: kept.append(out))
    with torch.no_grad():
        assert torch.equal(q(x), want)
    h.remove()
    assert torch.equal(kept[0], want_pre) and calls[0] == 1
    with lowbit.nn.unchained(), torch.no_grad():  # lowbit.compare reads layer outputs in here
        assert torch.equal(q(x), want)
    assert calls[0] == 2
    q.train()
    with torch.no_grad():
        assert torch.equal(q(x), want)
    assert calls[0] == 3
    q.eval()
    # an input that is not the producer's last result (here: modified in place since) is not touched
    with torch.no_grad():
        pre = q[0](x)
        pre.mul_(1.0)
        z = q[1](pre)
    assert torch.equal(pre, want_pre) and torch.equal(z, torch.nn.functional.gelu(want_pre))
    assert calls[0] == 4


def test_save_load_pickle_deepcopy_keep_fusion(tmp_path):
    q = lowbit.quantize_model(_mlp(nn.GELU()), progress=False)
    x = torch.randn(8, 16)
    with torch.no_grad():
        want = q(x)
    path = tmp_path / "m.lowbit"
    lowbit.save(q, path)
    loaded = lowbit.load(path, _mlp(nn.GELU()))
    assert lowbit.nn.fused_activations(loaded) == [("0", "1")]
    buf = io.BytesIO()
    torch.save(q, buf)  # after a forward: nothing unpicklable left on the modules
    for other in (loaded, copy.deepcopy(q), pickle.loads(pickle.dumps(q))):
        calls = _act_calls(other)
        with torch.no_grad():
            assert torch.equal(other(x), want)
        assert calls[0] == 0


def test_bad_input():
    with pytest.raises(TypeError, match="model"):
        lowbit.nn.fuse_activations_("not a model")
    with pytest.raises(TypeError, match="model"):
        lowbit.nn.unfuse_activations_(3)


def test_layer_called_on_its_own_keeps_its_result():
    """Outside its parent's forward the layer's result may be kept by the caller: the activation
    module then never writes into it."""
    q = lowbit.quantize_model(_mlp(nn.GELU()), progress=False)
    x = torch.randn(8, 16)
    with torch.no_grad():
        h = q[0](x)
        keep = h.clone()
        a = q[1](h)
    assert torch.equal(h, keep) and torch.equal(a, torch.nn.functional.gelu(keep))


def test_inference_mode_and_unfuse_removes_hooks():
    q = lowbit.quantize_model(_mlp(nn.GELU()), progress=False)
    x = torch.randn(8, 16)
    with torch.no_grad():
        want = q(x)
    calls = _act_calls(q)
    with torch.inference_mode():
        assert torch.equal(q(x), want)
    assert calls[0] == 0
    lowbit.nn.unfuse_activations_(q)
    assert not q._forward_pre_hooks and not q._forward_hooks
    with torch.no_grad():
        assert torch.equal(q(x), want)
