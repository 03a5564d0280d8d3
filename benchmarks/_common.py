"""Shared benchmark helpers: best-of timing, tables, environment banner."""

from __future__ import annotations

import time
from typing import Callable, Sequence


def best_time(fn: Callable[[], object], repeat: int = 5, min_time: float = 0.05) -> float:
    """Best wall time of ``fn`` over ``repeat`` rounds, each round looping until ``min_time``."""
    fn()
    t = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t, 1e-9)
    inner = max(1, int(min_time / once))
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t) / inner)
    return best


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table with columns padded for reading in a terminal too."""
    cells = [[str(h) for h in headers]] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    width = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    fmt = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, width)) + " |"  # noqa: E731
    return "\n".join([fmt(cells[0]), "|" + "|".join("-" * (w + 2) for w in width) + "|"] + [fmt(r) for r in cells[1:]])


def banner() -> str:
    import platform

    import lowbit

    info = lowbit.cpu_info()
    try:
        import torch

        tv = torch.__version__
    except ImportError:
        tv = "absent"
    return (
        f"lowbit {info['version']} | {platform.processor() or platform.machine()} | ISAs {', '.join(info['available'])}"
        f" | threads {info['num_threads']} | torch {tv}"
    )
