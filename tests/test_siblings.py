"""Tests for lowbit.nn.siblings (and _core.linear_parts under it): int8 QuantLinear siblings on one
input share one quantized input and GEMM, bit for bit the layers' own results; groups form only
from what they see, hand out only fresh results for the very input, and switch off when unused."""

from __future__ import annotations

import copy
import io
import pickle

import lowbit
import numpy as np
import pytest
from lowbit import _core
from lowbit.core.matmul import prepare_linear

torch = pytest.importorskip("torch")
nn = torch.nn


# --- _core.linear_parts -------------------------------------------------------------------------

@pytest.mark.parametrize("act", ["dynamic", "dynamic_per_tensor", "static"])
@pytest.mark.parametrize("m", [1, 7, 33, 300])
def test_linear_parts_equal_separate_calls(isa, rng, act, m):
    k = 96
    ns = [64, 17, 160]
    kw = {"activation_scale": 0.05, "activation_zero_point": 3} if act == "static" else {}
    calls = [prepare_linear(lowbit.pack_weight(rng.standard_normal((n, k)).astype(np.float32)),
                            rng.standard_normal(n).astype(np.float32) if i != 1 else None, activation=act, **kw)
             for i, n in enumerate(ns)]
    x = (rng.standard_normal((m, k)) * 2).astype(np.float32)
    got = _core.linear_parts(x, [c.args for c in calls])
    for c, y in zip(calls, got):
        np.testing.assert_array_equal(y, c(x))


def test_linear_parts_bad_input(rng):
    w = lowbit.pack_weight(rng.standard_normal((16, 32)).astype(np.float32))
    a = prepare_linear(w).args
    b = prepare_linear(w, activation="static", activation_scale=0.1).args
    x = rng.standard_normal((4, 32)).astype(np.float32)
    with pytest.raises(ValueError, match="activation quantization differs"):
        _core.linear_parts(x, [a, b])
    with pytest.raises(ValueError, match="at least one"):
        _core.linear_parts(x, [])
    with pytest.raises(ValueError, match="does not match"):
        _core.linear_parts(np.ascontiguousarray(x[:, :16]), [a])


# --- groups in models ---------------------------------------------------------------------------

class Attn(nn.Module):
    def __init__(self, d=48):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, 2 * d)
        self.o = nn.Linear(2 * d, d)

    def forward(self, x):
        a = torch.softmax(self.q(x) @ self.k(x).transpose(-1, -2), -1) @ self.v(x)
        return self.o(a)


class Chain(nn.Module):
    """Two siblings by shape that never share an input."""

    def __init__(self, d=32):
        super().__init__()
        self.a, self.b = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def _twins(model):
    torch.manual_seed(0)
    q = lowbit.quantize_model(model, progress=False)
    alone = copy.deepcopy(q)
    lowbit.nn.ungroup_siblings_(alone)
    return q, alone


def test_group_results_bit_identical():
    torch.manual_seed(0)
    q, alone = _twins(nn.Sequential(Attn(), nn.LayerNorm(48)))
    assert lowbit.nn.sibling_groups(q) == [("0.q", "0.k", "0.v")]
    x = torch.randn(3, 20, 48)
    with torch.no_grad():
        for _ in range(4):
            assert torch.equal(q(x), alone(x))
    g = q[0].q._siblings
    assert g.shared is not None and not g.off  # it shares by now


def test_group_uses_one_gemm(monkeypatch):
    torch.manual_seed(0)
    q, _ = _twins(Attn())
    calls = []
    real = _core.linear_parts
    monkeypatch.setattr(_core, "linear_parts", lambda x, parts: calls.append(len(parts)) or real(x, parts))
    x = torch.randn(2, 5, 48)
    with torch.no_grad():
        for _ in range(4):
            q(x)
    assert calls and all(n == 3 for n in calls) and len(calls) == 2  # watched twice, then shared


def test_group_never_forms_without_a_shared_input():
    torch.manual_seed(0)
    q, alone = _twins(Chain())
    assert lowbit.nn.sibling_groups(q) == [("a", "b")]
    x = torch.randn(4, 32)
    with torch.no_grad():
        for _ in range(20):
            assert torch.equal(q(x), alone(x))
    g = q.a._siblings
    assert g.shared is None and g.off  # watched long enough, then off


def test_group_switches_off_when_results_go_unused():
    class Switching(Attn):
        mode = "qkv"

        def forward(self, x):
            if self.mode == "qkv":
                return super().forward(x)
            return [self.q(x + i) for i in range(3)]  # the query alone, on fresh tensors

    torch.manual_seed(0)
    q, alone = _twins(Switching())
    x = torch.randn(2, 5, 48)
    with torch.no_grad():
        for _ in range(3):
            q(x)
        assert q.q._siblings.shared is not None
        q.mode = alone.mode = "q"
        for _ in range(2):
            assert all(torch.equal(a, b) for a, b in zip(q(x), alone(x)))
    assert q.q._siblings.off


def test_group_never_hands_a_stale_result():
    """The input modified in place between the siblings' calls: each computes on what it gets."""

    class Mutating(Attn):
        def forward(self, x):
            a = self.q(x)
            x.mul_(2)
            return a, self.k(x), self.v(x)

    torch.manual_seed(0)
    q, alone = _twins(Mutating())
    with torch.no_grad():
        for _ in range(4):
            x = torch.randn(2, 5, 48)
            got = q(x.clone())
            want = alone(x.clone())
            assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_group_outside_parent_forward_and_autograd():
    torch.manual_seed(0)
    q, alone = _twins(Attn())
    x = torch.randn(2, 5, 48)
    with torch.no_grad():
        for _ in range(3):
            q(x)
        # a layer called on its own (outside its parent's forward) computes alone
        assert torch.equal(q.k(x), alone.k(x))
    y = q(x.requires_grad_())  # autograd recording: each layer alone (no shared results)
    assert torch.equal(y, alone(x))


def test_grouped_model_copies_pickles_and_saves(tmp_path):
    torch.manual_seed(0)
    q, alone = _twins(Attn())
    x = torch.randn(2, 5, 48)
    with torch.no_grad():
        q(x)
        q(x)
        for m in (copy.deepcopy(q), pickle.loads(pickle.dumps(q))):
            assert m.q._siblings.shared is None  # a copy watches again
            assert torch.equal(m(x), alone(x))
        buf = io.BytesIO()
        torch.save(q.state_dict(), buf)
        assert set(q.state_dict()) == set(alone.state_dict())
        lowbit.save(q, tmp_path / "m.lowbit")
        loaded = lowbit.load(tmp_path / "m.lowbit", Attn())
        assert lowbit.nn.sibling_groups(loaded) == [("q", "k", "v")]
        assert torch.equal(loaded(x), alone(x))


def test_group_siblings_bad_input():
    with pytest.raises(TypeError, match="model"):
        lowbit.nn.group_siblings_("model")
    with pytest.raises(TypeError, match="model"):
        lowbit.nn.ungroup_siblings_(3)


def test_group_shared_by_threads():
    """Two threads run one grouped model on their own inputs: each gets its own results."""
    import threading

    torch.manual_seed(0)
    q, alone = _twins(Attn())
    xs = [torch.randn(2, 9, 48) for _ in range(2)]
    with torch.no_grad():
        want = [alone(x) for x in xs]
    bad = []

    def work(i):
        with torch.no_grad():
            for _ in range(40):
                if not torch.equal(q(xs[i]), want[i]):
                    bad.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad
