"""Every ```python block of README.md runs verbatim, on its own (each defines the names it uses)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)
# Blocks using the torch API need the torch extra (and, for reports, pandas/matplotlib).
TORCH = re.compile(r"\btorch\b|quantize_model|prepare_qat|lowbit\.compare\(|sensitivity|auto_mixed_precision")


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_block_runs(i, tmp_path):
    code = BLOCKS[i]
    if TORCH.search(code):
        pytest.importorskip("torch")
    # A fresh interpreter in tmp_path (a block may write files such as model.lowbit); Agg: plots
    # never open a window.
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "MPLBACKEND": "Agg"})
    assert res.returncode == 0, f"README block {i} failed:\n{code}\n{res.stderr[-3000:]}"
