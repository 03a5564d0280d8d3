"""Tests for lowbit.compare_formats: rows, totals, ordering of errors, pandas/matplotlib/torch inputs."""

from __future__ import annotations

import math
import subprocess
import sys

import lowbit
import numpy as np
import pytest


@pytest.fixture
def weights():
    rng = np.random.default_rng(7)
    return {"a": rng.standard_normal((32, 128)).astype(np.float32), "b": (rng.standard_normal((16, 64)) * 0.1).astype(np.float32)}


def test_rows_and_summary(weights):
    rows = lowbit.compare_formats(weights)
    assert len(rows) == 2 * len(lowbit.comparison.DEFAULT_FORMATS)
    for r in rows:
        w = weights[r["tensor"]]
        spec = next(s for s in lowbit.comparison.DEFAULT_FORMATS if lowbit.format_label(s) == r["format"])
        q = lowbit.comparison._quantize_weight(w, lowbit.comparison._spec(spec))
        assert r["nbytes"] == q.nbytes and r["numel"] == w.size
        err = q.dequantize().astype(np.float64) - w
        assert r["mse"] == pytest.approx(np.mean(err**2), rel=1e-9)
        assert r["sqnr_db"] == pytest.approx(10 * math.log10(np.sum(w.astype(np.float64) ** 2) / np.sum(err**2)), rel=1e-9)
    s = {r["format"]: r for r in rows.summary()}
    assert s["nf4"]["bits_per_weight"] == pytest.approx(8 * (32 * 128 / 2 + 16 * 64 / 2 + 4 * (64 + 16)) / (32 * 128 + 16 * 64))
    assert s["fp16"]["bits_per_weight"] == 16
    order = ["fp16", "bf16", "int8", "nf4", "ternary", "binary"]
    sq = [s[f]["sqnr_db"] for f in order]
    assert sq == sorted(sq, reverse=True)  # fewer bits, more error
    assert s["nf4"]["sqnr_db"] > s["int4 group_size=64"]["sqnr_db"] - 3  # NF4 at least as good as int4 on Gaussians
    assert "| nf4 " in rows.table() and "FormatComparison" in repr(rows)


def test_single_array_and_custom_specs():
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    rows = lowbit.compare_formats(x, ["uint8", {"dtype": "log2", "bits": 8, "label": "pow2"}, {"dtype": "int4", "group_size": 32}])
    assert [r["format"] for r in rows] == ["uint8", "pow2", "int4 group_size=32"]
    assert all(r["tensor"] == "x" for r in rows)
    assert lowbit.compare_formats(np.zeros(10, np.float32), ["nf4"])[0]["sqnr_db"] == math.inf


def test_bad_specs():
    x = np.ones(8, np.float32)
    with pytest.raises(TypeError, match="formats"):
        lowbit.compare_formats(x, [3])
    with pytest.raises(ValueError, match="formats"):
        lowbit.compare_formats(x, [])
    with pytest.raises(ValueError, match="option"):
        lowbit.compare_formats(x, [{"dtype": "int8", "bits": 3}])
    with pytest.raises(ValueError, match="dtype"):
        lowbit.compare_formats(x, ["int3"])


def test_pandas_and_plot(weights):
    pd = pytest.importorskip("pandas")
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    rows = lowbit.compare_formats(weights, ["int8", "nf4"])
    df = rows.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == 4
    assert list(rows.to_pandas(summary=True)["format"]) == ["int8", "nf4"]
    ax = rows.plot()
    assert ax.get_xlabel().startswith("bits per weight")
    assert len(ax.collections) == 2
    rows.plot(ax=ax, metric="mse")
    with pytest.raises(ValueError, match="metric"):
        rows.plot(metric="psnr")
    import matplotlib.pyplot as plt

    plt.close("all")


def test_torch_module():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    rows = lowbit.compare_formats(m, ["nf4"])
    assert [r["tensor"] for r in rows] == ["0.weight", "2.weight"]
    with pytest.raises(ValueError, match="Linear"):
        lowbit.compare_formats(torch.nn.ReLU(), ["nf4"])
    x = torch.randn(16, 64, generator=torch.Generator().manual_seed(1))
    before = [p.detach().clone() for p in m.parameters()]
    rows = lowbit.compare_formats(m, ["fp16", "int8", "nf4", "binary"], inputs=x)
    for p, q in zip(m.parameters(), before):
        assert torch.equal(p, q)  # weights restored
    s = {r["format"]: r for r in rows.summary()}
    assert s["fp16"]["output_cosine"] > 0.99999 and s["fp16"]["output_rel_err"] < 1e-3
    assert s["fp16"]["output_cosine"] > s["int8"]["output_cosine"] > s["nf4"]["output_cosine"] > s["binary"]["output_cosine"]
    assert "output cos" in rows.table()
    with pytest.raises(ValueError, match="inputs"):
        lowbit.compare_formats(np.ones((2, 32), np.float32), ["nf4"], inputs=x)


def test_minilm_weights_if_installed():
    from lowbit.demo import _data

    try:
        w = _data.minilm_weights()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        pytest.skip(str(e))
    layer0 = {k: v for k, v in w.items() if k.startswith("encoder.layer.0.") and v.ndim == 2}
    s = {r["format"]: r for r in lowbit.compare_formats(layer0, ["nf4", "binary"]).summary()}
    assert 15 < s["nf4"]["sqnr_db"] < 30 and s["binary"]["sqnr_db"] < 8


def test_import_does_not_import_pandas_or_matplotlib():
    code = "import sys, lowbit; print(any(m in sys.modules for m in ('pandas', 'matplotlib', 'torch')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
