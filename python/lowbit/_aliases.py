"""Module paths from before the layer sub-packages (``lowbit.packed4``, ``lowbit.models``, ...)
still import: each resolves to the module at its new home. Private.

Names that are also functions of ``lowbit`` (``quantize``, ``convert``) are not aliased: importing
them as modules would replace the functions on the package.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

MOVED = {
    "lowbit.formats": "lowbit.core.formats",
    "lowbit.metrics": "lowbit.core.metrics",
    "lowbit.observers": "lowbit.core.observers",
    "lowbit.reference": "lowbit.core.reference",
    "lowbit.schemes": "lowbit.core.schemes",
    "lowbit.config": "lowbit.core.config",
    "lowbit.calibration": "lowbit.core.calibration",
    "lowbit.cpu": "lowbit.core.cpu",
    "lowbit.matmul": "lowbit.core.matmul",
    "lowbit.packed4": "lowbit.core.linear_4bit",
    "lowbit.models": "lowbit.demo.models",
    "lowbit.serialization": "lowbit.interop.serialization",
    "lowbit.report": "lowbit.evaluation.report",
    "lowbit.mixed_precision": "lowbit.evaluation.mixed_precision",
    "lowbit.comparison": "lowbit.evaluation.comparison",
}


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: Any) -> Any:
        module = importlib.import_module(MOVED[spec.name])
        _SPECS[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: Any) -> None:
        # the import system stamped the alias's spec on the module: give it back its own, so
        # that relative imports inside it keep resolving against its real package
        module.__spec__ = _SPECS[module.__name__]


_SPECS: dict[str, Any] = {}


def install() -> None:
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
