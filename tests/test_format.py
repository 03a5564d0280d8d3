"""The C++ sources follow the repository's .clang-format (cpp/ and benchmarks/*.cpp)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CPP_SUFFIXES = {".cpp", ".hpp", ".h", ".cc"}


def cpp_files() -> list[Path]:
    files = [p for p in (ROOT / "cpp").rglob("*") if p.suffix in CPP_SUFFIXES and p.is_file()]
    files += sorted((ROOT / "benchmarks").glob("*.cpp"))
    return sorted(files)


def test_cpp_sources_are_clang_formatted():
    exe = shutil.which("clang-format")
    if exe is None:  # .ci/setup installs Debian's clang-format, so CI never skips this
        pytest.skip("clang-format is not installed")
    files = cpp_files()
    assert len(files) > 50, f"expected the C++ tree under {ROOT / 'cpp'}, found {len(files)} files"
    r = subprocess.run(
        [exe, "--dry-run", "--Werror", "--style=file", *map(str, files)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0, "C++ files differ from .clang-format (run clang-format -i on them):\n" + r.stderr[-4000:]
