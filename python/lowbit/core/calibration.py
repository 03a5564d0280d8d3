"""Calibration: run a function over a dataset so that observers see every batch.

Public API. The torch-model flavour (observers attached to layers with forward hooks) builds on
:func:`calibrate`. tqdm is optional and imported lazily.

Splitting calibration over processes: give each worker a shard of the data and its own observers,
return ``state_dict()`` from each, and fold them with ``Observer.from_state_dict(d)`` and
``merge``; min/max and histogram observers then equal a single pass exactly. With PyTorch,
``quantize_model(..., process_group="world")`` does this over ``torch.distributed``
(:mod:`lowbit.interop.distributed`; ``benchmarks/calibrate_parallel.py`` runs it under torchrun).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Callable

from .observers import Observer

__all__ = ["calibrate"]


def _check_observers(observers: Any) -> None:
    if isinstance(observers, Observer):
        return
    values = observers.values() if isinstance(observers, Mapping) else observers
    if not isinstance(values, Iterable) or not all(isinstance(o, Observer) for o in values):
        raise TypeError("observers: expected an Observer, or a list/tuple/dict of Observers")


def _progress(data: Any, enabled: bool, desc: str = "calibrate", unit: str = "batch") -> Any:
    if not enabled:
        return data
    try:
        from tqdm.auto import tqdm  # optional dependency
    except ImportError:
        return data
    total = len(data) if hasattr(data, "__len__") else None
    return tqdm(data, total=total, desc=desc, unit=unit)


def calibrate(fn: Callable[[Any], Any], data: Iterable, observers: Any, *, progress: bool = True) -> Any:
    """Runs ``fn(batch)`` for every batch of ``data`` and feeds the observers.

    ``fn`` either updates the observers itself (e.g. through forward hooks) and returns None, or
    returns what they should see: an array/tensor for a single observer, or a dict name -> array
    for a dict of observers (names missing from ``observers`` are an error, observers missing from
    the result are left alone).

    Args:
        fn: called with each batch.
        data: any iterable of batches (a list, a generator, a torch DataLoader, ...).
        observers: an Observer, a list/tuple of them or a dict name -> Observer.
        progress: show a tqdm progress bar when tqdm is installed (silently none otherwise).

    Returns:
        ``observers``, updated.

    Raises:
        TypeError: ``fn`` not callable, ``data`` not iterable, ``observers`` not observers, or a
            result of ``fn`` that does not fit ``observers``.
        KeyError: ``fn`` returned a name that ``observers`` lacks.
        ValueError: ``data`` yielded no batch (the observers would have seen nothing).

    Example:
        >>> import numpy as np, lowbit
        >>> obs = lowbit.MinMaxObserver()
        >>> batches = [np.float32([1.0, -2.0]), np.float32([4.0])]
        >>> lowbit.calibrate(lambda b: b * 2, batches, obs, progress=False).max_val
        8.0
    """
    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
    if not isinstance(data, Iterable):
        raise TypeError(f"data: expected an iterable of batches, got {type(data).__name__}")
    _check_observers(observers)
    seen = 0
    for batch in _progress(data, progress):
        seen += 1
        out = fn(batch)
        if out is None:
            continue
        if isinstance(out, Mapping):
            if not isinstance(observers, Mapping):
                raise TypeError("fn: returned a dict, but observers is not a dict of observers")
            for name, value in out.items():
                if name not in observers:
                    raise KeyError(f"fn: returned {name!r}, which has no observer")
                observers[name].update(value)
        elif isinstance(observers, Observer):
            observers.update(out)
        else:
            raise TypeError("fn: returned an array for several observers; return a dict name -> array instead")
    if not seen:
        raise ValueError("data: no batches; calibration needs at least one batch (an exhausted generator?)")
    return observers
