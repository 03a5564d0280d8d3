"""CPU features, kernel dispatch and threading: which ISA each op runs with, and how to force one.

Public API over the dispatch layer of the C++ core.
"""

from __future__ import annotations

import contextlib
import glob
import os
import sys
from typing import Any, Iterator, Optional

from .. import _core

__all__ = [
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
]

_THREAD_BACKENDS = ("auto", "own", "torch")
_thread_backend = "auto"  # the setting; the backend in effect is _core.get_thread_backend()
_torch_runtime: Optional[str] = None  # path of torch's OpenMP runtime once attached


def cpu_info() -> dict[str, Any]:
    """Describes what lowbit detected and what it will run.

    Returns:
        A dict with ``"features"`` (CPU feature flags detected, e.g. ``"avx512_vnni"``),
        ``"available"`` (ISA names usable here, best first, ending with ``"scalar"``), ``"arch"``
        (the current ceiling, see :func:`set_arch`), ``"ops"`` (op name -> ISA it runs with),
        ``"num_threads"``, ``"thread_backend"`` (see :func:`get_thread_backend`) and ``"version"``.

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
        "thread_backend": get_thread_backend(),
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
    """Number of threads lowbit's kernels use: the last :func:`set_num_threads`, else the cores
    this process may run on, or, while lowbit runs on torch's threads (:func:`set_thread_backend`),
    torch's ``torch.get_num_threads()``."""
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


def set_thread_backend(name: str) -> None:
    """Chooses the threads lowbit's kernels run their parallel work on. Results do not depend on
    it (nor on the thread count): only the speed does.

    - ``"own"``: lowbit's own pool (workers spin ~100 us after a call, then sleep).
    - ``"torch"``: torch's intra-op OpenMP team, the threads torch's own ops run on. Inside a
      torch model, lowbit's layers then run on the threads that just ran the previous torch op
      (warm, still spinning) instead of competing with them for the cores: on a machine with as
      many threads as cores, torch's idle OpenMP workers spin between torch ops and starved
      lowbit's pool (its work ran on about one core). Imports torch.
    - ``"auto"`` (the default): the own pool until lowbit's torch layers are used (importing
      :mod:`lowbit.nn`, :func:`lowbit.quantize_model` or :func:`lowbit.load` loads lowbit's torch
      ops), then torch's team when torch runs on an OpenMP runtime lowbit can find, else the own
      pool. On torch's team "auto" watches each region: a caller that waited more than 1 ms
      (beyond its own share) for late team threads, at the region's start or its join, twice
      within 0.1 s, means an oversubscribed machine (more runnable threads than cores: a
      descheduled OpenMP thread holds up the team's barriers, which the own pool's join never
      waits for), and lowbit runs on its own pool for the next 0.1 s (doubling while the stalls go
      on, up to 30 s) before it tries the team again. The first 16 regions of a team (its threads
      starting up) never count as stalls.

    The OpenMP runtime is the one torch's ``libtorch_cpu`` calls (found in the process, never
    loaded by lowbit). A ``fork()`` child runs on the own pool whatever the setting (the parent's
    OpenMP team does not exist there). Unless :func:`set_num_threads` was called, lowbit uses as
    many threads as torch (``torch.set_num_threads``) on torch's team.

    Args:
        name: ``"auto"``, ``"own"`` or ``"torch"``.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: an unknown name.
        RuntimeError: ``"torch"`` but torch has no OpenMP runtime lowbit can call.

    Example:
        >>> lowbit.set_thread_backend("own"); lowbit.get_thread_backend()
        'own'
        >>> lowbit.set_thread_backend("auto")
    """
    global _thread_backend
    if not isinstance(name, str):
        raise TypeError(f"name: expected a string, got {type(name).__name__}")
    if name not in _THREAD_BACKENDS:
        raise ValueError(f"name: expected one of {_THREAD_BACKENDS}, got {name!r}")
    if name == "torch":
        _attach_torch(strict=True)
    elif name == "own" or "lowbit.interop._torch_ops" not in sys.modules:
        _core.set_thread_backend("own")
    else:
        _attach_torch(strict=False)
    _thread_backend = name


def get_thread_backend() -> str:
    """The threads lowbit's parallel work runs on: ``"own"`` or ``"torch"`` (see
    :func:`set_thread_backend`; ``"torch"`` under ``"auto"`` includes its fall-backs to the own
    pool on an oversubscribed machine)."""
    return "own" if _core.get_thread_backend() == "own" else "torch"


def buffer_cache(max_bytes: Optional[int] = None) -> dict[str, int]:
    """The cache of freed result buffers, and optionally its size limit.

    Results of 256 KiB and more (linear, 4-bit linear, convolutions, quantize) are allocated from a
    cache of freed results of the same size: a layer called in a loop gets back the pages its
    previous result used, already mapped, instead of fresh pages from the kernel. The C allocator
    returns large freed blocks to the kernel, so without the cache every call paid a page fault
    per 4 KiB of its result (MiniLM, batch 8, 2 threads: ~8,000 faults, a quarter of a forward).
    Buffers of 2 MiB and more are advised as transparent huge pages. The cache holds only freed
    results, up to ``max_bytes`` (256 MiB by default); results alive in the caller's hands are not
    counted.

    Args:
        max_bytes: new limit in bytes (0 turns the cache off); setting it empties the cache.
            ``None`` only reports.

    Returns:
        ``{"cached_bytes", "max_bytes", "hits", "misses"}`` (hits and misses count the pooled
        allocations since the process started).

    Raises:
        TypeError: ``max_bytes`` not an int. ValueError: negative.

    Example:
        >>> sorted(lowbit.buffer_cache())
        ['cached_bytes', 'hits', 'max_bytes', 'misses']
    """
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int)):
        raise TypeError(f"max_bytes: expected an int or None, got {type(max_bytes).__name__}")
    return dict(_core.buffer_cache(max_bytes))


def empty_buffer_cache() -> None:
    """Frees the cached result buffers (see :func:`buffer_cache`); the limit is kept."""
    _core.empty_buffer_cache()


def _attach_torch(strict: bool) -> None:
    """Switches to torch's OpenMP team (``strict``: always; else adaptive, see "auto"); when it
    cannot be found, raises (``strict``) or keeps the own pool."""
    import torch

    def fail(why: str) -> None:
        if strict:
            raise RuntimeError(f"set_thread_backend('torch'): {why}")
        _core.set_thread_backend("own")

    global _torch_runtime
    if not torch.backends.openmp.is_available():
        return fail("this torch build does not use OpenMP")
    if _torch_runtime is None:
        libs = sorted(glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.*")))
        if not libs:
            return fail("torch's libtorch_cpu library was not found next to torch")
        try:
            _torch_runtime = _core.attach_openmp(libs[0])
        except ValueError as e:
            return fail(str(e))
    _core.set_thread_backend("openmp" if strict else "openmp_adaptive")


def _torch_interop_loaded() -> None:
    """Called once when lowbit's torch ops load: the "auto" backend moves to torch's team."""
    if _thread_backend == "auto":
        _attach_torch(strict=False)


def _apply_env() -> None:
    env = os.environ.get("LOWBIT_ARCH")
    if env:
        try:
            _core.set_arch(env)
        except ValueError as e:
            raise ValueError(f"LOWBIT_ARCH: {e}") from None
