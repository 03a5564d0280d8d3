"""Shared fixtures: force every ISA the CPU supports; fail the run if a best-ISA path never ran."""

from __future__ import annotations

import lowbit
import numpy as np
import pytest
from lowbit import _core

ALL_ISAS = ["scalar", "avx2", "avxvnni", "avx512", "avx512vnni", "amx", "neon", "neondot", "i8mm"]
AVAILABLE = lowbit.cpu_info()["available"]
# The kernel each op runs at the session's level: the best one, or the one LOWBIT_ARCH allows when
# the user forces a lower ISA (tests that prove a best-ISA path ran then expect that one).
SESSION_OPS = dict(lowbit.cpu_info()["ops"])


@pytest.fixture(params=ALL_ISAS)
def isa(request):
    """Runs the test once per ISA, with every op forced to that ISA's kernels (or lower)."""
    name = request.param
    if name not in AVAILABLE:
        pytest.skip(f"{name} is not supported on this CPU")
    with lowbit.arch(name):
        yield name


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def best_isa_with_kernel(op: str) -> str:
    """The ISA whose kernel `op` runs at the session's level (LOWBIT_ARCH, if set, caps it)."""
    return SESSION_OPS[op]


def pytest_sessionfinish(session, exitstatus):
    """Every op that the tests exercised must have run its best kernel for this CPU at least once."""
    if exitstatus != 0:
        return
    calls = {op: dict(c) for op, c in _core.kernel_calls()}
    never = [
        f"{op} (best: {best_isa_with_kernel(op)})"
        for op, c in calls.items()
        if sum(c.values()) > 0 and c.get(best_isa_with_kernel(op), 0) == 0
    ]
    if never:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            "FAILED: the best ISA kernel never ran for: " + ", ".join(never), red=True
        )
        session.exitstatus = 1
