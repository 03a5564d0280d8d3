"""lowbit: fast, exact CPU quantization for neural networks.

SIMD C++ kernels (AVX2, AVX-512, VNNI, AMX, ...) chosen at import for this CPU, under a NumPy and
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

from . import _aliases
from . import _core as _core

# modules at their pre-sub-package names (lowbit.packed4, lowbit.matmul, ...); see _aliases
from .core import calibration as calibration
from .core import config as config
from .core import cpu as cpu
from .core import formats, metrics, observers, reference, schemes
from .core import linear_4bit as packed4  # noqa: F401  (old name, see _aliases)
from .core import matmul as matmul
from .core.attention import attention
from .core.autoround import AutoRound
from .core.calibration import calibrate, text_batches
from .core.clipping import MSEClip, mse_clip_quantize
from .core.config import QuantConfig
from .core.cpu import _apply_env as _apply_env
from .core.cpu import (
    arch,
    buffer_cache,
    cpu_info,
    empty_buffer_cache,
    get_arch,
    get_num_threads,
    get_thread_backend,
    set_arch,
    set_num_threads,
    set_thread_backend,
)
from .core.formats import FORMATS, FormatQTensor
from .core.gptq import GPTQ, HessianObserver, gptq_quantize
from .core.linear_4bit import PackedWeight4
from .core.matmul import PackedWeight, matmul_int8
from .core.metrics import format_bytes
from .core.observers import (
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    Observer,
    PerChannelMinMaxObserver,
    PowerOfTwoObserver,
)
from .core.packed import DequantizingWeight, linear, pack_weight
from .core.quantize import DTYPES, QTensor, choose_qparams, dequantize, fake_quantize, qrange, quantize
from .core.rotation import Rotation
from .core.schemes import (
    BF16Weights,
    BinaryWeights,
    DynamicActivations,
    FloatActivations,
    FP16Weights,
    Int4Weights,
    Int8Weights,
    Log2Weights,
    NF4Weights,
    StaticActivations,
    TernaryWeights,
    UInt4Weights,
)
from .core.smoothing import AWQ, ChannelStats, SmoothQuant
from .evaluation import comparison as comparison
from .evaluation.comparison import FormatComparison, compare_formats, format_label
from .evaluation.timing import Speedup, Timer, Timing, TimingWarning

_apply_env()
_aliases.install()

# torch interop, imported on first use so that `import lowbit` never imports torch.
_LAZY = {
    "nn": ("lowbit.nn", None),
    "quantize_model": ("lowbit.interop.convert", "quantize_model"),
    "prepare_qat": ("lowbit.interop.convert", "prepare_qat"),
    "convert": ("lowbit.interop.convert", "convert"),
    "summary": ("lowbit.interop.convert", "summary"),
    "save": ("lowbit.interop.serialization", "save"),
    "load": ("lowbit.interop.serialization", "load"),
    "quantize_checkpoint": ("lowbit.interop.checkpoint", "quantize_checkpoint"),
    "DistributedError": ("lowbit.interop.distributed", "DistributedError"),
    "RankMismatchError": ("lowbit.interop.distributed", "RankMismatchError"),
    "models": ("lowbit.demo.models", None),
    "compare": ("lowbit.evaluation.report", "compare"),
    "QuantReport": ("lowbit.evaluation.report", "QuantReport"),
    "sensitivity": ("lowbit.evaluation.mixed_precision", "sensitivity"),
    "auto_mixed_precision": ("lowbit.evaluation.mixed_precision", "auto_mixed_precision"),
    "export_onnx": ("lowbit.interop.onnx_export", "export_onnx"),
    "DistillationLoss": ("lowbit.compress", "DistillationLoss"),
    "Distiller": ("lowbit.compress", "Distiller"),
    "GradualPruner": ("lowbit.compress", "GradualPruner"),
    "PruneReport": ("lowbit.compress", "PruneReport"),
    "distill": ("lowbit.compress", "distill"),
    "prune_attention_heads": ("lowbit.compress", "prune_attention_heads"),
    "prune_channels": ("lowbit.compress", "prune_channels"),
    "prune_ffn": ("lowbit.compress", "prune_ffn"),
    "prune_magnitude": ("lowbit.compress", "prune_magnitude"),
    "prune_n_m": ("lowbit.compress", "prune_n_m"),
    "reapply_masks": ("lowbit.compress", "reapply_masks"),
    "sparsity_report": ("lowbit.compress", "sparsity_report"),
    "sparse_storage": ("lowbit.compress", "sparse_storage"),
    "smooth_quant": ("lowbit.interop.equalize", "smooth_quant"),
    "apply_awq": ("lowbit.interop.equalize", "apply_awq"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            if (e.name or "").split(".")[0] not in ("torch", "safetensors"):
                raise
            raise ImportError(
                f"lowbit.{name} needs PyTorch ({e.name} is not installed): pip install 'lowbit[torch]'",
                name=e.name,
            ) from e
        # Bind every function of that module now: importing lowbit.convert sets the package
        # attribute `convert` to the module, which must not shadow the function.
        for key, (other, other_attr) in _LAZY.items():
            if other == module and other_attr is not None:
                globals()[key] = getattr(mod, other_attr)
        return mod if attr is None else globals()[name]
    raise AttributeError(f"module 'lowbit' has no attribute {name!r}")


def __dir__() -> list[str]:
    """Loaded names plus the lazily imported torch API, so tab completion shows both (imports nothing)."""
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "__version__",
    "reference",
    "cpu_info",
    "set_arch",
    "get_arch",
    "arch",
    "set_num_threads",
    "get_num_threads",
    "set_thread_backend",
    "get_thread_backend",
    "buffer_cache",
    "empty_buffer_cache",
    "DTYPES",
    "QTensor",
    "quantize",
    "dequantize",
    "fake_quantize",
    "choose_qparams",
    "qrange",
    "QuantConfig",
    "quantize_model",
    "prepare_qat",
    "convert",
    "summary",
    "save",
    "load",
    "quantize_checkpoint",
    "DistributedError",
    "RankMismatchError",
    "nn",
    "models",
    "compare",
    "QuantReport",
    "sensitivity",
    "auto_mixed_precision",
    "export_onnx",
    "PackedWeight",
    "matmul_int8",
    "pack_weight",
    "linear",
    "attention",
    "observers",
    "Observer",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PerChannelMinMaxObserver",
    "MovingAveragePerChannelMinMaxObserver",
    "HistogramObserver",
    "PowerOfTwoObserver",
    "calibrate",
    "text_batches",
    "metrics",
    "formats",
    "FORMATS",
    "FormatQTensor",
    "compare_formats",
    "FormatComparison",
    "format_label",
    "Timer",
    "Timing",
    "Speedup",
    "TimingWarning",
    "format_bytes",
    "PackedWeight4",
    "DequantizingWeight",
    "schemes",
    "Int8Weights",
    "Int4Weights",
    "UInt4Weights",
    "NF4Weights",
    "FP16Weights",
    "BF16Weights",
    "Log2Weights",
    "TernaryWeights",
    "BinaryWeights",
    "DynamicActivations",
    "StaticActivations",
    "FloatActivations",
    "GPTQ",
    "HessianObserver",
    "gptq_quantize",
    "MSEClip",
    "Rotation",
    "mse_clip_quantize",
    "DistillationLoss",
    "Distiller",
    "GradualPruner",
    "PruneReport",
    "distill",
    "prune_attention_heads",
    "prune_channels",
    "prune_ffn",
    "prune_magnitude",
    "prune_n_m",
    "reapply_masks",
    "sparsity_report",
    "sparse_storage",
    "AWQ",
    "AutoRound",
    "SmoothQuant",
    "ChannelStats",
    "smooth_quant",
    "apply_awq",
]
