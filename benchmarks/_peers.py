"""Quantized-linear peers of lowbit.linear for bench_linear_4bit.py: torchao and bitsandbytes CPU paths.

Neither package is a dependency of lowbit (nor of its CI); each peer is built only if its package
imports, and a peer that does not run on this CPU is reported with a one-line reason instead of
being timed. Install them beside the pinned torch (they must not replace it):

    pip install torch==2.13.0 torchao==0.18.0 bitsandbytes==0.50.2

Every peer is a builder ``build(w) -> Built`` taking the float32 weight ``w`` (a torch tensor
``(N, K)``, ``nn.Linear`` layout). A ``Built`` gives

- ``make(x)``: for a float32 NumPy ``x`` ``(M, K)``, a no-argument callable computing the layer
  with float32 in and out (a bfloat16 path casts ``x`` to bfloat16 and ``y`` back to float32 inside
  the timed call, as lowbit does its own conversions inside ``lowbit.linear``);
- ``w_rows``: the first output rows of the peer's **own** dequantized weight (float32 NumPy),
  read back from the peer's quantized tensor or recomputed with the peer's own quantization
  primitives and cross-checked against its stored scales;
- ``tol``: the error model used to check the peer (see :func:`check`);
- ``compute``: a short description of what actually ran (dtype of the arithmetic).
"""

from __future__ import annotations

import copy
import dataclasses
import gc
from typing import Callable

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    torch = None

CHECK_ROWS = 64  # output columns checked against the float64 product of the peer's own weight
GROUP = 64  # group / block size given to every peer that has one (lowbit uses 64)


@dataclasses.dataclass
class Built:
    make: Callable[[np.ndarray], Callable[[], object]]
    w_rows: np.ndarray
    tol: str  # "f32" or "bf16": see check
    compute: str
    x_model: Callable[[np.ndarray], np.ndarray] | None = None


@dataclasses.dataclass
class Peer:
    name: str  # short row label
    what: str  # exactly what was run (legend)
    build: Callable[["torch.Tensor"], Built]


def to_numpy(y) -> np.ndarray:
    if torch is not None and isinstance(y, torch.Tensor):
        return y.detach().to(torch.float64).numpy()
    return np.asarray(y, np.float64)


RMS_TOL = {"f32": 2.0**-12, "bf16": 2.0**-5}


def check(x: np.ndarray, y, w_rows: np.ndarray, tol: str, x_model=None) -> float:
    """How far ``y`` is from the peer's own product, as a fraction of what its format allows.

    ``want = xm @ w_rows.T`` in float64, where ``w_rows`` is the peer's own dequantized weight and
    ``xm = x_model(x)`` what the peer actually multiplies: ``x`` rounded to bfloat16 for a path
    that casts it, ``x`` quantized and dequantized by the peer's own activation quantizer for an
    int8-activation path, else ``x``. Returns the larger of two ratios (<= 1 passes; inf if ``y``
    is not finite or has the wrong shape):

    - max ``|y - want| / bound``, a worst-case rounding bound with ``mag = |xm| @ |w|.T``:
      ``f32`` (float32 products and sums in any order): ``(K + 2) * 2**-24 * mag``; ``bf16``
      (weight decoded in bfloat16, u = 2**-8, two roundings: scale * level, + zero; float32
      accumulation; y rounded to bfloat16): ``(2u + (K + 2) * 2**-24) * mag + u * |want|``.
    - ``rms(y - want) / rms(want)`` over ``RMS_TOL[tol]`` (2**-12 for f32, 2**-5 for bf16: about
      six times what the bf16 roundings give on this benchmark's Gaussian data). A worst-case
      bound is ``mag``-sized, ~sqrt(K) times ``|y|``, so alone it would pass a wrong answer; a
      wrong answer has an rms error as large as ``rms(want)``.
    """
    y = to_numpy(y)
    rows = w_rows.shape[0]
    x64 = np.asarray(x_model(x) if x_model is not None else x, np.float64)
    w64 = w_rows.astype(np.float64)
    want = x64 @ w64.T
    mag = np.abs(x64) @ np.abs(w64).T
    k = x.shape[1]
    got = y[:, :rows] if y.ndim == 2 else y
    if got.shape != want.shape or not np.all(np.isfinite(got)):
        return float("inf")
    acc = (k + 2) * 2.0**-24 * mag
    bound = acc if tol == "f32" else acc + 2 * 2.0**-8 * mag + 2.0**-8 * np.abs(want)
    err = np.abs(got - want)
    worst = float(np.max(err / np.maximum(bound, np.finfo(np.float64).tiny)))
    rms = float(np.sqrt(np.mean(err**2) / max(np.mean(want**2), np.finfo(np.float64).tiny)))
    return max(worst, rms / RMS_TOL[tol])


def bf16_x(x: np.ndarray) -> np.ndarray:
    """``x`` as a bfloat16 cast (round to nearest even) leaves it."""
    return torch.from_numpy(x).to(torch.bfloat16).to(torch.float64).numpy()


# ---------------------------------------------------------------------------------------------
# float32 baselines


def numpy_f32(w):
    wn = w.numpy() if torch is not None else np.asarray(w)
    return Built(lambda x: (lambda: x @ wn.T), wn[:CHECK_ROWS], "f32", "f32 (BLAS)")


def torch_f32(w):
    def make(x):
        xt = torch.from_numpy(x)
        return lambda: F.linear(xt, w)

    return Built(make, w[:CHECK_ROWS].numpy(), "f32", "f32 (torch CPU BLAS)")


# ---------------------------------------------------------------------------------------------
# torchao 0.18


def _linear(w, dtype):
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False, device="meta")
    lin.weight = torch.nn.Parameter(w.to(dtype).clone(), requires_grad=False)
    return lin


def _ao_quantize(w, dtype, config, expect: str):
    from torchao.quantization import quantize_

    lin = _linear(w, dtype)
    quantize_(lin, config)
    got = type(lin.weight).__name__
    if got != expect:  # torchao skips (logs only) a weight it cannot quantize
        raise RuntimeError(f"weight left as {got}, not {expect} (not quantized)")
    return lin


def _ao_make(lin, dtype):
    def make(x):
        xt = torch.from_numpy(x)
        if dtype == torch.float32:
            return lambda: lin(xt)
        return lambda: lin(xt.to(dtype)).float()

    return make


def ao_int4_opaque(dtype):
    """PrototypeInt4WeightOnlyConfig: Int4OpaqueTensor, aten._weight_int4pack_mm_for_cpu (tinygemm)."""

    def build(w):
        from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
        from torchao.quantization.quant_primitives import (
            MappingType,
            _choose_qparams_affine_tinygemm,
            _dequantize_affine_tinygemm,
            _quantize_affine_tinygemm,
        )
        from torchao.quantization.utils import unpack_tinygemm_scales_and_zeros

        lin = _ao_quantize(w, dtype, PrototypeInt4WeightOnlyConfig(group_size=GROUP, set_inductor_config=False),
                           "Int4OpaqueTensor")
        # Its dequantized weight: the same primitives Int4OpaqueTensor.from_hp uses, on the checked
        # rows, cross-checked against the scales and zeros stored in the packed tensor.
        src = w[:CHECK_ROWS].to(dtype)
        blk = [1, GROUP]
        s, z = _choose_qparams_affine_tinygemm(src, MappingType.ASYMMETRIC, blk, torch.int32, 0, 15, 1e-6, None, dtype)
        q = _quantize_affine_tinygemm(src, blk, s, z, torch.int32, 0, 15)
        ss, zz = unpack_tinygemm_scales_and_zeros(lin.weight.scale_and_zero)
        g = w.shape[1] // GROUP
        if not (torch.equal(ss[:CHECK_ROWS].reshape(-1, g), s.reshape(-1, g))
                and torch.equal(zz[:CHECK_ROWS].reshape(-1, g), z.reshape(-1, g))):
            raise RuntimeError("cannot reproduce Int4OpaqueTensor's scales/zeros for the check")
        wd = _dequantize_affine_tinygemm(q, blk, s, z, torch.int32, 0, 15, output_dtype=torch.float32)
        compute = f"{str(dtype)[6:]} in/out, asym int4 g{GROUP}"
        if dtype == torch.float32:
            return Built(_ao_make(lin, dtype), wd.numpy(), "f32", compute)
        return Built(_ao_make(lin, dtype), wd.numpy(), "bf16", compute, x_model=bf16_x)

    return build


def _ao_dequantized_rows(lin):
    return lin.weight.dequantize()[:CHECK_ROWS].to(torch.float32).numpy()


def ao_int8_weight_only(granularity: str):
    def build(w):
        from torchao.quantization import Int8WeightOnlyConfig, PerGroup, PerRow

        gran = PerRow() if granularity == "row" else PerGroup(GROUP)
        lin = _ao_quantize(w, torch.float32, Int8WeightOnlyConfig(granularity=gran, set_inductor_config=False),
                           "Int8Tensor")
        how = "int8 -> f32 weight per call, f32 mm" if granularity == "row" else "dequantize per call, f32 mm"
        return Built(_ao_make(lin, torch.float32), _ao_dequantized_rows(lin), "f32", how)

    return build


def ao_int8_dyn_int8(w):
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig
    from torchao.quantization.quantize_.common.quantize_tensor_kwargs import _choose_quant_func_and_quantize_tensor

    lin = _ao_quantize(w, torch.float32, Int8DynamicActivationInt8WeightConfig(set_inductor_config=False), "Int8Tensor")
    wq = lin.weight

    def x_model(x):  # its own per-token activation quantizer, as its linear calls it
        q = _choose_quant_func_and_quantize_tensor(torch.from_numpy(x), wq.act_quant_kwargs,
                                                   scale=wq.act_quant_scale, zero_point=wq.act_quant_zero_point)
        return q.dequantize().to(torch.float64).numpy()

    return Built(_ao_make(lin, torch.float32), _ao_dequantized_rows(lin), "f32", "int8 x int8 (int_scaled_matmul)",
                 x_model=x_model)


def ao_intx(weight_only: bool, packing: str = "unpacked_to_int8"):
    def build(w):
        from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig, PerGroup

        if weight_only:
            cfg = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(GROUP), intx_packing_format=packing)
        else:
            cfg = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(GROUP),
                                                        intx_packing_format=packing)
        expect = "IntxUnpackedToInt8Tensor" if packing == "unpacked_to_int8" else "IntxOpaqueTensor"
        lin = _ao_quantize(w, torch.float32, cfg, expect)
        wd = _ao_dequantized_rows(lin) if expect == "IntxUnpackedToInt8Tensor" else None
        if wd is None:  # pragma: no cover - opaque formats need torchao's C++ kernels (not in the wheel)
            raise RuntimeError("IntxOpaqueTensor: no dequantize to check against")
        if weight_only:
            return Built(_ao_make(lin, torch.float32), wd, "f32", "dequantize per call, f32 mm")
        from torchao.quantization.quantize_.workflows.intx.intx_unpacked_to_int8_tensor import (
            _apply_int8_act_asym_per_token_quant_dequant,
        )

        def x_model(x):  # its own per-token activation fake-quantization, as its linear calls it
            return _apply_int8_act_asym_per_token_quant_dequant(torch.from_numpy(x)).to(torch.float64).numpy()

        return Built(_ao_make(lin, torch.float32), wd, "f32", "dequantize per call, f32 mm on fake-quantized int8 x",
                     x_model=x_model)

    return build


def ao_int4_weight_only(packing: str, dtype):
    """Int4WeightOnlyConfig (non-prototype): every packing format in 0.18 targets CUDA/XPU kernels."""

    def build(w):
        from torchao.quantization import Int4WeightOnlyConfig

        lin = _ao_quantize(w, dtype, Int4WeightOnlyConfig(group_size=GROUP, int4_packing_format=packing,
                                                          set_inductor_config=False), "?")
        raise RuntimeError(f"unexpected: quantized to {type(lin.weight).__name__}")  # pragma: no cover

    return build


def ao_da8w4(w):
    from torchao.prototype.quantization.int4 import Int8DynamicActivationInt4WeightConfig

    _ao_quantize(w, torch.float32, Int8DynamicActivationInt4WeightConfig(group_size=GROUP, set_inductor_config=False),
                 "Int4OpaqueTensor")
    raise RuntimeError("da8w4 ran but is not wired into this benchmark's check yet")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# bitsandbytes 0.50


def bnb_linear4bit(quant_type: str):
    """bnb.nn.Linear4bit, blocksize 64, float32 absmax (compress_statistics=False), quantized on .to("cpu")."""

    def build(w):
        import bitsandbytes as bnb
        import bitsandbytes.functional as bF

        n, k = w.shape
        lin = bnb.nn.Linear4bit(k, n, bias=False, compute_dtype=torch.float32, compress_statistics=False,
                                quant_type=quant_type, device="meta")
        lin.weight = bnb.nn.Params4bit(w.clone(), requires_grad=False, blocksize=GROUP, compress_statistics=False,
                                       quant_type=quant_type)
        lin = lin.to("cpu").eval()  # Params4bit quantizes when moved to a device
        qs = lin.weight.quant_state
        if qs is None or qs.blocksize != GROUP or qs.quant_type != quant_type:
            raise RuntimeError("Linear4bit did not quantize its weight")
        wd = bF.dequantize_4bit(lin.weight.data, qs)[:CHECK_ROWS].to(torch.float32).numpy()
        # The fused kernel's view of the same weight: absmax rounded to bfloat16.
        qb = copy.copy(qs)
        qb.absmax = qs.absmax.to(torch.bfloat16).to(torch.float32)
        wd_bf = bF.dequantize_4bit(lin.weight.data, qb)[:CHECK_ROWS].to(torch.float32).numpy()
        # The first eval-mode forward repacks the weight for the fused AVX512-BF16 CPU kernel when the
        # CPU has it (x and absmax in bf16); otherwise gemm_4bit dequantizes and multiplies in float32.
        with torch.inference_mode():
            lin(torch.zeros(1, k))
        fused = bool(getattr(lin.weight.quant_state, "packing_format_for_cpu", False))

        def make(x):
            xt = torch.from_numpy(x)
            return lambda: lin(xt)

        if fused:
            return Built(make, wd_bf, "bf16", "bf16 fused gemv_4bit kernel (libbitsandbytes_cpu)", x_model=bf16_x)
        return Built(make, wd, "f32", "dequantize per call, f32 mm")

    return build


# ---------------------------------------------------------------------------------------------

AO_INT4_OPAQUE = ("torchao.quantize_(nn.Linear(K, N, bias=False, dtype={dt}), torchao.prototype.quantization.int4."
                  "PrototypeInt4WeightOnlyConfig(group_size=64)): Int4OpaqueTensor, aten._weight_int4pack_mm_for_cpu")


def peers() -> list[Peer]:
    """Every peer tried, in table order. torch float32 first; then torchao; then bitsandbytes."""
    if torch is None:
        return [Peer("numpy f32", "x @ w.T, float32 NumPy (BLAS)", numpy_f32)]
    return [
        Peer("numpy f32", "x @ w.T, float32 NumPy (BLAS)", numpy_f32),
        Peer("torch f32", "torch.nn.functional.linear(x, w), float32", torch_f32),
        Peer("ao int4wo bf16", AO_INT4_OPAQUE.format(dt="bfloat16") + "; timed as lin(x.to(bf16)).float()",
             ao_int4_opaque(torch.bfloat16)),
        Peer("ao int4wo f32", AO_INT4_OPAQUE.format(dt="float32"), ao_int4_opaque(torch.float32)),
        Peer("ao int8wo row", "torchao Int8WeightOnlyConfig(granularity=PerRow()) (default; per-channel)",
             ao_int8_weight_only("row")),
        Peer("ao int8wo g64", "torchao Int8WeightOnlyConfig(granularity=PerGroup(64))", ao_int8_weight_only("g64")),
        Peer("ao a8w8", "torchao Int8DynamicActivationInt8WeightConfig() (per-token symmetric x, per-row w)",
             ao_int8_dyn_int8),
        Peer("ao a8w4", "torchao Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, "
             "weight_granularity=PerGroup(64)) (intx_packing_format='unpacked_to_int8', the default)",
             ao_intx(weight_only=False)),
        Peer("ao intx int4wo", "torchao IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(64)) "
             "(intx_packing_format='unpacked_to_int8', the default)", ao_intx(weight_only=True)),
        Peer("bnb nf4", "bitsandbytes.nn.Linear4bit(K, N, quant_type='nf4', compute_dtype=float32, "
             "compress_statistics=False), Params4bit blocksize=64, eval(), inference_mode", bnb_linear4bit("nf4")),
        Peer("bnb fp4", "bitsandbytes.nn.Linear4bit(K, N, quant_type='fp4', compute_dtype=float32, "
             "compress_statistics=False), Params4bit blocksize=64, eval(), inference_mode", bnb_linear4bit("fp4")),
        # Tried, and reported when they do not run here.
        Peer("ao int4wo plain", "torchao Int4WeightOnlyConfig(group_size=64, int4_packing_format='plain')",
             ao_int4_weight_only("plain", torch.bfloat16)),
        Peer("ao int4wo preshuffled", "torchao Int4WeightOnlyConfig(group_size=64, int4_packing_format='preshuffled')",
             ao_int4_weight_only("preshuffled", torch.bfloat16)),
        Peer("ao int4wo plain_int32", "torchao Int4WeightOnlyConfig(group_size=64, int4_packing_format='plain_int32')",
             ao_int4_weight_only("plain_int32", torch.bfloat16)),
        Peer("ao int4wo tile_packed_to_4d", "torchao Int4WeightOnlyConfig(group_size=64, "
             "int4_packing_format='tile_packed_to_4d'), bfloat16 (its only dtype)",
             ao_int4_weight_only("tile_packed_to_4d", torch.bfloat16)),
        Peer("ao da8w4", "torchao.prototype.quantization.int4.Int8DynamicActivationInt4WeightConfig(group_size=64)",
             ao_da8w4),
        Peer("ao a8w4 opaque_torchao_auto", "torchao Int8DynamicActivationIntxWeightConfig(int4, PerGroup(64), "
             "intx_packing_format='opaque_torchao_auto')", ao_intx(False, "opaque_torchao_auto")),
        Peer("ao a8w4 opaque_aten_kleidiai", "torchao Int8DynamicActivationIntxWeightConfig(int4, PerGroup(64), "
             "intx_packing_format='opaque_aten_kleidiai')", ao_intx(False, "opaque_aten_kleidiai")),
    ]


def probe(peer: Peer) -> str | None:
    """None if ``peer`` builds, runs and passes its check on a small layer, else the one-line reason."""
    w = torch.from_numpy((np.random.default_rng(1).standard_normal((256, 256)) * 0.02).astype(np.float32))
    x = np.random.default_rng(0).standard_normal((2, 256)).astype(np.float32)
    try:
        b = peer.build(w)
        y = b.make(x)()
        r = check(x, y, b.w_rows, b.tol, b.x_model)
        return None if r <= 1 else f"wrong answers on a 256x256 probe (error {r:.3g}x its bound)"
    except ImportError as e:
        return f"{type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001 - any failure is reported, not raised
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return f"{type(e).__name__}: {msg}"[:160]
    finally:
        gc.collect()


def versions() -> dict[str, str]:
    """Installed peer packages and their versions (without importing them)."""
    from importlib import metadata

    out = {}
    for pkg in ("torchao", "bitsandbytes"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out
