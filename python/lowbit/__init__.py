"""lowbit: fast, exact CPU quantization for neural networks.

SIMD C++ kernels (AVX2, AVX-512, VNNI, ...) chosen at import for this CPU, under a NumPy and
PyTorch API. ``import lowbit`` never imports torch or matplotlib.

Example:
    >>> import numpy as np, lowbit
    >>> q = lowbit.quantize(np.float32([0.1, -0.4]), scale=0.1)
    >>> q.int_repr()
    array([ 1, -4], dtype=int8)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lowbit")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from . import _core, reference
from .cpu import arch, cpu_info, get_arch, get_num_threads, set_arch, set_num_threads
from .cpu import _apply_env as _apply_env
from .matmul import PackedWeight, linear, matmul_int8, pack_weight
from .quantize import DTYPES, QTensor, choose_qparams, dequantize, fake_quantize, qrange, quantize
from . import observers
from .observers import (
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    Observer,
    PerChannelMinMaxObserver,
    PowerOfTwoObserver,
)
from .calibration import calibrate

_apply_env()

__all__ = [
    "__version__",
    "reference",
    "cpu_info",
    "set_arch",
    "get_arch",
    "arch",
    "set_num_threads",
    "get_num_threads",
    "DTYPES",
    "QTensor",
    "quantize",
    "dequantize",
    "fake_quantize",
    "choose_qparams",
    "qrange",
    "PackedWeight",
    "matmul_int8",
    "pack_weight",
    "linear",
    "observers",
    "Observer",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PerChannelMinMaxObserver",
    "MovingAveragePerChannelMinMaxObserver",
    "HistogramObserver",
    "PowerOfTwoObserver",
    "calibrate",
]
