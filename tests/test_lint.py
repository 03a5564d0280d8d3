"""ruff (the project's linter, configured in pyproject.toml) is clean on every Python source tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = ["python", "tests", "benchmarks", "notebooks"]


def test_ruff_is_clean():
    pytest.importorskip("ruff")  # the `test` extra installs it
    res = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", *TREES], cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode == 0, f"ruff found problems:\n{res.stdout}{res.stderr}"
