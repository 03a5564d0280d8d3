"""The result-buffer cache (lowbit.buffer_cache): large results reuse freed results' pages, a
result still held is never handed out again, and the values never depend on the cache."""

import os
import subprocess
import sys

import lowbit
import numpy as np
import pytest

M, K, N = 512, 256, 384  # a float32 result of 768 KiB: pooled


@pytest.fixture
def default_cache():
    limit = lowbit.buffer_cache()["max_bytes"]
    yield
    lowbit.buffer_cache(limit)


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    w = lowbit.pack_weight(rng.standard_normal((N, K)).astype(np.float32))
    return rng.standard_normal((M, K)).astype(np.float32), w, rng.standard_normal(N).astype(np.float32)


def test_freed_result_is_reused_and_values_match_uncached(default_cache):
    x, w, b = _inputs()
    lowbit.buffer_cache(0)
    want = lowbit.linear(x, w, b)
    want_int4 = lowbit.linear(x, lowbit.pack_weight(x[:N].copy(), dtype="int4"), b)
    lowbit.buffer_cache(64 << 20)
    first = lowbit.linear(x, w, b)
    addr = first.__array_interface__["data"][0]
    np.testing.assert_array_equal(first, want)
    # poison the buffer: a reused buffer must be fully overwritten
    first.fill(np.nan)
    del first
    before = lowbit.buffer_cache()
    assert before["cached_bytes"] >= M * N * 4
    again = lowbit.linear(x, w, b)
    after = lowbit.buffer_cache()
    assert after["hits"] == before["hits"] + 1
    assert again.__array_interface__["data"][0] == addr
    np.testing.assert_array_equal(again, want)
    del again
    y4 = lowbit.linear(x, lowbit.pack_weight(x[:N].copy(), dtype="int4"), b)
    np.testing.assert_array_equal(y4, want_int4)


def test_held_result_is_never_handed_out(default_cache):
    x, w, b = _inputs()
    lowbit.buffer_cache(64 << 20)
    results = [lowbit.linear(x * (i + 1), w, b) for i in range(4)]
    addrs = {r.__array_interface__["data"][0] for r in results}
    assert len(addrs) == 4
    lowbit.buffer_cache(0)
    for i, r in enumerate(results):
        np.testing.assert_array_equal(r, lowbit.linear(x * (i + 1), w, b))


def test_views_keep_the_buffer(default_cache):
    x, w, b = _inputs()
    lowbit.buffer_cache(64 << 20)
    view = lowbit.linear(x, w, b)[3:5]
    keep = view.copy()
    for _ in range(3):
        lowbit.linear(x * 2, w, b)
    np.testing.assert_array_equal(view, keep)


def test_torch_tensor_keeps_the_buffer(default_cache):
    torch = pytest.importorskip("torch")
    lin = torch.nn.Linear(K, N).eval()
    q = lowbit.quantize_model(torch.nn.Sequential(lin), progress=False)
    lowbit.buffer_cache(64 << 20)
    x = torch.randn(M, K)
    with torch.no_grad():
        y = q(x)
        keep = y.clone()
        for i in range(3):
            q(x * (i + 2))
        assert torch.equal(y, keep)
        lowbit.buffer_cache(0)
        assert torch.equal(q(x), keep)


def test_limit_zero_caches_nothing_and_empty_frees(default_cache):
    x, w, b = _inputs()
    lowbit.buffer_cache(64 << 20)
    lowbit.linear(x, w, b)
    assert lowbit.buffer_cache()["cached_bytes"] > 0
    lowbit.empty_buffer_cache()
    assert lowbit.buffer_cache()["cached_bytes"] == 0
    assert lowbit.buffer_cache()["max_bytes"] == 64 << 20
    lowbit.buffer_cache(0)
    lowbit.linear(x, w, b)
    assert lowbit.buffer_cache()["cached_bytes"] == 0
    # a limit below one result: freed results are not kept
    lowbit.buffer_cache(M * N * 4 // 2)
    lowbit.linear(x, w, b)
    assert lowbit.buffer_cache()["cached_bytes"] == 0


def test_small_results_are_not_pooled(default_cache):
    x, w, b = _inputs()
    lowbit.buffer_cache(64 << 20)
    before = lowbit.buffer_cache()
    lowbit.linear(x[:4], w, b)
    after = lowbit.buffer_cache()
    assert (after["hits"], after["misses"]) == (before["hits"], before["misses"])


def test_quantize_and_conv_results_come_from_the_cache(default_cache):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1024, 1024)).astype(np.float32)
    lowbit.buffer_cache(0)
    want = lowbit.quantize(x, dtype="int8", scale=0.05).data.copy()
    lowbit.buffer_cache(64 << 20)
    for _ in range(2):
        got = lowbit.quantize(x, dtype="int8", scale=0.05)
        np.testing.assert_array_equal(got.data, want)
        del got
    assert lowbit.buffer_cache()["hits"] >= 1


def test_bad_limits():
    with pytest.raises(TypeError, match="max_bytes"):
        lowbit.buffer_cache(1.5)
    with pytest.raises(TypeError, match="max_bytes"):
        lowbit.buffer_cache(True)
    with pytest.raises(ValueError, match="max_bytes"):
        lowbit.buffer_cache(-1)


def test_fork_child_allocates():
    """A fork() child (its parent's lock state copied) allocates and frees results normally."""
    code = """
import os, numpy as np, lowbit
x = np.ones((512, 256), np.float32); w = lowbit.pack_weight(np.ones((384, 256), np.float32))
for _ in range(3): lowbit.linear(x, w)
pid = os.fork()
if pid == 0:
    ok = all(float(lowbit.linear(x, w)[0, 0]) == 256.0 for _ in range(3))
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert "child 0" in r.stdout


def test_pooled_empty_reuses_a_freed_block_and_checks_its_shape(default_cache):
    from lowbit import _core

    lowbit.buffer_cache(64 << 20)
    a = _core.pooled_empty([256, 1024], np.dtype(np.float32))
    assert a.shape == (256, 1024) and a.dtype == np.float32 and a.flags.writeable
    a[:] = 1.0
    address = a.__array_interface__["data"][0]
    del a
    hits = lowbit.buffer_cache()["hits"]
    b = _core.pooled_empty([1024, 256], np.dtype(np.float32))  # same size: the freed block again
    assert b.__array_interface__["data"][0] == address and lowbit.buffer_cache()["hits"] == hits + 1
    c = _core.pooled_empty([1024, 256], np.dtype(np.float32))  # b is alive: another block
    assert c.__array_interface__["data"][0] != address
    assert _core.pooled_empty([3], np.dtype(np.uint8)).shape == (3,)  # small: not pooled, still an array
    with pytest.raises(ValueError, match="shape"):
        _core.pooled_empty([-1, 4], np.dtype(np.float32))
