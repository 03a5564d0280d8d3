"""Type stubs of lowbit._core, the private pybind11 module (bindings layer; see ARCHITECTURE.md).

Generated from the pybind11 signatures in the docstrings and checked against ``dir(lowbit._core)``
by tests/test_typing.py. Arguments are validated in C++ (TypeError/ValueError naming the argument).
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

def _linear_4bit_twin(
    which: str,
    x: np.ndarray,
    w: np.ndarray,
    scales: np.ndarray,
    bias: Any,
    n: int,
    group_size: int,
    kind: str,
    wsum: Any = None,
) -> np.ndarray: ...
def _matmul_amx_twin(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Tests only: matmul_int8 through the AMX kernel source with emulated tiles."""

def _matmul_avxvnni_twin(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Tests only: matmul_int8 through the AVX-VNNI kernel source built with EVEX vpdpbusd."""

def available() -> list[str]:
    """ISA levels usable on this machine, best first, ending with 'scalar'."""

def conv2d_static(
    x: np.ndarray,
    packed: np.ndarray,
    colsum: np.ndarray,
    n: int,
    scale: np.ndarray,
    bias: Any,
    kh: int,
    kw: int,
    stride_h: int,
    stride_w: int,
    pad_h: int,
    pad_w: int,
    dil_h: int,
    dil_w: int,
    act_scale: float,
    act_zero_point: int,
    act_signed: bool,
    relu: bool,
    act: str = "static",
    out_scale: float = 0.0,
    out_zero_point: int = 0,
    out_signed: bool = False,
    out_lo: float = ...,
    out_hi: float = ...,
) -> np.ndarray: ...
def conv2d_depthwise(
    x: np.ndarray,
    weight: np.ndarray,
    scale: np.ndarray,
    bias: Any,
    kh: int,
    kw: int,
    stride_h: int,
    stride_w: int,
    pad_h: int,
    pad_w: int,
    dil_h: int,
    dil_w: int,
    act_scale: float,
    act_zero_point: int,
    act_signed: bool,
    relu: bool,
    act: str = "static",
    out_scale: float = 0.0,
    out_zero_point: int = 0,
    out_signed: bool = False,
    out_lo: float = ...,
    out_hi: float = ...,
) -> np.ndarray: ...
class DepthwiseConv:
    def __init__(
        self,
        weight: np.ndarray,
        scale: np.ndarray,
        bias: Any,
        kh: int,
        kw: int,
        stride_h: int,
        stride_w: int,
        pad_h: int,
        pad_w: int,
        dil_h: int,
        dil_w: int,
        act_scale: float,
        act_zero_point: int,
        act_signed: bool,
        relu: bool,
        act: str = "static",
    ) -> None: ...
    def __call__(
        self,
        x: np.ndarray,
        out_scale: float = 0.0,
        out_zero_point: int = 0,
        out_signed: bool = False,
        out_lo: float = ...,
        out_hi: float = ...,
    ) -> np.ndarray: ...

def convert_bf16_f32(x: np.ndarray) -> np.ndarray: ...
def convert_f16_f32(x: np.ndarray) -> np.ndarray: ...
def convert_f32_bf16(x: np.ndarray) -> np.ndarray: ...
def convert_f32_f16(x: np.ndarray) -> np.ndarray: ...
def dequantize(
    q: np.ndarray,
    shape: Sequence[int],
    dtype: str,
    mode: str,
    row_div: int,
    group_size: int,
    scale: Any,
    zero_point: Any,
    qmin: int,
    qmax: int,
    out: Any = None,
) -> np.ndarray: ...
def dequantize_nf4(q: np.ndarray, absmax: np.ndarray, shape: Sequence[int], block_size: int) -> np.ndarray: ...
def gptq_columns(
    x: np.ndarray, w: np.ndarray, q: np.ndarray, delta: np.ndarray, a: np.ndarray, begin: int, end: int,
    scale: np.ndarray, zero_point: np.ndarray | None, group: np.ndarray, qmin: int, qmax: int,
    levels: np.ndarray | None, thresholds: np.ndarray | None,
) -> None:
    """GPTQ's column loop over columns [begin, end) in place (x, q, delta; see lowbit/gptq.hpp)."""
def attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    mask: Any,
    causal: bool,
    scale: float,
    out: Any = None,
    heads_last: bool = False,
) -> np.ndarray:
    """out = softmax(q k^T * scale + mask) v over (batch, heads, rows, columns) float32 arrays (last dimension
    contiguous; k, v may have fewer heads: grouped-query attention); mask additive, broadcast, or None; causal
    hides keys after each query row. Returns out, or without it a new (batch, heads, rows, columns) array, with
    heads_last one of (batch, rows, heads, columns)."""
def error_stats_f32(x: np.ndarray, y: np.ndarray) -> tuple[Any, ...]:
    """(sum (x-y)^2, sum x^2, sum y^2, sum x*y, max |x-y|) of two float32 arrays of equal size, accumulated
    in double; max is NaN when any difference is NaN.
    """

def fake_quantize(
    x: np.ndarray,
    dtype: str,
    mode: str,
    row_div: int,
    group_size: int,
    scale: Any,
    zero_point: Any,
    qmin: int,
    qmax: int,
    rounding: str,
    seed: int,
    out: Any = None,
) -> np.ndarray: ...
def features() -> dict[str, bool]:
    """Detected CPU feature flags."""

def get_arch() -> str: ...
def get_num_threads() -> int: ...
def get_thread_backend() -> str:
    """"own", "openmp" or "openmp_adaptive": where parallel regions run (see lowbit.set_thread_backend)."""

def histogram_f32(x: np.ndarray, scale: float, base: float, bins: int) -> tuple[Any, ...]:
    """(counts[bins] int64, nonfinite, zeros, min, max): finite x into bin clamp(floor(x*scale) - base, 0,
    bins-1); min/max of the finite values.
    """

def im2col(
    x: np.ndarray, kh: int, kw: int, stride_h: int, stride_w: int, pad_h: int, pad_w: int, dil_h: int, dil_w: int
) -> np.ndarray: ...
def kernel_calls() -> list[tuple[str, list[tuple[str, int]]]]: ...
def linear(
    x: np.ndarray,
    packed: np.ndarray,
    colsum: np.ndarray,
    n: int,
    k: int,
    scale: np.ndarray,
    bias: Any,
    act: str,
    act_scale: float,
    act_zero_point: int,
    act_signed: bool,
    relu: bool,
    out_scale: Any,
    out_zero_point: int,
    rotation_signs: Any = None,
    rotation_block: int = 0,
) -> np.ndarray:
    """out = epilogue(quantize(x R) @ W^T); R the blocked Walsh-Hadamard rotation of rotation_signs
    (lowbit/rotation.hpp) when rotation_block > 0."""
def linear_parts(x: np.ndarray, parts: Sequence[tuple[Any, ...]]) -> list[np.ndarray]:
    """Several linears on one x (each entry: the arguments of linear after x), x quantized once: the
    list of their results. Their activation arguments and K must agree."""
def linear_4bit(
    x: np.ndarray,
    w: np.ndarray,
    scales: np.ndarray,
    bias: Any,
    n: int,
    group_size: int,
    kind: str,
    act: str,
    wsum: Any = None,
    rotation_signs: Any = None,
    rotation_block: int = 0,
) -> np.ndarray: ...
def hadamard(x: np.ndarray, signs: np.ndarray, block: int, out: Any = None) -> np.ndarray:
    """Blocked Walsh-Hadamard rotation of the rows of a (rows, k) float32 array: each block of `block`
    columns becomes H_block (signs * x) / sqrt(block) (lowbit/rotation.hpp)."""
def layer_norm(x: np.ndarray, gamma: Any, beta: Any, eps: float, out: Any = None) -> np.ndarray:
    """LayerNorm over the rows of a C-contiguous (rows, n) float32 array (lowbit/norm.hpp)."""
def matmul_int8(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact int32 product of a (M, K) int8/uint8 and b (K, N) int8, any strides."""

matmul_max_k_s8: int
matmul_max_k_u8: int

def matmul_packed(a: np.ndarray, packed: np.ndarray, colsum: np.ndarray, n: int, k: int) -> np.ndarray:
    """Exact int32 a @ w.T for a packed weight w (N, K)."""

def matmul_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The scalar C++ spec of matmul_int8 (slow triple loop)."""

def minmax_f32(x: np.ndarray) -> tuple[Any, ...]:
    """(min, max, nonfinite) of the finite values of a float32 array; (inf, -inf, n) if none."""

def minmax_per_channel_f32(x: np.ndarray, axis: int) -> tuple[Any, ...]:
    """(min[C], max[C], nonfinite) of the finite values per index of `axis`."""

def op_isas() -> list[tuple[str, list[str]]]: ...
def ops() -> list[tuple[str, str]]: ...
def pack_weight_s8(w: np.ndarray) -> tuple[Any, ...]:
    """Packs w (N, K) int8 into the vnni4x16 layout; returns (packed, colsum)."""

packed_layout: str

def quantize(
    x: np.ndarray,
    dtype: str,
    mode: str,
    row_div: int,
    group_size: int,
    scale: Any,
    zero_point: Any,
    qmin: int,
    qmax: int,
    rounding: str,
    seed: int,
    out: Any = None,
) -> np.ndarray: ...
def quantize_nf4(x: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray]: ...
def set_arch(arch: str) -> None: ...
def set_num_threads(n: int) -> None: ...
def set_thread_backend(name: str) -> None:
    """"own", "openmp" (the attached OpenMP runtime's team) or "openmp_adaptive" (the team, the own pool
    for a while after a stalled region)."""

def attach_openmp(library: str) -> str:
    """Finds GOMP_parallel, omp_get_max_threads, omp_in_parallel in the already loaded library's lookup
    scope; returns the runtime's path. ValueError naming the library when not loaded or without OpenMP."""

def parallel_counts() -> list[tuple[str, int]]:
    """Parallel regions so far: own pool, OpenMP team, inline, and adaptive stalls."""

def buffer_cache(limit: int | None = None) -> dict[str, int]:
    """The result-buffer cache's counters; a new limit (bytes) empties it."""

def empty_buffer_cache() -> None:
    """Frees the cached result buffers."""

def pooled_empty(shape: list[int], dtype: np.dtype) -> np.ndarray:
    """An uninitialized array from the result-buffer cache (pages already mapped when recycled)."""

def unpack_weight_s8(packed: np.ndarray, n: int, k: int) -> np.ndarray:
    """Inverse of pack_weight_s8: the (N, K) int8 weight."""
