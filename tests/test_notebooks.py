"""Executes every notebook in notebooks/ from a clean kernel (the current interpreter) with
nbclient, so that the README's test command (pytest -q) covers them; each must finish in under
two minutes without an error and must be committed without outputs."""

from __future__ import annotations

import pathlib

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_notebooks_exist():
    names = {p.stem for p in NOTEBOOKS}
    assert {"01_quickstart", "02_calibration", "03_ptq_cnn", "04_transformer", "05_qat",
            "06_mixed_precision"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs(path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: clear the outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    nb = nbformat.read(path, as_version=4)
    # "python3" resolves to ipykernel's own spec, whose "python" jupyter_client replaces with
    # sys.executable: the kernel runs in this interpreter's environment. A failing cell raises
    # CellExecutionError with the traceback.
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
