"""Shared benchmark helpers: timing through lowbit.Timer (median of repeats, interleaved peers),
tables, environment banner. Sizes print through lowbit.format_bytes (MiB).

``LOWBIT_BENCH_SMOKE=1`` (tests/test_benchmarks.py) makes every timing one short sample: the
benchmarks then only prove that they run and that their results check out, in seconds.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

from lowbit import Speedup, Timer, Timing, format_bytes

__all__ = ["SMOKE", "banner", "format_bytes", "interleaved", "median_time", "speedup_cell", "table", "timing_cell"]

SMOKE = os.environ.get("LOWBIT_BENCH_SMOKE") == "1"


def median_time(fn: Callable[[], object], repeat: int = 5, min_time: float = 0.05) -> float:
    """Median seconds per call of ``fn`` over ``repeat`` samples of at least ``min_time`` seconds
    each (short calls batched), after a warm-up call; warns (lowbit.TimingWarning) when noisy."""
    if SMOKE:
        repeat, min_time = 1, 0.0
    timer = Timer(repeats=repeat, min_sample_s=min_time)
    return timer.time_named({"fn": fn}, "benchmark")["fn"].median


def interleaved(fns: Mapping[str, Callable[[], object]], repeat: int = 7, min_time: float = 1e-3,
                budget_s: float | None = None, what: str = "benchmark") -> dict[str, Timing]:
    """Each function of ``fns`` timed interleaved (A B C A B C ...: machine load hits all alike) by
    lowbit.Timer; median and spread per name. Warns (lowbit.TimingWarning) when noisy."""
    if SMOKE:
        repeat, min_time, budget_s = 1, 0.0, None
    return Timer(repeats=repeat, min_sample_s=min_time, budget_s=budget_s).time_named(fns, what)


def timing_cell(t: Timing, scale: float = 1e3) -> str:
    """``median ±spread%`` in ms (``scale`` 1e3) for a table."""
    return f"{t.median * scale:.3f} ±{100 * t.spread:.0f}%"


def speedup_cell(base: Timing, t: Timing) -> str:
    """``base / t`` from medians with its quartile range, e.g. ``2.10x (1.95-2.31)``."""
    s = Speedup(base, t)
    return f"{s.ratio:.2f}x ({s.low:.2f}-{s.high:.2f})"


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
