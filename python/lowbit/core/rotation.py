"""Hadamard rotation of a layer's inputs (incoherence processing). Public API layer; NumPy only.

A Linear layer computes ``x W^T``. For any orthogonal ``R``, ``x W^T = (x R) (W R)^T``: the layer
can store ``W R`` and rotate its input on every call. With ``R = diag(s) H / sqrt(b)`` (random
signs ``s``, the Walsh-Hadamard matrix ``H`` of blocks of ``b`` inputs) the rotation spreads
each input channel over its whole block. Activation outlier channels (transformers' residual
stream has a few, 10-100x the others) become ordinary values, and so do weight outliers, so
per-tensor int8 activations and 4-bit weight groups lose far less to rounding (QuaRot: Ashkboos
et al. 2024, "QuaRot: Outlier-Free 4-Bit Inference in Rotated LLMs"; QuIP#: Tseng et al. 2024).
The rotation costs ``log2(b)`` additions per input element at run time (lowbit's
Walsh-Hadamard kernel, bit-identical on every ISA: ``lowbit/rotation.hpp``), nothing in storage
but the signs.

It composes with every weight rounding (round to nearest, MSE scales, GPTQ, AutoRound; AWQ and
SmoothQuant scale the float layer first, then it is rotated): they all see the rotated weight and
the rotated inputs. ``QuantConfig(rotation="hadamard")`` rotates every Linear whose input width
has a power-of-two factor of at least 8 (the block is the largest power of two dividing it, at
most :attr:`Rotation.block`).

Example:
    >>> x = np.arange(8, dtype=np.float32).reshape(1, 8)
    >>> s = hadamard_signs(8, seed=0)
    >>> y = rotate(x, s, 8)
    >>> bool(np.allclose(np.linalg.norm(y), np.linalg.norm(x)))  # orthogonal: norms kept
    True
    >>> bool(np.allclose(unrotate(y, s, 8), x, atol=1e-5))
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .. import _core
from ._array import as_numpy

__all__ = ["Rotation", "hadamard_signs", "rotate", "rotation_block", "unrotate"]

MIN_BLOCK = 8  # narrower blocks spread too little to be worth a pass over the input


@dataclass(frozen=True)
class Rotation:
    """Options of the input rotation (the ``rotation`` of a :class:`lowbit.QuantConfig`;
    ``"hadamard"`` means ``Rotation()``).

    Attributes:
        block: the widest Walsh-Hadamard block, a power of two >= 8 (64). Each layer uses the
            largest power of two dividing its input width, up to ``block``; a layer whose width
            has no such factor of at least 8 is not rotated. Wider blocks spread outliers further
            and cost one more addition per input element per doubling.
        seed: seeds the random signs (the same signs for every layer of one input width, so
            layers reading one input rotate it alike).
    """

    block: int = 64
    seed: int = 0

    name = "hadamard"

    def __post_init__(self) -> None:
        b = self.block
        if isinstance(b, bool) or not isinstance(b, int) or b < MIN_BLOCK or b & (b - 1):
            raise ValueError(f"Rotation.block: expected a power of two >= {MIN_BLOCK}, got {b!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"Rotation.seed: expected a non-negative int, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": "hadamard", "block": self.block, "seed": self.seed}


def as_rotation(value: Any) -> Optional[Rotation]:
    """None, "hadamard", a :class:`Rotation` or its to_dict() form (QuantConfig.rotation)."""
    if value is None or isinstance(value, Rotation):
        return value
    if value == "hadamard":
        return Rotation()
    if isinstance(value, Mapping) and value.get("name") == "hadamard":
        return Rotation(**{k: v for k, v in value.items() if k != "name"})
    raise ValueError(f"QuantConfig.rotation: expected None, 'hadamard' or a lowbit.Rotation, got {value!r}")


def rotation_block(k: int, block: int = 64) -> int:
    """The block a layer of ``k`` inputs rotates with: the largest power of two dividing ``k``, at
    most ``block``; 0 when that is below 8 (the layer is not rotated)."""
    b = 1
    while b < block and k % (2 * b) == 0:
        b *= 2
    return b if b >= MIN_BLOCK and k > 0 else 0


def hadamard_signs(k: int, seed: int = 0) -> np.ndarray:
    """The random +-1 signs (float32, (k,)) of a rotation of ``k`` inputs."""
    return np.random.default_rng([seed, k]).choice(np.array([-1.0, 1.0], np.float32), size=k)


def _rows(x: Any, name: str) -> np.ndarray:
    a = as_numpy(x, name)
    if a.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array, got dtype {a.dtype}")
    if a.ndim == 0:
        raise ValueError(f"{name}: expected at least one dimension")
    return np.ascontiguousarray(a, np.float32).reshape(-1, a.shape[-1])


def rotate(x: Any, signs: Any, block: int) -> np.ndarray:
    """``x R`` for ``R = diag(signs) H_block / sqrt(block)`` over the last axis: each block of
    ``block`` values becomes its Walsh-Hadamard transform of ``signs * x``, scaled to keep norms
    (float32; ``x`` is not modified). ``block`` must be a power of two dividing x's last axis."""
    a = as_numpy(x, "x")
    s = _rows(signs, "signs").reshape(-1)
    return _core.hadamard(_rows(a, "x"), s, int(block)).reshape(a.shape)


def unrotate(y: Any, signs: Any, block: int) -> np.ndarray:
    """The inverse of :func:`rotate`: ``y R^T`` (``R`` is orthogonal)."""
    a = as_numpy(y, "y")
    s = _rows(signs, "signs").reshape(-1)
    return (_core.hadamard(_rows(a, "y"), np.ones_like(s), int(block)) * s).reshape(a.shape)
