"""Crash fuzzing of the private quantize bindings: any argument mix gives a result or a
TypeError/ValueError, never a crash. Runs in a subprocess so a segfault fails the test."""

import subprocess
import sys
import textwrap

FUZZ = textwrap.dedent(
    """
    import numpy as np
    from lowbit import _core

    rng = np.random.default_rng(0)
    modes = ["tensor", "row", "element", "group", "bogus"]
    dtypes = ["int8", "uint8", "int4", "uint4", "int2"]
    ok = errors = 0
    for it in range(3000):
        ndim = int(rng.integers(0, 4))
        shape = tuple(int(v) for v in rng.integers(0, 6, ndim))
        xdt = rng.choice([np.float32, np.float16, np.float64, np.int32])
        x = np.asarray(rng.standard_normal(shape) * 10).astype(xdt)
        if rng.random() < 0.2 and x.ndim:
            x = x[..., ::2]
        n = int(rng.integers(0, 8))
        scale = rng.choice([1.0, 0.1, 0.0, -1.0, np.nan, np.inf, 1e-40], size=n).astype(np.float32)
        zp = rng.integers(-300, 300, size=int(rng.choice([n, n + 1]))).astype(np.int32)
        qmin, qmax = sorted(int(v) for v in rng.integers(-300, 300, 2))
        if rng.random() < 0.6:
            qmin, qmax = (-128, 127)
        args = (str(rng.choice(dtypes)), str(rng.choice(modes)), int(rng.integers(-1, 4)), int(rng.integers(-1, 5)),
                scale, zp, qmin, qmax, str(rng.choice(["nearest", "stochastic", "up"])), int(rng.integers(0, 2**63)))
        if it % 2 and xdt != np.int32:  # a valid call of a random granularity
            rows = int(np.prod(shape[:-1])) if ndim else 1
            cols = shape[-1] if ndim else 1
            mode = str(rng.choice(["tensor", "element", "group"]))
            g = int(rng.integers(1, 4))
            count = {"tensor": 1, "element": cols, "group": rows * -(-cols // g)}[mode]
            x = np.ascontiguousarray(x)
            args = ("int8", mode, 1, g, np.full(count, 0.1, np.float32), np.zeros(count, np.int32), -128, 127,
                    "stochastic" if it % 4 == 1 else "nearest", it)
        try:
            q = _core.quantize(x, *args)
            _core.fake_quantize(x, *args)
            _core.dequantize(q, list(x.shape), *args[:-2])
            ok += 1
        except (TypeError, ValueError):
            errors += 1
    print(ok, errors)
    """
)


def test_quantize_bindings_never_crash():
    r = subprocess.run([sys.executable, "-c", FUZZ], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"crashed (rc={r.returncode}): {r.stderr[-2000:]}"
    ok, errors = map(int, r.stdout.split())
    assert ok > 50 and errors > 50  # both valid and invalid calls were exercised
