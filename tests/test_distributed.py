"""lowbit on torch.distributed (issue 17): two gloo ranks on localhost, each a subprocess bounded
in time. The checks themselves run in tests/_dist_worker.py (one process per rank)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():  # pragma: no cover - CPU wheels ship gloo
    pytest.skip("torch.distributed is not available", allow_module_level=True)

WORKER = Path(__file__).with_name("_dist_worker.py")
import lowbit  # noqa: E402

# the lowbit this test imported (installed, or the source tree on PYTHONPATH): the workers import the same
PYTHONPATH = str(Path(lowbit.__file__).resolve().parents[1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        p for p in (PYTHONPATH, os.environ.get("PYTHONPATH")) if p))
    env.update(extra)
    return env


def test_torchrun_calibration_gptq_sensitivity_mismatch_and_failing_rank():
    """Under torchrun: merged calibration (min/max, histogram) and GPTQ statistics equal one process
    over all shards; sensitivity / auto_mixed_precision give the single-process report; mismatched
    configs, weights and data raise RankMismatchError on every rank; a rank whose batch fails
    raises its error and the other rank names it."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(WORKER), "main"]
    r = subprocess.run(cmd, env=_env(LOWBIT_DIST_TIMEOUT="60"), capture_output=True, text=True, timeout=150)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    for check in ("calibration minmax", "calibration histogram", "gptq hessian", "gptq model", "sensitivity",
                  "auto_mixed_precision", "mismatch", "failing rank"):
        assert out.count(f"PASS {check}") == 2, f"{check} did not pass on both ranks:\n{out[-4000:]}"


def _launch(scenario: str, timeout_s: float) -> str:
    """Starts two ranks as torchrun would (RANK, WORLD_SIZE, MASTER_*), without torchrun's agent
    (which would kill rank 0 as soon as rank 1 dies); returns rank 0's output."""
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, str(WORKER), scenario], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                                       MASTER_PORT=port, LOWBIT_DIST_TIMEOUT=str(timeout_s)))
             for r in range(2)]
    try:
        out, _ = procs[0].communicate(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    assert procs[0].returncode == 0, out[-4000:]
    return out


def _seconds(out: str, scenario: str) -> float:
    line = next(x for x in out.splitlines() if x.startswith(f"PASS {scenario} after "))
    return float(line.split()[3])


def test_dead_rank_is_an_error_at_once():
    out = _launch("die", timeout_s=30)
    assert _seconds(out, "die") < 20, out  # seen when the peer's connection closes, not at the timeout


def test_missing_rank_is_an_error_at_the_timeout():
    out = _launch("hang", timeout_s=3)
    assert 2.5 < _seconds(out, "hang") < 20, out


def test_process_group_argument_is_checked():
    import lowbit

    m = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(TypeError, match="process_group"):
        lowbit.quantize_model(m, process_group=3)
    with pytest.raises(ValueError, match="process_group"):
        lowbit.quantize_model(m, process_group="everyone")
    if not torch.distributed.is_initialized():
        with pytest.raises(ValueError, match="not initialized"):
            lowbit.sensitivity(m, torch.randn(2, 4), process_group="world")


def test_timeout_setting_is_checked(monkeypatch):
    from lowbit.interop import distributed as ld

    monkeypatch.setenv("LOWBIT_DIST_TIMEOUT", "0")
    with pytest.raises(ValueError, match="LOWBIT_DIST_TIMEOUT"):
        ld.timeout_s()
    monkeypatch.setenv("LOWBIT_DIST_TIMEOUT", "2.5")
    assert ld.timeout_s() == 2.5


def test_calibrate_parallel_benchmark_runs_and_agrees():
    """benchmarks/calibrate_parallel.py (torchrun at 1 and 2 processes, tiny sizes): same model and
    sensitivity report at both process counts."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "calibrate_parallel.py"
    cmd = [sys.executable, str(script), "--procs", "1", "2", "--batches", "4", "--width", "32", "--layers", "2",
           "--eval-batches", "2", "--repeats", "1", "--timeout", "120"]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=200)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    rows = [line for line in r.stdout.splitlines() if line.startswith("|") and line.split("|")[1].strip() in "12"]
    assert len(rows) == 2 and all(line.split("|")[6].strip() == line.split("|")[7].strip() == "yes" for line in rows), \
        r.stdout


def test_model_parts_samples_inside_large_weights() -> None:
    """The fingerprint's sampled indices stay inside weights of more than 2**24 elements (a float32
    linspace rounded the last index of GPT-2's 50257 x 768 embedding past its end)."""
    from types import SimpleNamespace

    import torch
    from lowbit.interop import distributed as dist

    n = 2**24 + 4  # float32(n - 1) rounds up to n
    w = torch.arange(n, dtype=torch.int32).to(torch.int8)
    parts = dist.model_parts(None, [("big", SimpleNamespace(weight=w))])
    picked = parts["weights"][0]
    assert len(picked) == 16
    assert picked[0] == float(w[0]) and picked[-1] == float(w[-1])
