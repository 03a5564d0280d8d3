"""GPTQ: error-compensating weight rounding for any weight scheme with fixed-parameter
quantization. Public API layer; NumPy only (no torch).

Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers" (ICLR 2023). For a linear layer ``y = W x`` and calibration inputs ``X``, GPTQ
minimizes ``||W X - Q X||^2 = tr((W - Q) H (W - Q)^T)`` with ``H = X X^T / m`` column by column:
after rounding column ``j`` to ``q_j``, the error ``e = (w_j - q_j) / U[j, j]`` is spread onto the
columns not yet rounded, ``w_{j+1:} -= e U[j, j+1:]``, where ``U`` is the upper Cholesky factor of
``H^-1`` (the Optimal Brain Surgeon update). Columns are processed in blocks of ``block_size``
(lazy batch updates), ``H`` is dampened by ``damp * mean(diag H)``, columns whose inputs never
vary (``H[j, j] == 0``) are set to 0, and with ``act_order`` the columns are taken in order of
decreasing ``H[j, j]`` (off by default). In :func:`lowbit.quantize_model` the statistics of each
layer come from the model whose earlier layers are already quantized (``GPTQ(sequential=False)``:
from the float model, in one pass).

Computation (equal to the above up to float32 rounding): with ``H = R R^T`` (R upper: the reversed
Cholesky factor, ``U = R^-1``) the updates telescope to ``x_j = w_j + sum_{i<j} (w_i - q_i) R[i, j] /
R[j, j]``, ``q_j = Q_j(x_j)`` (GPTQ as Babai's nearest-plane recursion): one Cholesky instead of
GPTQ's Cholesky, inverse and second Cholesky. Per block of columns one float32 GEMM brings in the
earlier columns' errors, and the block's column loop runs in C++ (``_core.gptq_columns``: rows split
over lowbit's threads, a few rows' block kept in L1) for schemes with a generic
:class:`~lowbit.schemes.ColumnGrid`, else in NumPy with the same operations. The quantization parameters (scales, zero points, NF4 block absmax) are
those of round-to-nearest on the original weight ("static groups"), so act-order never changes
which parameters a column uses.

Example:
    >>> rng = np.random.default_rng(0)
    >>> w = rng.standard_normal((16, 64)).astype(np.float32)
    >>> x = rng.standard_normal((256, 64)).astype(np.float32) * np.linspace(0.1, 3, 64, dtype=np.float32)
    >>> h = HessianObserver(64); h.update(x)
    >>> scheme = lowbit.Int4Weights(group_size=32)
    >>> gptq, stats = gptq_quantize(w, h.hessian(), scheme)
    >>> bool(stats["loss_gptq"] < stats["loss_rtn"])
    True
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np

from ._array import as_float_array, as_numpy
from .schemes import ColumnGrid, WeightScheme

__all__ = ["GPTQ", "HessianObserver", "gptq_quantize"]


@dataclass(frozen=True)
class GPTQ:
    """GPTQ options (the ``algorithm`` of a :class:`lowbit.QuantConfig`).

    Attributes:
        damp: dampening, a fraction of the mean Hessian diagonal added to the diagonal (0.01).
            GPTQ moves rounding error into input directions that are quiet on the calibration data;
            on inputs of another domain some of them are not, and a larger ``damp`` limits that
            (all-MiniLM-L6-v2 int4 g64 calibrated on docstring sentences, worst cosine on everyday
            test sentences: RTN 0.9446, damp 0.01 0.9418, 0.1 0.9516, 0.3 0.9533; on held-out
            docstring sentences damp 0.01 gives 0.9712 against RTN's 0.9253).
        block_size: columns per lazy batch update (128).
        act_order: round columns in order of decreasing Hessian diagonal (False). It fits the
            calibration domain best and generalizes worst: the quiet columns, rounded last, absorb
            the error (all-MiniLM-L6-v2 int4 g64: worst cosine 0.9730 on held-out docstring
            sentences, best of all, but 0.8561 on the everyday test sentences).
        clip: start from error-minimizing scales (:func:`lowbit.core.clipping.mse_clip_quantize`)
            instead of round-to-nearest's.
        sequential: in :func:`lowbit.quantize_model`, quantize layer by layer in the order the
            model runs them, each layer's statistics taken from the model whose earlier layers are
            already quantized (True: the paper's order; one pass over the calibration data per group
            of layers sharing an input, each stopped after that group). False: one pass over the
            float model for every layer (faster, ignores the error arriving from earlier layers).
    """

    damp: float = 0.01
    block_size: int = 128
    act_order: bool = False
    clip: bool = False
    sequential: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.damp, (int, float)) and 0 <= self.damp < 1):
            raise ValueError(f"GPTQ.damp: expected a number in [0, 1), got {self.damp!r}")
        if isinstance(self.block_size, bool) or not isinstance(self.block_size, int) or self.block_size < 1:
            raise ValueError(f"GPTQ.block_size: expected a positive int, got {self.block_size!r}")
        if not isinstance(self.act_order, bool):
            raise TypeError(f"GPTQ.act_order: expected a bool, got {type(self.act_order).__name__}")
        for field in ("clip", "sequential"):
            if not isinstance(getattr(self, field), bool):
                raise TypeError(f"GPTQ.{field}: expected a bool, got {type(getattr(self, field)).__name__}")

    name = "gptq"

    def to_dict(self) -> dict[str, Any]:
        return {"name": "gptq", "damp": self.damp, "block_size": self.block_size, "act_order": self.act_order,
                "clip": self.clip, "sequential": self.sequential}


@contextmanager
def _blas_single_thread() -> Iterator[None]:
    """Runs NumPy's BLAS/LAPACK calls inside on one thread (with threadpoolctl when installed).

    OpenBLAS's threaded LAPACK stalls, worst when the cores are oversubscribed (measured on a
    loaded 2-core machine: a 256 x 256 Cholesky 0.9 s instead of 1 ms; k = 4096 quiet: 7.3 s
    instead of 1.7 s); its GEMMs stay threaded (large ones lose nothing under load).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without threadpoolctl the BLAS keeps its threads (the results are the same)
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


class HessianObserver:
    """Streams the inputs of a linear layer into ``sum x x^T`` (float64) and a row count:
    bounded state (k x k), mergeable across batches and processes (sums are exact up to float64
    rounding of each product; merge order does not matter beyond that).

    Example:
        >>> h = HessianObserver(3); h.update(np.eye(3, dtype=np.float32)); h.hessian()
        array([[0.33333333, 0.        , 0.        ],
               [0.        , 0.33333333, 0.        ],
               [0.        , 0.        , 0.33333333]])
    """

    def __init__(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k: expected a positive int, got {k!r}")
        self.k = int(k)
        self.sum = np.zeros((self.k, self.k), np.float64)
        self.count = 0

    def update(self, x: Any) -> None:
        """Adds inputs ``x`` of shape (..., k) (NumPy or CPU torch). Non-finite rows are refused."""
        a = as_float_array(as_numpy(x, "x"), "x")
        if a.ndim == 0 or a.shape[-1] != self.k:
            raise ValueError(f"x: expected shape (..., {self.k}), got {a.shape}")
        rows = a.reshape(-1, self.k).astype(np.float64)
        if not np.all(np.isfinite(rows)):
            raise ValueError("x: calibration inputs must be finite (found NaN or inf)")
        self.sum += rows.T @ rows
        self.count += rows.shape[0]

    def merge(self, other: HessianObserver) -> HessianObserver:
        """Adds another observer's statistics (same k) into this one; returns self."""
        if not isinstance(other, HessianObserver) or other.k != self.k:
            raise ValueError("other: expected a HessianObserver of the same k")
        self.sum += other.sum
        self.count += other.count
        return self

    def hessian(self) -> np.ndarray:
        """``sum x x^T / count`` (float64 (k, k)); raises when nothing was observed."""
        if self.count == 0:
            raise ValueError("HessianObserver: no inputs observed (the layer never ran on the calibration data)")
        return self.sum / self.count

    def state_dict(self) -> dict[str, Any]:
        return {"k": self.k, "count": self.count, "sum": self.sum.tolist()}

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> HessianObserver:
        h = cls(int(d["k"]))
        s = np.asarray(d["sum"], np.float64)
        if s.shape != (h.k, h.k) or not np.all(np.isfinite(s)) or int(d["count"]) < 0:
            raise ValueError("state: corrupted HessianObserver state")
        h.sum, h.count = s, int(d["count"])
        return h


def _unit_upper_factor(h: np.ndarray) -> np.ndarray:
    """float32 ``A = R / diag(R)`` (columns scaled to a unit diagonal) of the upper triangular R with
    ``H = R R^T`` (H symmetric positive definite; R is the reversed Cholesky factor: with J the
    reversal, ``J H J = L L^T`` and ``R = J L J``). ``R^-1`` is the upper Cholesky factor U of
    ``H^-1`` that the OBS updates use, so one factorization replaces GPTQ's three (no inverse). Only
    the strict upper triangle of A is meaningful (the column loop reads nothing else)."""
    r = _cholesky_lower(h[::-1, ::-1])[::-1, ::-1]
    return r / np.diag(r)  # one pass: a new C-ordered float32 array


def _cholesky_lower(h: np.ndarray, block: int = 512) -> np.ndarray:
    """Lower Cholesky factor in float32 (its strict upper triangle is left as garbage), blocked
    right-looking: each diagonal block is factored in float64 by LAPACK on one thread (OpenBLAS's
    threaded potrf stalls: 7.3 s instead of 1.7 s for k = 4096 on 2 cores), the panels and trailing
    updates are float32 GEMMs on the BLAS threads (the reference GPTQ factors in float32 too)."""
    a = np.array(h, np.float32, order="C")
    k = a.shape[0]
    for j in range(0, k, block):
        e = min(j + block, k)
        with _blas_single_thread():
            low = np.linalg.cholesky(a[j:e, j:e].astype(np.float64))
            inv_t = np.linalg.inv(low).T.astype(np.float32)
        a[j:e, j:e] = low
        if e < k:
            p = a[e:, j:e] @ inv_t
            a[e:, j:e] = p
            a[e:, e:] -= p @ p.T
    return a


def _columns_numpy(w: np.ndarray, a: np.ndarray, quantize_column: Any, block: int) -> tuple[np.ndarray, np.ndarray]:
    """The float32 reference of the compiled column loop (same operations, same order): returns the
    rounded values q and the inputs x they were rounded from."""
    n, k = w.shape
    x, q, delta = w.copy(), np.empty_like(w), np.empty_like(w)
    for start in range(0, k, block):
        end = min(start + block, k)
        if start:
            x[:, start:end] += delta[:, :start] @ a[:start, start:end]
        for j in range(start, end):
            q[:, j] = quantize_column(j, x[:, j])
            delta[:, j] = w[:, j] - q[:, j]
            x[:, j + 1:end] += np.outer(delta[:, j], a[j, j + 1:end])
    return q, x


def _columns_compiled(w: np.ndarray, a: np.ndarray, grid: ColumnGrid, order: np.ndarray,
                      block: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_columns_numpy` with the per-block column loop in C++ (``_core.gptq_columns``: rows
    split over threads, each chunk's block in L1) and the trailing update as one BLAS sgemm per block."""
    from .. import _core

    n, k = w.shape
    x, q, delta = w.copy(), np.empty_like(w), np.empty_like(w)
    group = np.ascontiguousarray(order // grid.group_size, np.int32)
    codebook = grid.levels is not None
    levels = np.ascontiguousarray(grid.levels, np.float32) if codebook else None
    thresholds = np.ascontiguousarray(grid.thresholds, np.float32) if codebook else None
    for start in range(0, k, block):
        end = min(start + block, k)
        if start:
            x[:, start:end] += delta[:, :start] @ a[:start, start:end]
        _core.gptq_columns(x, w, q, delta, a, start, end, grid.scale, grid.zero_point, group, grid.qmin, grid.qmax,
                           levels, thresholds)
    return q, x


def gptq_quantize(
    w: Any, hessian: Any, scheme: WeightScheme, options: Optional[GPTQ] = None, *, losses: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """GPTQ-rounds a float weight (n, k) into ``scheme``'s stored form (see the module docstring).

    Args:
        w: float (n, k) weight (``nn.Linear.weight`` layout; for a Conv2d the (kh, kw, in) patch
            order), finite.
        hessian: (k, k) ``E[x x^T]`` of the layer's inputs (:class:`HessianObserver`).
        scheme: the weight scheme; it must support fixed-parameter rounding
            (:meth:`~lowbit.schemes.WeightScheme.column_quantizer`: int8, int4, uint4, nf4).
        options: :class:`GPTQ` (defaults when None).
        losses: compute the statistics (two float32 (n, k) x (k, k) products: for large layers
            more than GPTQ itself); False returns an empty dict.

    Returns:
        ``(stored, stats)``: the stored arrays (as ``scheme.quantize`` returns them, with the
        round-to-nearest parameters) and ``{"loss_rtn", "loss_gptq"}``: the layer's output error
        ``tr((W - Q) H (W - Q)^T) / n`` for round-to-nearest and for GPTQ.

    The column loop runs in float32: in C++ for schemes with a
    :meth:`~lowbit.schemes.WeightScheme.column_grid` (int8, int4, uint4, nf4), else in NumPy with
    the scheme's ``column_quantizer`` (same operations, same order: equal results).
    """
    opts = options or GPTQ()
    if not isinstance(losses, bool):
        raise TypeError(f"losses: expected a bool, got {type(losses).__name__}")
    w32 = np.ascontiguousarray(as_float_array(as_numpy(w, "w"), "w"), np.float32)
    if w32.ndim != 2:
        raise ValueError(f"w: expected a 2-D (n, k) weight, got shape {w32.shape}")
    n, k = w32.shape
    h0 = np.asarray(as_numpy(hessian, "hessian"), np.float64)  # never written (the caller's array)
    h = h0.copy()  # dampened, permuted and patched below; the losses use h0
    if h.shape != (k, k):
        raise ValueError(f"hessian: expected shape ({k}, {k}), got {h.shape}")
    if not (np.all(np.isfinite(h)) and np.all(np.isfinite(w32))):
        raise ValueError("w/hessian: must be finite")
    rtn = scheme.quantize(w32)
    if opts.clip:
        from .clipping import mse_clip_quantize

        start, _ = mse_clip_quantize(w32, scheme)
    else:
        start = rtn
    quantizer = scheme.column_quantizer(start, n, k)
    if n == 0 or k == 0:
        return start, ({"loss_rtn": 0.0, "loss_gptq": 0.0} if losses else {})
    grid = scheme.column_grid(start, n, k)
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    order = np.argsort(-np.diag(h), kind="stable") if opts.act_order else np.arange(k)
    if opts.act_order:
        h = h[np.ix_(order, order)]
        work = np.ascontiguousarray(w32[:, order])
    else:  # the identity permutation: no copies of H and W
        work = w32.copy()
    work[:, dead[order]] = 0.0
    h[np.diag_indices(k)] += opts.damp * float(np.mean(np.diag(h)))
    a = _unit_upper_factor(h)
    if grid is not None:
        q, _ = _columns_compiled(work, a, grid, order, opts.block_size)
    else:
        q, _ = _columns_numpy(work, a, lambda j, col: quantizer(int(order[j]), col), opts.block_size)
    if opts.act_order:
        final = np.empty((n, k), np.float32)
        final[:, order] = q
    else:
        final = q
    stored = scheme.requantize(final, start)
    if not losses:
        return stored, {}
    h32 = h0.astype(np.float32)
    return stored, {"loss_rtn": _loss(w32, scheme.dequantize(rtn, n, k), h32),
                    "loss_gptq": _loss(w32, scheme.dequantize(stored, n, k), h32)}


def _loss(w: np.ndarray, q: np.ndarray, h: np.ndarray) -> float:
    """``tr((w - q) h (w - q)^T) / n``: float32 product, float64 sum."""
    d = w - q
    return float(np.sum((d @ h) * d, dtype=np.float64) / max(w.shape[0], 1))
