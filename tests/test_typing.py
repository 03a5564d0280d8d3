"""The typed surface: _core.pyi covers the compiled module, py.typed ships, dir(lowbit) lists the lazy API."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import lowbit
from lowbit import _core

PKG = Path(lowbit.__file__).resolve().parent  # the installed package: what the wheel shipped


def _stub() -> ast.Module:
    return ast.parse((PKG / "_core.pyi").read_text())


def test_wheel_ships_the_stub_and_py_typed():
    assert (PKG / "py.typed").is_file()
    assert (PKG / "_core.pyi").is_file()


def test_stub_covers_every_name_of_the_compiled_module():
    stub = _stub()
    funcs = {n.name: n for n in stub.body if isinstance(n, ast.FunctionDef)}
    attrs = {n.target.id for n in stub.body if isinstance(n, ast.AnnAssign)}
    classes = {n.name: n for n in stub.body if isinstance(n, ast.ClassDef)}
    public = {n for n in dir(_core) if not n.startswith("__")}
    assert set(funcs) | attrs | set(classes) == public
    for name, node in funcs.items():
        assert callable(getattr(_core, name)), name
        # pybind11 puts the real signature on the docstring's first line: same parameter names.
        first = getattr(_core, name).__doc__.strip().splitlines()[0]
        doc_params = re.findall(r"[(,]\s*(\w+):", first)
        assert [a.arg for a in node.args.args] == doc_params, name
    for name, node in classes.items():
        assert isinstance(getattr(_core, name), type), name
        for meth in (n for n in node.body if isinstance(n, ast.FunctionDef)):
            first = getattr(getattr(_core, name), meth.name).__doc__.strip().splitlines()[0]
            doc_params = re.findall(r"[(,]\s*(\w+):", first)  # self included, as in the stub
            assert [a.arg for a in meth.args.args] == doc_params, f"{name}.{meth.name}"
    for name in attrs:
        assert not callable(getattr(_core, name)), name


def test_dir_lists_the_lazy_torch_api_without_importing_torch():
    code = (
        "import sys, lowbit\n"
        "names = dir(lowbit)\n"
        "missing = [n for n in ('quantize_model', 'prepare_qat', 'convert', 'save', 'load', 'nn', 'compare',\n"
        "                       'QuantReport', 'auto_mixed_precision', 'quantize', 'QTensor') if n not in names]\n"
        "assert not missing, missing\n"
        "assert names == sorted(names)\n"
        "assert 'torch' not in sys.modules, 'dir(lowbit) imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_all_names_are_listed_by_dir():
    assert set(lowbit.__all__) <= set(dir(lowbit))
