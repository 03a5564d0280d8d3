"""Tests for lowbit.attention (core/attention.py, the attention_f32 kernels) and its torch side
(nn/attention.py): every ISA against a float64 NumPy evaluation (masks, causal, grouped-query
heads, strided inputs, fully masked rows, NaN), torch's scaled_dot_product_attention, transformers
models switched to "lowbit" attention, bad input."""

from __future__ import annotations

import math

import lowbit
import numpy as np
import pytest
from lowbit import _core

RTOL, ATOL = 2e-5, 2e-6  # float32 with the kernel's summation order and exp (lowbit/attention.hpp)


def reference(q, k, v, mask=None, causal=False, scale=None):
    """float64 softmax(q k^T * scale + mask) v, grouped heads repeated; fully masked rows 0."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    rep = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
    s = q @ np.swapaxes(k, -1, -2) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if mask is not None:
        m = np.asarray(mask)
        s = s + (np.where(m, 0.0, -np.inf) if m.dtype == np.bool_ else m.astype(np.float64))
    if causal:
        sq, sk = s.shape[-2:]
        s = np.where(np.arange(sk)[None, :] > np.arange(sq)[:, None], -np.inf, s)
    mx = s.max(-1, keepdims=True)
    mx = np.where(np.isneginf(mx), 0.0, mx)
    e = np.exp(s - mx)
    tot = e.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(tot == 0, 0.0, e / tot)
    return p @ v


def qkv(rng, b, h, hk, sq, sk, d, dv):
    q = rng.standard_normal((b, h, sq, d)).astype(np.float32)
    k = rng.standard_normal((b, hk, sk, d)).astype(np.float32)
    v = rng.standard_normal((b, hk, sk, dv)).astype(np.float32)
    return q, k, v


SHAPES = [  # b, h, kv heads, queries, keys, d, dv
    (1, 1, 1, 1, 1, 1, 1),
    (2, 3, 3, 5, 7, 8, 8),
    (2, 4, 2, 17, 33, 16, 24),
    (1, 6, 1, 9, 130, 32, 32),
    (3, 2, 2, 40, 40, 64, 80),
    (1, 2, 2, 3, 257, 5, 3),
    # at most 4 query rows and head sizes of whole vectors: keys and values used in place
    (2, 4, 2, 1, 77, 64, 64),
    (1, 3, 3, 4, 40, 32, 16),
    (1, 2, 1, 3, 19, 128, 128),
    (2, 2, 2, 2, 16, 16, 32),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["none", "keys", "full", "bool", "pad", "pad rows", "causal", "causal+mask"])
def test_attention_matches_float64(isa, rng, shape, kind):
    b, h, hk, sq, sk, d, dv = shape
    q, k, v = qkv(rng, b, h, hk, sq, sk, d, dv)
    mask, causal = None, kind.startswith("causal")
    if kind == "keys":  # a padding mask (batch, 1, 1, keys), finfo.min as transformers writes it
        mask = np.zeros((b, 1, 1, sk), np.float32)
        mask[..., sk // 2 + 1:] = np.finfo(np.float32).min
    elif kind in ("full", "causal+mask"):
        mask = rng.standard_normal((b, h, sq, sk)).astype(np.float32)
    elif kind == "bool":
        mask = rng.random((1, h, sq, sk)) < 0.7
        mask[..., 0] = True
    elif kind == "pad":  # padding keys hidden from every row (left out by the kernel), per sequence
        mask = np.ones((b, 1, 1, sk), bool)
        mask[0, ..., sk // 3 + 1:] = False
    elif kind == "pad rows":  # -inf padding, but some rows see some padding keys (kept for all rows)
        mask = np.zeros((b, h, sq, sk), np.float32)
        mask[..., sk // 2 + 1:] = -np.inf
        mask[:, :, ::3, -1] = 0.5
    got = lowbit.attention(q, k, v, mask, causal=causal)
    np.testing.assert_allclose(got, reference(q, k, v, mask, causal), rtol=RTOL, atol=ATOL)


def test_attention_runs_the_forced_isa_kernel(isa, rng):
    q, k, v = qkv(rng, 1, 2, 2, 8, 8, 8, 8)
    chosen = lowbit.cpu_info()["ops"]["attention_f32"]
    assert chosen == isa or isa not in dict(_core.op_isas())["attention_f32"]
    before = dict(dict(_core.kernel_calls())["attention_f32"]).get(chosen, 0)
    lowbit.attention(q, k, v)
    assert dict(dict(_core.kernel_calls())["attention_f32"])[chosen] > before


def test_attention_strided_views_and_out_layout(isa, rng):
    """q, k, v as the heads of one (batch, tokens, 3, heads, d) array (a transformer's views) and
    the result written into a (batch, tokens, heads, d) array through its transposed view."""
    b, s, h, d = 2, 19, 3, 16
    x = rng.standard_normal((b, s, 3, h, d)).astype(np.float32)
    q, k, v = (x[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    before = x.copy()
    out = np.full((b, s, h, d), np.nan, np.float32)
    res = lowbit.attention(q, k, v, scale=0.3, out=out.transpose(0, 2, 1, 3))
    assert np.shares_memory(res, out)
    np.testing.assert_allclose(out.transpose(0, 2, 1, 3), reference(q, k, v, scale=0.3), rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(x, before)  # inputs untouched


def test_attention_padding_left_out_exactly(isa, rng):
    """Keys hidden from every row contribute exactly nothing: the result equals attention over
    the other keys alone; every key hidden: zeros; a NaN in the mask still reaches its row."""
    q, k, v = qkv(rng, 2, 3, 3, 20, 45, 16, 16)
    mask = np.zeros((2, 1, 20, 45), np.float32)
    keep = np.sort(rng.choice(45, 17, replace=False))
    mask[..., np.setdiff1d(np.arange(45), keep)] = -np.inf
    got = lowbit.attention(q, k, v, mask)
    np.testing.assert_allclose(got, lowbit.attention(q, k[:, :, keep], v[:, :, keep]), rtol=RTOL, atol=ATOL)
    mask[1] = -np.inf
    got = lowbit.attention(q, k, v, mask)
    assert np.all(got[1] == 0)
    mask[0, 0, 5, 0] = np.nan
    got = lowbit.attention(q, k, v, mask)
    assert np.all(np.isnan(got[0, :, 5])) and not np.any(np.isnan(np.delete(got[0], 5, axis=1)))


def test_attention_masked_rows_nan_and_extremes(isa, rng):
    q, k, v = qkv(rng, 1, 2, 2, 4, 6, 8, 8)
    mask = np.zeros((1, 1, 4, 6), np.float32)
    mask[..., 1, :] = -np.inf  # every key of row 1 hidden: zeros, as torch
    got = lowbit.attention(q, k, v, mask)
    assert np.all(got[:, :, 1] == 0)
    np.testing.assert_allclose(got, reference(q, k, v, mask), rtol=RTOL, atol=ATOL)
    q2 = q.copy()
    q2[0, 1, 2, 3] = np.nan  # NaN reaches that row only
    got = lowbit.attention(q2, k, v)
    assert np.all(np.isnan(got[0, 1, 2])) and not np.any(np.isnan(np.delete(got[0, 1], 2, axis=0)))
    big = lowbit.attention(q * 300, k, v)  # large scores: the row max keeps exp in range
    np.testing.assert_allclose(big, reference(q * 300, k, v), rtol=1e-4, atol=1e-5)


def test_attention_independent_of_threads(rng):
    q, k, v = qkv(rng, 2, 4, 4, 70, 70, 32, 32)
    old = lowbit.get_num_threads()
    try:
        lowbit.set_num_threads(1)
        one = lowbit.attention(q, k, v)
        lowbit.set_num_threads(max(2, old))
        many = lowbit.attention(q, k, v)
    finally:
        lowbit.set_num_threads(old)
    np.testing.assert_array_equal(one, many)  # a row's arithmetic never depends on the split


def test_attention_bad_input(rng):
    q, k, v = qkv(rng, 1, 4, 2, 3, 5, 8, 8)
    with pytest.raises(ValueError, match="q: expected 4 dimensions"):
        lowbit.attention(q[0], k, v)
    with pytest.raises(TypeError, match="k: expected a floating-point"):
        lowbit.attention(q, k.astype(np.int32), v)
    with pytest.raises(ValueError, match="heads must divide"):
        lowbit.attention(q, k[:, :1].repeat(3, axis=1), v[:, :1].repeat(3, axis=1))
    with pytest.raises(ValueError, match="k: last dimension"):
        lowbit.attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="v: .heads, keys."):
        lowbit.attention(q, k, v[:, :, :4])
    with pytest.raises(ValueError, match="batch"):
        lowbit.attention(q, np.concatenate([k, k]), np.concatenate([v, v]))
    with pytest.raises(ValueError, match="mask: shape"):
        lowbit.attention(q, k, v, np.zeros((1, 1, 3, 4), np.float32))
    with pytest.raises(TypeError, match="mask: expected a boolean or floating-point"):
        lowbit.attention(q, k, v, np.zeros((1, 1, 3, 5), np.int8))
    with pytest.raises(ValueError, match="scale: must be finite"):
        lowbit.attention(q, k, v, scale=float("inf"))
    with pytest.raises(ValueError, match="out: expected"):
        lowbit.attention(q, k, v, out=np.empty((1, 4, 3, 7), np.float32))
    with pytest.raises(ValueError, match="out: overlaps"):
        lowbit.attention(q, q, q, out=q)
    with pytest.raises(ValueError, match="no keys"):
        lowbit.attention(q, k[:, :, :0], v[:, :, :0])


def test_attention_converts_other_floats(rng):
    q, k, v = qkv(rng, 1, 2, 2, 3, 4, 8, 8)
    got = lowbit.attention(q.astype(np.float64), k.astype(np.float16), v)
    np.testing.assert_allclose(got, reference(q, k.astype(np.float16), v), rtol=1e-4, atol=1e-5)
    assert got.dtype == np.float32


# --- torch: the drop-in function and transformers models --------------------------------------

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("case", ["plain", "bool", "float", "causal", "gqa", "broadcast"])
def test_sdpa_drop_in_matches_torch(rng, case):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 9, 16, generator=g) for _ in range(3))
    kw = {}
    if case == "bool":
        kw["attn_mask"] = torch.rand(2, 1, 9, 9, generator=g) < 0.8
    elif case == "float":
        kw["attn_mask"] = torch.randn(2, 4, 9, 9, generator=g)
    elif case == "causal":
        kw["is_causal"] = True
    elif case == "gqa":
        k, v = k[:, :2], v[:, :2]
        kw["enable_gqa"] = True
    elif case == "broadcast":
        kw["attn_mask"] = torch.randn(9, 9, generator=g)
    got = lowbit.nn.scaled_dot_product_attention(q, k, v, **kw)
    torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v, **kw), rtol=RTOL, atol=ATOL)


def test_sdpa_drop_in_defers_to_torch():
    """Autograd, other dtypes and torch's own errors go through torch's function."""
    q = torch.randn(1, 2, 5, 8, requires_grad=True)
    y = lowbit.nn.scaled_dot_product_attention(q, q, q)
    y.sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
    d = torch.randn(1, 2, 5, 8, dtype=torch.float64)
    assert lowbit.nn.scaled_dot_product_attention(d, d, d).dtype == torch.float64
    f, m = d.float(), torch.randn(5, 5)  # a mask together with is_causal: torch's own semantics
    got = lowbit.nn.scaled_dot_product_attention(f, f, f, attn_mask=m, is_causal=True)
    assert torch.equal(got, F.scaled_dot_product_attention(f, f, f, attn_mask=m, is_causal=True))
    with pytest.raises(RuntimeError):  # torch's errors, e.g. heads that do not broadcast
        lowbit.nn.scaled_dot_product_attention(torch.randn(1, 4, 5, 8), torch.randn(1, 3, 5, 8), torch.randn(1, 3, 5, 8))


transformers = pytest.importorskip("transformers")


def kernel_runs() -> int:
    """How many tasks the attention kernels have run so far (all ISAs)."""
    return sum(dict(dict(_core.kernel_calls())["attention_f32"]).values())


def _bert():
    cfg = transformers.BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=32,
                                  attn_implementation="sdpa")
    torch.manual_seed(0)
    return transformers.BertModel(cfg).eval()


def test_quantize_model_switches_transformers_attention():
    model = _bert()
    q = lowbit.quantize_model(model, progress=False)
    assert q.config._attn_implementation == "lowbit" and model.config._attn_implementation == "sdpa"
    ids = torch.randint(0, 60, (3, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    with torch.no_grad():
        runs = kernel_runs()
        fast = q(input_ids=ids, attention_mask=mask).last_hidden_state
        assert kernel_runs() > runs
        assert lowbit.nn.use_torch_attention_(q) == [""]
        runs = kernel_runs()
        slow = q(input_ids=ids, attention_mask=mask).last_hidden_state
        assert kernel_runs() == runs
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
    assert lowbit.nn.use_lowbit_attention_(q) == [""]


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_causal_and_grouped_transformers_models(arch):
    """Decoders (causal, no mask; with a cache one query row) and grouped-query heads."""
    torch.manual_seed(0)
    if arch == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=50, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                      attn_implementation="sdpa")
        model = transformers.GPT2LMHeadModel(cfg).eval()
    else:
        cfg = transformers.LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                       attn_implementation="sdpa")
        model = transformers.LlamaForCausalLM(cfg).eval()
    q = lowbit.quantize_model(model, progress=False)
    assert q.config._attn_implementation == "lowbit"
    ids = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        runs = kernel_runs()
        fast = q(input_ids=ids).logits
        gen_fast = q.generate(ids, max_new_tokens=4, do_sample=False)
        assert kernel_runs() > runs
        lowbit.nn.use_torch_attention_(q)
        slow = q(input_ids=ids).logits
        gen_slow = q.generate(ids, max_new_tokens=4, do_sample=False)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
    assert torch.equal(gen_fast, gen_slow)


def test_transformers_attention_takes_any_float_mask_layout():
    """A float mask broadcast along the keys (stride 0) or with a strided key dimension."""
    torch.manual_seed(0)
    q = torch.randn(2, 4, 6, 8)
    k, v = torch.randn(2, 4, 9, 8), torch.randn(2, 4, 9, 8)
    for m in (torch.randn(2, 1, 6, 1).expand(2, 1, 6, 9), torch.randn(2, 1, 6, 18)[..., ::2]):
        got, _ = lowbit.nn.attention._hf_attention(None, q, k, v, m, scaling=0.3, is_causal=False)
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=0.3).transpose(1, 2)
        torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)


def test_lowbit_attention_falls_back_where_sdpa_would_differ():
    """output_attentions, training (dropout) and autograd take transformers' sdpa function."""
    model = _bert()
    q = lowbit.quantize_model(model, progress=False)
    ids = torch.randint(0, 60, (2, 6), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = q(input_ids=ids).last_hidden_state
    runs = kernel_runs()
    out = q(input_ids=ids).last_hidden_state  # grad mode: the sdpa path, the same values
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        att = q(input_ids=ids, output_attentions=True).last_hidden_state
    torch.testing.assert_close(att, ref, rtol=1e-4, atol=1e-5)
    assert kernel_runs() == runs
    with pytest.raises(TypeError):
        lowbit.nn.use_lowbit_attention_("model")
    assert lowbit.nn.use_lowbit_attention_(torch.nn.Linear(2, 2)) == []
