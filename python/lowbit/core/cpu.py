"""CPU features, kernel dispatch and threading: which ISA each op runs with, and how to force one.

Public API over the dispatch layer of the C++ core.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

from .. import _core

__all__ = ["cpu_info", "set_arch", "get_arch", "arch", "set_num_threads", "get_num_threads"]


def cpu_info() -> dict[str, Any]:
    """Describes what lowbit detected and what it will run.

    Returns:
        A dict with ``"features"`` (CPU feature flags detected, e.g. ``"avx512_vnni"``),
        ``"available"`` (ISA names usable here, best first, ending with ``"scalar"``), ``"arch"``
        (the current ceiling, see :func:`set_arch`), ``"ops"`` (op name -> ISA it runs with),
        ``"num_threads"`` and ``"version"``.

    Example:
        >>> info = lowbit.cpu_info()
        >>> info["available"][-1]
        'scalar'
    """
    from .. import __version__

    return {
        "features": {k: v for k, v in sorted(_core.features().items()) if v},
        "available": list(_core.available()),
        "arch": _core.get_arch(),
        "ops": dict(_core.ops()),
        "num_threads": _core.get_num_threads(),
        "version": __version__,
    }


def get_arch() -> str:
    """The ISA ceiling every op currently resolves against (best available unless forced)."""
    return _core.get_arch()


def set_arch(name: str) -> None:
    """Forces every op to use kernels of ISA ``name`` or lower (``"scalar"`` always works).

    The ``LOWBIT_ARCH`` environment variable does the same at import.

    Args:
        name: one of ``cpu_info()["available"]``.

    Raises:
        ValueError: an unknown name or an ISA this CPU lacks; the message lists the valid ones.

    Example:
        >>> lowbit.set_arch("scalar"); lowbit.get_arch()
        'scalar'
        >>> lowbit.set_arch(lowbit.cpu_info()["available"][0])
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a string, got {type(name).__name__}")
    _core.set_arch(name)


@contextlib.contextmanager
def arch(name: str) -> Iterator[None]:
    """Context manager form of :func:`set_arch`; restores the previous ceiling on exit.

    Example:
        >>> with lowbit.arch("scalar"):
        ...     lowbit.cpu_info()["ops"]["quantize_f32_s8"]
        'scalar'
    """
    previous = get_arch()
    set_arch(name)
    try:
        yield
    finally:
        _core.set_arch(previous)


def get_num_threads() -> int:
    """Number of threads lowbit's kernels use (default: the cores this process may run on)."""
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Sets the number of threads lowbit's kernels use.

    Raises:
        TypeError: ``n`` is not an int.
        ValueError: ``n < 1``.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    _core.set_num_threads(n)


def _apply_env() -> None:
    env = os.environ.get("LOWBIT_ARCH")
    if env:
        try:
            _core.set_arch(env)
        except ValueError as e:
            raise ValueError(f"LOWBIT_ARCH: {e}") from None
