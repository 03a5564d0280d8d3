"""Every benchmark script runs end to end on its cheapest arguments (LOWBIT_BENCH_SMOKE=1: one short
timing sample each), so a refactor that breaks a benchmark (a Timing used as a float, a renamed
helper) fails here instead of on the next person who measures. Timings are not checked: the scripts
check their own results against the reference before they time them, and those checks run here.
benchmarks/calibrate_parallel.py runs in tests/test_distributed.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lowbit
import pytest

ROOT = Path(__file__).resolve().parents[1]
# the lowbit this test imported (installed, or the source tree on PYTHONPATH): the scripts import the same
PYTHONPATH = str(Path(lowbit.__file__).resolve().parents[1])

CASES = {
    "attention": ["bench_attention.py", "--threads", "1", "--rounds", "1", "--shapes",
                  "MiniLM b8 x128,GPT-2 decode b4 cache 512"],
    "conv": ["bench_conv.py", "--batch", "1", "--rounds", "1", "--threads", "2"],
    "conv_depthwise": ["bench_conv.py", "--depthwise", "--batch", "1", "--rounds", "1", "--threads", "2"],
    "models": ["bench_models.py", "--models", "digits,mobilenet,minilm", "--batches", "1", "--seq", "16",
               "--rounds", "1", "--threads", "2", "--ablate"],
    "gpt2": ["bench_models.py", "--models", "gpt2", "--rounds", "1", "--threads", "2"],
    "quantize": ["bench_quantize.py", "--quick", "--threads", "1"],
    "observers": ["bench_observers.py", "--quick", "--threads", "1"],
    "matmul": ["bench_matmul.py", "--quick", "--threads", "1", "--repeat", "1", "--min-time", "0"],
    "linear_4bit": ["bench_linear_4bit.py", "--quick", "--threads", "1"],
    "metrics": ["bench_metrics.py", "--quick", "--threads", "1"],
    "onnx": ["bench_onnx.py", "--models", "digits", "--repeats", "1"],
    "gptq": ["bench_gptq.py", "--models", "digits", "--layer-size", "256", "--repeats", "1",
             "--layer-schemes", "int4"],
    "pruning": ["bench_pruning.py", "--models", "digits", "--threads", "2"],
    "checkpoint": ["bench_checkpoint.py", "--gb", "0.01"],
    "torch_layers": ["bench_torch_layers.py", "--threads", "2"],
}
NEEDS = {"onnx": "onnxruntime", "models": "transformers", "gpt2": "transformers"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_benchmark_runs(name: str, tmp_path: Path) -> None:
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    script, *args = CASES[name]
    if script == "bench_matmul.py":
        args += ["--plot", str(tmp_path / "matmul.png")]
    env = dict(os.environ, LOWBIT_BENCH_SMOKE="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join(p for p in (PYTHONPATH, os.environ.get("PYTHONPATH")) if p))
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"{script} {' '.join(args)} failed:\n{out[-4000:]}"
    assert r.stdout.strip(), f"{script} printed nothing:\n{out[-2000:]}"
