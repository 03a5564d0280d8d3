"""Tests for lowbit.mixed_precision (sensitivity, auto_mixed_precision) on a tiny MLP with one fragile
layer: rankings against direct one-layer quantization, budgets honoured, configs that rebuild the
chosen model, bad input."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import lowbit
from lowbit import metrics


@pytest.fixture
def fragile():
    """fc2 has a huge outlier weight in every row: int4 per-tensor/per-channel scales then crush
    the rest of its weights, so fc2 is by far the most sensitive layer."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8)).eval()
    with torch.no_grad():
        model[2].weight[:, 0] = 4.0
    data = [torch.randn(32, 16) for _ in range(2)]
    return model, data


def output_sqnr(model, q, data):
    with torch.no_grad():
        return metrics.sqnr(torch.cat([model(x) for x in data]), torch.cat([q(x) for x in data]))


def test_sensitivity_ranks_layers_and_matches_direct_quantization(fragile):
    model, data = fragile
    s = lowbit.sensitivity(model, data, {"weight": "int4"}, progress=False)
    assert s.most_sensitive(1) == ["2"]
    assert [r["layer"] for r in s.rows] == s.most_sensitive(3)
    assert s.metric == "output SQNR (dB)" and s.base == math.inf
    for r in s.rows:
        others = tuple(n for n in ("0", "2", "4") if n != r["layer"])
        q = lowbit.quantize_model(model, lowbit.QuantConfig(weight="int4", exclude=others), progress=False)
        assert r["score"] == pytest.approx(output_sqnr(model, q, data), rel=1e-9)
        assert r["weight"] == "int4" and r["type"] == "QuantLinear"
    scores = [r["score"] for r in s.rows]
    assert scores == sorted(scores)
    assert "most sensitive first" in str(s) and "<table>" in s._repr_html_()


def test_sensitivity_with_eval_fn_and_exports(fragile, tmp_path):
    model, data = fragile
    calls = []

    def score(m):
        calls.append(1)
        with torch.no_grad():
            return 100 * metrics.cosine_similarity(model(data[0]), m(data[0]))

    s = lowbit.sensitivity(model, data, {"weight": "int4"}, metric=score, progress=False)
    assert s.metric == "score" and s.base == pytest.approx(100.0)
    assert len(calls) == 1 + 3
    assert s.rows[0]["layer"] == "2" and s.rows[0]["drop"] > s.rows[-1]["drop"] >= -1e-9
    cos = lowbit.sensitivity(model, data, {"weight": "int4"}, metric="cosine", progress=False)
    assert cos.most_sensitive(1) == ["2"]
    pd = pytest.importorskip("pandas")
    assert isinstance(s.to_dataframe(), pd.DataFrame)
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    plt.close(s.plot(tmp_path / "s.png"))
    assert (tmp_path / "s.png").exists()


def test_auto_mixed_precision_meets_max_drop_and_rebuilds(fragile):
    model, data = fragile
    res = lowbit.auto_mixed_precision(model, data, max_drop=0.5, progress=False, timing=False)
    assert set(res.choice) == {"0", "2", "4"}
    assert res.choice["2"] != "int4"  # the fragile layer is upgraded first
    assert "int4" in res.choice.values()  # and the robust ones stay small
    drop = 100 - 100 * res.report.output_cosine
    assert drop <= 0.5 + 1e-9
    rebuilt = lowbit.quantize_model(model, res.config, progress=False)
    with torch.no_grad():
        assert torch.equal(rebuilt(data[0]), res.model(data[0]))
    for name, c in res.choice.items():
        layer = res.model.get_submodule(name)
        if c is None:
            assert type(layer) is nn.Linear
        else:
            assert layer.weight_dtype == c
    assert res.sensitivity.rows and isinstance(res.report, lowbit.QuantReport)


def test_auto_mixed_precision_target_size(fragile):
    model, data = fragile
    all4 = lowbit.quantize_model(model, lowbit.QuantConfig(weight="int4"), progress=False)
    floor = metrics.model_nbytes(all4)
    with pytest.raises(ValueError, match="target_size: .* below the smallest model"):
        lowbit.auto_mixed_precision(model, data, target_size=floor - 1, progress=False)
    budget = floor + 3000
    res = lowbit.auto_mixed_precision(model, data, target_size=budget, progress=False, timing=False)
    assert res.report.bytes_quant <= budget
    assert res.choice["2"] in ("int8", None)  # the budget goes to the fragile layer
    richer = lowbit.auto_mixed_precision(model, data, target_size=metrics.model_nbytes(model), progress=False,
                                         timing=False)
    assert all(c is None for c in richer.choice.values())  # everything fits in float
    with pytest.warns(UserWarning, match="no choice within target_size"):
        lowbit.auto_mixed_precision(model, data, max_drop=0.0, target_size=floor, progress=False, timing=False)


def test_bad_input(fragile):
    model, data = fragile
    with pytest.raises(ValueError, match="give max_drop and/or target_size"):
        lowbit.auto_mixed_precision(model, data)
    with pytest.raises(ValueError, match="candidates"):
        lowbit.auto_mixed_precision(model, data, candidates=("int2",), max_drop=1)
    with pytest.raises(ValueError, match="at least one quantized dtype"):
        lowbit.auto_mixed_precision(model, data, candidates=(None,), max_drop=1)
    with pytest.raises(ValueError, match="metric: expected one of"):
        lowbit.sensitivity(model, data, metric="accuracy", progress=False)
    with pytest.raises(ValueError, match="data: no batches"):
        lowbit.sensitivity(model, [], progress=False)
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
        lowbit.sensitivity("model", data, progress=False)


def test_progress_bar_runs(fragile, capsys):
    pytest.importorskip("tqdm")
    model, data = fragile
    lowbit.sensitivity(model, data, progress=True)
    assert "sensitivity" in capsys.readouterr().err


def test_public_names_are_the_functions():
    import importlib

    importlib.import_module("lowbit.mixed_precision")
    assert callable(lowbit.sensitivity) and callable(lowbit.auto_mixed_precision) and callable(lowbit.compare)
