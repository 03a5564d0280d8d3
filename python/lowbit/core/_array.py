"""Array interop for the public API: NumPy arrays and CPU torch tensors in, NumPy views out.

Private helper layer; torch is never imported here (tensors are recognised by duck typing).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_numpy", "as_float_array", "is_torch_tensor"]


def is_torch_tensor(x: Any) -> bool:
    """True for a ``torch.Tensor`` (checked without importing torch)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach") and hasattr(x, "numpy")


def as_numpy(x: Any, name: str) -> np.ndarray:
    """Returns ``x`` as a NumPy array: a zero-copy view of a CPU torch tensor, ``x`` itself for an
    ndarray, ``np.asarray(x)`` for scalars and sequences. An array whose data is not aligned to its
    element size (a view at an odd byte offset) is copied: the kernels load aligned elements.

    Raises:
        ValueError: a torch tensor that is not on the CPU.
    """
    if isinstance(x, np.ndarray):
        return x if x.flags.aligned else x.copy()
    if is_torch_tensor(x):
        if x.device.type != "cpu":
            raise ValueError(f"{name}: tensor is on device '{x.device}'; lowbit runs on the CPU, call .cpu() first")
        t = x.detach()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()  # exact widening; NumPy has no bfloat16
        return t.resolve_conj().resolve_neg().numpy()
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name}: expected an array, got {type(x).__name__}")
    return np.asarray(x)


def as_float_array(x: Any, name: str) -> np.ndarray:
    """A C-contiguous float32 or float16 array for the kernels (float64 is rounded to float32).

    Never modifies ``x``; copies only when the layout or dtype requires it.

    Raises:
        TypeError: integer, bool, complex or object data.
    """
    a = as_numpy(x, name)
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    elif a.dtype not in (np.float32, np.float16):
        raise TypeError(f"{name}: expected a floating-point array (float32, float16 or float64), got dtype {a.dtype}")
    return np.require(a, requirements="C")  # unlike ascontiguousarray, keeps 0-d arrays 0-d
