"""Tests for lowbit.cpu: detection, dispatch control, threads, lazy imports."""

import os
import subprocess
import sys

import lowbit
import pytest
from lowbit import _core


def run_py(code: str, **env) -> subprocess.CompletedProcess:
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=120)


def test_cpu_info_shape():
    info = lowbit.cpu_info()
    assert info["available"][-1] == "scalar"
    # the best ISA, unless the user forces a lower one with LOWBIT_ARCH
    assert info["arch"] == os.environ.get("LOWBIT_ARCH", info["available"][0])
    assert set(info["ops"]) >= {"quantize_f32_s8", "dequantize_s8_f32", "fake_quantize_f32_f32"}
    assert info["num_threads"] >= 1
    assert all(v is True for v in info["features"].values())


def test_detection_agrees_with_proc_cpuinfo():
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    if not flags:
        pytest.skip("no x86 flags line")
    av = lowbit.cpu_info()["available"]
    assert ("avx2" in av) == ({"avx2", "fma", "f16c"} <= flags)
    assert ("avx512" in av) == ({"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags)
    assert ("avx512vnni" in av) == ("avx512" in av and "avx512_vnni" in flags)
    if "amx" in av:
        assert {"amx_tile", "amx_int8"} <= flags


@pytest.mark.parametrize("name", ["sse9", "", "AVX2"])
def test_set_arch_unknown(name):
    with pytest.raises(ValueError, match="valid: .*scalar"):
        lowbit.set_arch(name)


def test_set_arch_unsupported():
    missing = [a for a in ["amx", "avxvnni", "neon", "avx512vnni"] if a not in lowbit.cpu_info()["available"]]
    if not missing:
        pytest.skip("this CPU supports every probed ISA")
    with pytest.raises(ValueError, match="not supported"):
        lowbit.set_arch(missing[0])


def test_set_arch_type():
    with pytest.raises(TypeError):
        lowbit.set_arch(3)


def test_arch_context_restores():
    before = lowbit.get_arch()
    with lowbit.arch("scalar"):
        assert lowbit.get_arch() == "scalar"
        assert set(lowbit.cpu_info()["ops"].values()) == {"scalar"}
    assert lowbit.get_arch() == before


def test_env_override():
    r = run_py("import lowbit; print(lowbit.get_arch(), lowbit.cpu_info()['ops']['quantize_f32_s8'])", LOWBIT_ARCH="scalar")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["scalar", "scalar"]


def test_env_override_invalid():
    r = run_py("import lowbit", LOWBIT_ARCH="pentium")
    assert r.returncode != 0
    assert "LOWBIT_ARCH" in r.stderr and "ValueError" in r.stderr


def test_import_is_light():
    r = run_py("import sys, lowbit; print(sorted(m for m in ('torch', 'matplotlib', 'pandas', 'tqdm') if m in sys.modules))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_threads_knob():
    n = lowbit.get_num_threads()
    try:
        lowbit.set_num_threads(1)
        assert lowbit.get_num_threads() == 1
        with pytest.raises(ValueError, match="n"):
            lowbit.set_num_threads(0)
        with pytest.raises(TypeError):
            lowbit.set_num_threads(1.5)
    finally:
        lowbit.set_num_threads(n)


@pytest.mark.parametrize("threads,size", [(4, 262144), (6, 65536), (6, 262144)])
def test_thread_pool_back_to_back_jobs_never_hang(threads, size):
    """Many short parallel jobs back to back with more threads than cores: a worker woken by one
    job and descheduled until the next must not corrupt the next job's join count (before the
    fix this hung, or crashed, within seconds in most of these settings on 2 cores)."""
    code = f"""
import time, numpy as np, lowbit
lowbit.set_num_threads({threads})
x = np.random.default_rng(0).standard_normal({size}).astype(np.float32)
t0 = time.time()
while time.time() - t0 < 5:
    lowbit.quantize(x, 0.1, 0)
print("done")
"""
    e = dict(os.environ)
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"parallel jobs with {threads} threads hung")
    assert r.returncode == 0 and "done" in r.stdout, (r.returncode, r.stderr)


def test_kernel_calls_count():
    import numpy as np

    before = dict(dict(_core.kernel_calls())["quantize_f32_s8"])
    lowbit.quantize(np.ones(10, np.float32), 0.5)
    after = dict(dict(_core.kernel_calls())["quantize_f32_s8"])
    chosen = lowbit.cpu_info()["ops"]["quantize_f32_s8"]
    assert after.get(chosen, 0) == before.get(chosen, 0) + 1
