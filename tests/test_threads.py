"""Thread backends (lowbit.set_thread_backend): lowbit's own pool or torch's OpenMP team, same
results either way, the "auto" rule, fork children, and failures that must raise."""

import os
import subprocess
import sys

import lowbit
import numpy as np
import pytest
from lowbit import _core


def run_py(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
                          timeout=120)


def counts() -> dict:
    return dict(_core.parallel_counts())


def test_backend_argument_checks():
    with pytest.raises(TypeError, match="name"):
        lowbit.set_thread_backend(1)
    with pytest.raises(ValueError, match="name"):
        lowbit.set_thread_backend("openmp")
    with pytest.raises(ValueError, match="name"):
        _core.set_thread_backend("gomp")


def test_attach_openmp_failures_name_the_library():
    with pytest.raises(ValueError, match="library: .*not loaded"):
        _core.attach_openmp("/nonexistent/libgomp.so.1")
    # libc is loaded, but neither it nor its dependencies define GOMP_parallel.
    with pytest.raises(ValueError, match="library: no OpenMP runtime"):
        _core.attach_openmp("libc.so.6")


def test_auto_rule_and_explicit_choice_in_a_fresh_process():
    """auto: own pool until lowbit's torch ops load, then torch's team; explicit choices stick;
    set_thread_backend('openmp') in the C++ layer needs an attached runtime."""
    code = """
import lowbit
from lowbit import _core
assert lowbit.get_thread_backend() == "own"
try:
    _core.set_thread_backend("openmp")
    raise SystemExit("no error before attach")
except ValueError as e:
    assert "attach" in str(e), e
import torch
assert lowbit.get_thread_backend() == "own", "importing torch alone changes nothing"
import lowbit.nn
want = "torch" if torch.backends.openmp.is_available() else "own"
assert lowbit.get_thread_backend() == want, lowbit.get_thread_backend()
assert lowbit.cpu_info()["thread_backend"] == want
# auto watches the team's joins (falls back to the own pool when it stalls); explicit torch does not
assert _core.get_thread_backend() == ("openmp_adaptive" if want == "torch" else "own")
lowbit.set_thread_backend("own")
assert lowbit.get_thread_backend() == "own"
if want == "torch":
    lowbit.set_thread_backend("torch")
    assert _core.get_thread_backend() == "openmp"
lowbit.set_thread_backend("auto")
assert lowbit.get_thread_backend() == want
print("ok", want)
"""
    r = run_py(code)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr + r.stdout


def test_explicit_torch_raises_without_openmp(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.backends.openmp, "is_available", lambda: False)
    before = lowbit.get_thread_backend()
    with pytest.raises(RuntimeError, match="OpenMP"):
        lowbit.set_thread_backend("torch")
    assert lowbit.get_thread_backend() == before


def _torch_team_or_skip() -> None:
    torch = pytest.importorskip("torch")
    if not torch.backends.openmp.is_available():
        pytest.skip("this torch build has no OpenMP")


@pytest.fixture
def restore_threads():
    from lowbit.core import cpu

    n, setting = lowbit.get_num_threads(), cpu._thread_backend
    yield
    lowbit.set_num_threads(n)
    lowbit.set_thread_backend(setting)


@pytest.mark.parametrize("threads", [2, 3])
def test_torch_team_results_equal_own_pool(threads, restore_threads):
    """Every parallel op family gives the same bytes on torch's team and on the own pool, and the
    torch backend really runs its regions on the OpenMP team."""
    _torch_team_or_skip()
    rng = np.random.default_rng(threads)
    x = rng.standard_normal((300, 777)).astype(np.float32) * 3
    a = rng.integers(-128, 128, (257, 640), dtype=np.int8)
    b = rng.integers(-128, 128, (640, 1000), dtype=np.int8)
    w = lowbit.pack_weight(rng.integers(-127, 128, (1000, 777), dtype=np.int8), scale=np.full(1000, 0.01, np.float32))
    big = rng.standard_normal(1 << 20).astype(np.float32)
    lowbit.set_num_threads(threads)

    def run():
        return [lowbit.quantize(big, 0.05, 3).data, lowbit.matmul_int8(a, b), lowbit.matmul_int8(a, b.T.copy().T),
                lowbit.linear(x, w), lowbit.linear(x, w, activation="dynamic_per_tensor")]

    lowbit.set_thread_backend("own")
    c0 = counts()
    want = run()
    assert counts()["own"] > c0["own"]
    lowbit.set_thread_backend("torch")
    assert lowbit.get_thread_backend() == "torch"
    c1 = counts()
    got = run()
    c2 = counts()
    assert c2["openmp"] > c1["openmp"] and c2["own"] == c1["own"]
    for g, e in zip(got, want):
        assert g.dtype == e.dtype and np.array_equal(g, e)
    assert np.array_equal(want[1].astype(np.int64), a.astype(np.int64) @ b.astype(np.int64))


def test_threads_follow_torch_on_its_team():
    """Unless set, lowbit's thread count on torch's team is torch's."""
    code = """
import torch, lowbit, lowbit.nn
if lowbit.get_thread_backend() == "torch":
    torch.set_num_threads(1)
    assert lowbit.get_num_threads() == 1, lowbit.get_num_threads()
    torch.set_num_threads(3)
    assert lowbit.get_num_threads() == 3, lowbit.get_num_threads()
    lowbit.set_num_threads(2)
    assert lowbit.get_num_threads() == 2
print("ok")
"""
    r = run_py(code)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_fork_child_runs_on_own_pool():
    """A fork() child never calls into the parent's OpenMP team (it does not exist there): it
    runs on a pool of its own, with the same results."""
    code = """
import os, numpy as np, torch, lowbit, lowbit.nn
from lowbit import _core
lowbit.set_num_threads(2)
x = np.random.default_rng(0).standard_normal(1 << 20).astype(np.float32)
want = lowbit.quantize(x, 0.05).data
pid = os.fork()
if pid == 0:
    ok = lowbit.get_thread_backend() == "own"
    before = dict(_core.parallel_counts())["own"]
    ok = ok and np.array_equal(lowbit.quantize(x, 0.05).data, want)
    ok = ok and dict(_core.parallel_counts())["own"] > before
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status), lowbit.get_thread_backend())
"""
    r = run_py(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == ["child", "0"], r.stdout


@pytest.mark.parametrize("m,k,n", [(70, 4100, 200), (300, 640, 1000), (5, 96, 33)])
def test_plain_b_matmul_packs_in_panel_chunks_exactly(m, k, n, restore_threads):
    """matmul_int8 on a plain B packs panel chunks inside the tasks (several chunks, a last odd
    one, edge columns): exact at every ISA, thread count and B layout."""
    rng = np.random.default_rng(m)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    want = a.astype(np.int64) @ b.astype(np.int64)
    for isa in lowbit.cpu_info()["available"][:-1]:  # every SIMD level (scalar is covered elsewhere)
        with lowbit.arch(isa):
            for threads in (1, 3):
                lowbit.set_num_threads(threads)
                for bb, w in ((b, want), (np.asfortranarray(b), want), (b[:, ::-1], want[:, ::-1])):
                    np.testing.assert_array_equal(lowbit.matmul_int8(a, bb).astype(np.int64), w)


def test_auto_leaves_an_oversubscribed_team():
    """With far more runnable threads than cores (8 OpenMP threads per core, and a busy process per
    core beside them), "auto" sees its team regions stall again and again and moves the work to the
    own pool; results stay the same."""
    code = """
import os, subprocess, sys, numpy as np, torch, lowbit, lowbit.nn
from lowbit import _core
if lowbit.get_thread_backend() != "torch":
    print("ok skip"); raise SystemExit
cores = len(os.sched_getaffinity(0))
busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
torch.set_num_threads(8 * cores)
rng = np.random.default_rng(0)
w = lowbit.pack_weight(rng.standard_normal((512, 512)).astype(np.float32))
x = rng.standard_normal((256, 512)).astype(np.float32)
lowbit.set_thread_backend("own")
want = lowbit.linear(x, w)
lowbit.set_thread_backend("auto")
c0 = dict(_core.parallel_counts())
import time
t = time.perf_counter()
try:
    while time.perf_counter() - t < 10:
        assert np.array_equal(lowbit.linear(x, w), want)
        c = dict(_core.parallel_counts())
        if c["stalls"] - c0["stalls"] >= 2 and c["own"] > c0["own"]:
            break
finally:
    for p in busy:
        p.kill()
c = dict(_core.parallel_counts())
print("ok", c["stalls"] - c0["stalls"], c["own"] - c0["own"], c["openmp"] - c0["openmp"])
"""
    r = run_py(code)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr + r.stdout
    words = r.stdout.split()
    if words[1] != "skip":
        stalls, own = int(words[1]), int(words[2])
        assert stalls >= 2 and own > 0, r.stdout
