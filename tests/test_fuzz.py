"""Seeded fuzzing of the public NumPy API: every call returns or raises TypeError/ValueError.

Random dtypes, shapes (0-d, empty, odd, large dimensions), layouts (negative and zero strides,
views at odd byte offsets, Fortran order, read-only), values (NaN, inf, subnormals, float max),
bad scales / zero points / group sizes, unknown strings, hand-built QTensors and observer states,
with 1-4 threads. Cases run in a child process that announces each case before running it, so a
crash or hang is a counted failure (with its case number), not a dead pytest. ``LOWBIT_FUZZ_CASES``
sets the number of cases (default 10000, ~5-20 s); ``LOWBIT_FUZZ_SEED`` the seed.
"""

import os
import subprocess
import sys
import textwrap

import pytest

CASES = int(os.environ.get("LOWBIT_FUZZ_CASES", "10000"))
SEED = int(os.environ.get("LOWBIT_FUZZ_SEED", "19"))
BATCH_TIMEOUT_S = 600

CHILD = textwrap.dedent(
    r"""
    import os, sys, traceback, warnings
    import numpy as np
    import lowbit
    from lowbit.core.linear_4bit import PackedWeight4

    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    seed, start, stop = map(int, sys.argv[1:4])
    VERBOSE = bool(os.environ.get("LOWBIT_FUZZ_VERBOSE"))

    FLOATS = [np.float32] * 4 + [np.float16, np.float64]
    ODD = [np.int8, np.uint8, np.int32, np.int64, np.bool_, np.complex64]
    DIMS = [0, 1, 1, 2, 3, 7, 16, 17, 31, 32, 33, 64, 65]
    SPECIAL = [np.nan, np.inf, -np.inf, 1e-40, -1e-45, 0.0, -0.0, 3.4028235e38, -3.4028235e38, 1e37, 0.5]
    QDTYPES = ["int8", "uint8", "int4", "uint4"]
    STRINGS = ["int8", "uint8", "int4", "uint4", "nf4", "fp16", "bf16", "int2", "bogus", ""]
    HUGE = [0, -1, 1, 2, 3, 32, 64, 2**31, 2**62, 2**63 - 1, 2**63, 2**64 + 5]

    def pick(rng, seq):
        return seq[int(rng.integers(len(seq)))]

    def shape_of(rng, ndim=None, cap=4096):
        ndim = pick(rng, [0, 1, 1, 2, 2, 2, 3, 4]) if ndim is None else ndim
        shape = [pick(rng, DIMS) for _ in range(ndim)]
        while int(np.prod(shape, dtype=np.int64)) > cap:
            shape[int(np.argmax(shape))] //= 2
        return tuple(shape)

    def values(rng, shape, dtype):
        mag = pick(rng, [1e-30, 1e-3, 1.0, 1.0, 100.0, 1e30, 1e38])
        v = rng.standard_normal(shape) * mag
        if rng.random() < 0.3 and v.size:
            idx = rng.integers(0, v.size, max(1, v.size // 8))
            v.reshape(-1)[idx] = rng.choice(SPECIAL, idx.size)
        if dtype in (np.int8, np.uint8, np.int32, np.int64):
            info = np.iinfo(dtype)
            return rng.integers(info.min, int(info.max) + 1, shape, dtype=dtype)
        if dtype is np.bool_:
            return rng.random(shape) < 0.5
        return np.asarray(v).astype(dtype)

    def layout(rng, a):
        r = rng.random()
        if r < 0.55 or a.ndim == 0:
            return a
        if r < 0.65:  # negative stride
            return np.ascontiguousarray(np.concatenate([a, a], axis=-1))[..., ::-1][..., : a.shape[-1]]
        if r < 0.72:  # zero stride
            return np.broadcast_to(a.reshape(-1)[:1].reshape((1,) * a.ndim), a.shape) if a.size else a
        if r < 0.8:  # view at an odd byte offset
            buf = np.zeros(a.nbytes + a.itemsize, np.uint8)[1 : a.nbytes + 1]
            v = buf.view(a.dtype).reshape(a.shape)
            v[...] = a
            return v
        if r < 0.87:
            return np.asfortranarray(a)
        if r < 0.93:
            b = a.copy()
            b.flags.writeable = False
            return b
        return np.repeat(a, 2, axis=-1)[..., ::2]

    def array(rng, ndim=None, dtypes=None):
        dt = pick(rng, dtypes or (FLOATS if rng.random() < 0.95 else ODD))
        return layout(rng, values(rng, shape_of(rng, ndim), dt))

    def scale_for(rng, x, dtype):
        # valid-looking parameters of a random granularity, sometimes broken
        shape = getattr(x, "shape", ())
        r = rng.random()
        axis = group = None
        if r < 0.4 or not shape:
            s = float(pick(rng, [0.1, 0.01, 1.0, 1e-30, 1e30]))
        elif r < 0.7:
            axis = int(rng.integers(-len(shape), len(shape)))
            s = rng.uniform(0.01, 1, shape[axis]).astype(np.float32)
        else:
            group = int(pick(rng, [1, 2, 3, 32, 64, 2**40]))
            s = rng.uniform(0.01, 1, shape[:-1] + (-(-shape[-1] // group),)).astype(np.float32)
        lo, hi = lowbit.qrange(dtype)
        z = 0 if dtype.startswith("i") else (lo + hi + 1) // 2
        if rng.random() < 0.15:
            s = pick(rng, [0.0, -1.0, np.nan, np.inf, 1e-45, "x", None, [1.0, 2.0], np.float32([[1]])])
        if rng.random() < 0.1:
            z = pick(rng, [1000, -1000, 2**40, 0.5, "z", np.int32([1, 2])])
        if rng.random() < 0.05:
            axis = pick(rng, [7, -9, 0.5, "a"])
        if rng.random() < 0.05:
            group = pick(rng, HUGE + [0.5, "g"])
        return s, z, axis, group

    def threads(rng):
        lowbit.set_num_threads(int(rng.integers(1, 5)))

    def case_quantize(rng):
        x = array(rng)
        dtype = pick(rng, QDTYPES) if rng.random() < 0.9 else pick(rng, STRINGS)
        s, z, axis, group = scale_for(rng, x, dtype if dtype in QDTYPES else "int8")
        rounding = pick(rng, ["nearest"] * 8 + ["stochastic"] * 3 + ["up"])
        q = lowbit.quantize(x, s, z, dtype=dtype, axis=axis, group_size=group, rounding=rounding,
                            seed=int(rng.integers(0, 2**63)))
        q.dequantize()
        q.int_repr()
        repr(q)
        out = None
        r = rng.random()
        if r < 0.2:
            out = np.empty(np.shape(x), np.float32)
        elif r < 0.3 and isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous:
            out = x if rng.random() < 0.3 else None
            if out is None and x.size > 2:
                buf = np.concatenate([x.reshape(-1), x.reshape(-1)])
                x = buf[: x.size].reshape(x.shape)
                out = buf[x.size // 2 : x.size // 2 + x.size].reshape(x.shape)
        lowbit.fake_quantize(x, s, z, dtype=dtype, axis=axis, group_size=group, rounding=rounding, seed=1, out=out)

    def case_dequantize_ints(rng):
        dtype = pick(rng, QDTYPES)
        lo, hi = lowbit.qrange(dtype)
        shape = shape_of(rng)
        q = layout(rng, rng.integers(lo, hi + 1, shape).astype(pick(rng, [np.int8, np.int32, np.uint8, np.int64])))
        s, z, axis, group = scale_for(rng, q, dtype)
        lowbit.dequantize(q, s, z, dtype=pick(rng, [dtype, None]), axis=axis, group_size=group)

    def case_qtensor(rng):
        dtype = pick(rng, QDTYPES * 3 + STRINGS)
        shape = pick(rng, [(), (3,), (0,), (2, 5), (2**62, 4, 1), (4, 2**62, 1), (2**32, 2**32, 4), (-1, 4),
                           (3, 2**63 - 1), (1,) * 5, (4, 2**62, 0), (2**31, 2**31, 2, 2)])
        if rng.random() < 0.5 and dtype in QDTYPES and all(isinstance(d, int) and 0 <= d < 8 for d in shape):
            stored = shape[:-1] + ((shape[-1] + 1) // 2 if dtype.endswith("4") else shape[-1],) if shape else ()
            data = np.zeros(stored, np.int8 if dtype in ("int8", "int4") else np.uint8)
        else:
            data = pick(rng, [np.zeros(1, np.int8), np.zeros((), np.int8), np.zeros((2, 3), np.int8),
                              np.zeros((2, 5), np.uint8), np.zeros(4, np.float32), np.zeros((1,) * 5, np.int8),
                              np.zeros((4, 0, 1), np.int8), [1, 2]])
        scale = pick(rng, [1.0, np.ones(4, np.float32), np.ones(2**0, np.float32), -1.0, np.nan])
        zp = pick(rng, [0, np.zeros(4, np.int32), 300])
        axis = pick(rng, [None, None, 0, 1, 5])
        group = pick(rng, [None, None, 1, 32, 0, 2**63 - 1])
        q = lowbit.QTensor(data, scale, zp, dtype, shape, axis, group)
        op = int(rng.integers(4))
        if op == 0:
            q.dequantize()
        elif op == 1:
            q.int_repr()
        elif op == 2:
            lowbit.matmul_int8(q, q)
        else:
            lowbit.dequantize(q, out=np.empty(3, np.float32))

    def case_qparams(rng):
        a = pick(rng, [float(rng.standard_normal()), np.float32(np.nan), np.inf, -np.inf, 1e38,
                       rng.standard_normal(int(rng.integers(0, 5))).astype(np.float32), "x", None, [1, 2]])
        b = pick(rng, [float(rng.standard_normal()) + 3, np.inf, 3.4e38,
                       rng.standard_normal(int(rng.integers(0, 5))).astype(np.float32) + 3, 1 + 1j])
        s, z = lowbit.choose_qparams(a, b, dtype=pick(rng, QDTYPES * 8 + STRINGS),
                                     symmetric=bool(rng.random() < 0.5), reduce_range=bool(rng.random() < 0.3))
        x = rng.standard_normal(np.shape(s) or (5,)).astype(np.float32)
        if np.ndim(s) == 0:
            lowbit.quantize(x, s, z, dtype="int8" if z <= 127 and z >= -128 else "uint8")

    def case_formats(rng):
        x = array(rng, dtypes=[np.float32, np.float32, np.float64, np.float16])
        dtype = pick(rng, ["nf4", "nf4", "fp16", "bf16", "log2", "ternary", "binary"])
        opts = {}
        if dtype == "nf4":
            if rng.random() < 0.7:
                opts["group_size"] = pick(rng, HUGE + [64, 64, 128, 5, 2**63 - 2])
            if rng.random() < 0.3:
                opts["double_quant"] = bool(rng.random() < 0.5)
        q = lowbit.quantize(x, dtype=dtype, **opts)
        q.dequantize()
        q.int_repr() if dtype == "nf4" else None
        lowbit.fake_quantize(x, dtype=dtype, **opts)

    def weight(rng):
        n, k = pick(rng, [0, 1, 3, 16, 17, 33]), pick(rng, [0, 1, 31, 32, 64, 65, 128])
        w = values(rng, (n, k), pick(rng, [np.float32, np.float32, np.float64, np.float16]))
        if rng.random() < 0.1:
            w = array(rng)
        dtype = pick(rng, ["int8", "int8", "int4", "int4", "nf4", "nf4", "fp16", "uint4", "bogus"])
        opts = {}
        if dtype in ("int4", "nf4", "uint4") and rng.random() < 0.8:
            opts["group_size"] = pick(rng, [32, 32, 64, 128, 16, 0, 2**62, None])
        if rng.random() < 0.05:
            opts["axis"] = pick(rng, [1, None, 3])
        return lowbit.pack_weight(layout(rng, w), dtype=dtype, **opts)

    def case_linear(rng):
        w = weight(rng)
        k = w.shape[1]
        m = pick(rng, [0, 1, 2, 5])
        x = values(rng, pick(rng, [(m, k), (m, k), (2, m, k), (k,), (m, k + 1), ()]),
                   pick(rng, [np.float32, np.float32, np.float64, np.float16, np.int8]))
        x = layout(rng, x)
        bias = pick(rng, [None, None, np.ones(w.shape[0], np.float32), np.ones(w.shape[0] + 1, np.float32),
                          np.full(w.shape[0], np.nan, np.float32), "b"])
        act = pick(rng, ["auto", "auto", "dynamic", "float", "static", "dynamic_per_tensor", "bogus", None])
        kw = {}
        if act == "static":
            kw = dict(activation_scale=pick(rng, [0.1, 0.0, -1.0, np.nan, 1e-45, None]),
                      activation_zero_point=pick(rng, [0, 128, 1000, None]),
                      activation_dtype=pick(rng, ["uint8", "int8", "int4", None]))
        if rng.random() < 0.1:
            kw["out_scale"] = pick(rng, [0.1, 0.0, np.inf])
        lowbit.linear(x, w, bias, activation=act, relu=bool(rng.random() < 0.3), **kw)
        w.dequantize()

    def case_matmul(rng):
        m, k, n = pick(rng, [0, 1, 3, 17]), pick(rng, [0, 1, 4, 33, 64]), pick(rng, [0, 1, 5, 16, 33])
        a = layout(rng, values(rng, pick(rng, [(m, k), (m, k), (2, m, k), (k,), ()]),
                               pick(rng, [np.int8] * 6 + [np.uint8] * 3 + [np.int32, np.float32])))
        b = layout(rng, values(rng, pick(rng, [(k, n)] * 6 + [(k + 1, n), (n,)]),
                               pick(rng, [np.int8] * 8 + [np.uint8, np.int16])))
        if rng.random() < 0.15:
            a = lowbit.quantize(rng.standard_normal(pick(rng, [(), (m, k), (k,)])).astype(np.float32), 0.1,
                                dtype=pick(rng, QDTYPES))
        lowbit.matmul_int8(a, b)

    OBSERVERS = ["MinMaxObserver", "MovingAverageMinMaxObserver", "PerChannelMinMaxObserver",
                 "MovingAveragePerChannelMinMaxObserver", "HistogramObserver", "PowerOfTwoObserver"]

    def qparams(obs):
        try:
            return obs.compute_qparams()
        except RuntimeError as e:  # documented: nothing finite observed yet
            if "no finite data" not in str(e):
                raise

    def case_observer(rng):
        name = pick(rng, OBSERVERS)
        kw = {}
        if rng.random() < 0.5:
            kw["dtype"] = pick(rng, QDTYPES * 6 + STRINGS)
        if rng.random() < 0.3:
            kw["symmetric"] = bool(rng.random() < 0.5)
        if "PerChannel" in name and rng.random() < 0.5:
            kw["axis"] = pick(rng, [0, 1, -1, 5])
        if name == "HistogramObserver" and rng.random() < 0.5:
            kw["bins"] = pick(rng, [1, 2, 2048, 0, -3, 2**20, 2**40])
            kw["method"] = pick(rng, ["mse", "percentile", "minmax", "entropy", "bogus"])
        obs = getattr(lowbit, name)(**kw)
        for _ in range(int(rng.integers(1, 4))):
            obs.update(array(rng))
        qparams(obs)
        d = obs.state_dict()
        if rng.random() < 0.5 and isinstance(d.get("state"), dict) and d["state"]:
            key = pick(rng, sorted(d["state"]))
            d["state"][key] = pick(rng, [np.inf, -1, 2**70, np.nan, "x", None, [], np.zeros(3, np.int64),
                                         np.full(3, 2**62, np.int64), 1e300])
        if rng.random() < 0.2:
            d["nonfinite"] = pick(rng, [np.inf, -5, 2**80, "n"])
        other = lowbit.Observer.from_state_dict(d)
        qparams(other)
        obs.merge(other)

    def case_from_codes(rng):
        dtype = pick(rng, ["int4", "nf4"] * 4 + ["bogus", None])
        n, k = pick(rng, [0, 1, 3]), pick(rng, [0, 1, 32, 64, 65])
        group = pick(rng, [32, 64, 0, -32, 48, 2**62, None, 1.5])
        lo, hi = (-8, 7) if dtype == "int4" else (0, 15)
        codes = rng.integers(lo, hi + 1, (n, k)).astype(pick(rng, [np.int8, np.uint8, np.int64]))
        g = group if isinstance(group, int) and 0 < group < 2**20 else 32
        scale = rng.uniform(0.1, 1, (n, -(-k // g))).astype(np.float32)
        w = PackedWeight4.from_codes(codes, scale, dtype=dtype, group_size=group)
        x = rng.standard_normal((2, k)).astype(np.float32)
        lowbit.linear(x, w, activation=pick(rng, ["dynamic", "float"]))

    CASES = [case_quantize] * 4 + [case_dequantize_ints, case_qtensor, case_qparams, case_formats] * 2 + \
        [case_linear] * 3 + [case_matmul] * 2 + [case_observer] * 2 + [case_from_codes]
    ok = errors = 0
    for i in range(start, stop):
        print("C", i, flush=True)
        rng = np.random.default_rng([seed, i])
        threads(rng)
        case = pick(rng, CASES)
        try:
            case(rng)
            ok += 1
        except (TypeError, ValueError) as e:
            errors += 1
            if VERBOSE:
                print("E", i, case.__name__, type(e).__name__, repr(str(e))[:120], flush=True)
        except Exception as e:
            tb = traceback.extract_tb(e.__traceback__)[-1]
            print("F", i, case.__name__, type(e).__name__, repr(str(e))[:200], f"{tb.filename}:{tb.lineno}",
                  flush=True)
    print("DONE", ok, errors, flush=True)
    """
)


def run_fuzz(cases: int, seed: int, env: dict = None) -> tuple[list, int, int]:
    """Runs cases [0, cases); returns (failures, returned, raised). A crash or hang fails the case that
    was running and the batch resumes after it."""
    failures, ok, errors, start = [], 0, 0, 0
    while start < cases:
        try:
            r = subprocess.run([sys.executable, "-c", CHILD, str(seed), str(start), str(cases)], capture_output=True,
                               text=True, timeout=BATCH_TIMEOUT_S, env=env)
            out, rc = r.stdout, r.returncode
        except subprocess.TimeoutExpired as e:
            out, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), "hang"
            r = None
        last = start
        for line in out.splitlines():
            parts = line.split(" ", 2)
            if parts[0] == "C":
                last = int(parts[1])
            elif parts[0] == "F":
                failures.append(line)
            elif parts[0] == "DONE":
                ok += int(parts[1])
                errors += int(parts[2].split()[0])
        if out.rstrip().splitlines()[-1:] and out.rstrip().splitlines()[-1].startswith("DONE") and rc == 0:
            break
        tail = (r.stderr[-300:] if r is not None else "").replace("\n", " | ")
        failures.append(f"X {last} crashed (rc={rc}) seed={seed}: {tail}")
        start = last + 1
    return failures, ok, errors


def test_public_api_fuzz_returns_or_raises_type_or_value_error():
    failures, ok, errors = run_fuzz(CASES, SEED)
    assert not failures, f"{len(failures)} failing cases (seed {SEED}):\n" + "\n".join(failures[:30])
    assert ok > CASES // 10 and errors > CASES // 10, (ok, errors)  # both valid and invalid calls ran


@pytest.mark.parametrize("arch", ["scalar"])
def test_fuzz_at_forced_isa(arch):
    env = dict(os.environ, LOWBIT_ARCH=arch)
    failures, ok, errors = run_fuzz(max(CASES // 5, 50), SEED + 1, env)
    assert not failures, "\n".join(failures[:30])
