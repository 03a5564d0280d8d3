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
