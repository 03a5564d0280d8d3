"""nn.EmbeddingBag with int8 rows (lowbit.nn.QuantEmbeddingBag, QuantConfig(embedding="int8")): the
result equals torch's EmbeddingBag on the dequantized table for every mode and argument; save / load,
summary, ONNX export and torch.compile cover it."""

from __future__ import annotations

import itertools
import warnings

import lowbit
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = nn.functional


@pytest.mark.parametrize("mode,padding_idx,last,weighted,two_d",
                         [c for c in itertools.product(["sum", "mean", "max"], [None, 3], [False, True], [False, True],
                                                       [False, True])
                          if not (c[0] != "sum" and c[3]) and not (c[4] and c[2])])  # weights: sum; last offset: 1-D
def test_bag_equals_torch_on_the_dequantized_table(mode, padding_idx, last, weighted, two_d):
    torch.manual_seed(0)
    bag = nn.EmbeddingBag(50, 8, mode=mode, padding_idx=padding_idx, include_last_offset=last)
    q = lowbit.nn.QuantEmbeddingBag.from_float(bag)
    ref = nn.EmbeddingBag(50, 8, mode=mode, padding_idx=padding_idx, include_last_offset=last)
    with torch.no_grad():
        ref.weight.copy_(q.dequantized_weight())
    if two_d:
        idx, offsets = torch.randint(0, 50, (4, 6)), None
        idx[1, 2] = 3
    else:
        idx, offsets = torch.randint(0, 50, (30,)), torch.tensor([0, 4, 4, 17, 30] if last else [0, 4, 4, 17])
        idx[5] = 3
    psw = torch.rand(idx.shape) if weighted else None
    with torch.no_grad():
        torch.testing.assert_close(q(idx, offsets, psw), ref(idx, offsets, per_sample_weights=psw), rtol=0, atol=0)
    w = bag.weight.detach()
    assert float((q.dequantized_weight() - w).abs().max()) <= float(w.abs().max()) / 254 + 1e-6


def test_bag_bad_input():
    q = lowbit.nn.QuantEmbeddingBag.from_float(nn.EmbeddingBag(10, 4))
    with pytest.raises(TypeError, match="int32/int64"):
        q(torch.rand(3), torch.tensor([0]))
    with pytest.raises(IndexError, match="out of range"):
        q(torch.tensor([1, 10]), torch.tensor([0]))
    with pytest.raises(ValueError, match="max_norm"):
        lowbit.nn.QuantEmbeddingBag.from_float(nn.EmbeddingBag(10, 4, max_norm=1.0))
    with pytest.raises(ValueError, match="mode"):
        lowbit.nn.QuantEmbeddingBag(10, 4, mode="median")


class _Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.bag = nn.EmbeddingBag(500, 16, mode="mean")
        self.fc = nn.Linear(16, 3)

    def forward(self, idx, offsets):
        return self.fc(self.bag(idx, offsets))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inductor imports torch.jit internals
def test_bag_models_quantize_save_load_export_and_compile(tmp_path):
    torch.manual_seed(0)
    model = _Classifier().eval()
    q = lowbit.quantize_model(model, {"embedding": "int8"}, progress=False)
    assert isinstance(q.bag, lowbit.nn.QuantEmbeddingBag)
    assert "bags reduced by mean" in lowbit.summary(q).rows[0]["action"]
    plain = lowbit.quantize_model(model, progress=False)  # without embedding="int8": float, and summary says so
    assert type(plain.bag) is nn.EmbeddingBag and "kept float" in lowbit.summary(plain).rows[0]["action"]
    idx, offsets = torch.randint(0, 500, (40,)), torch.tensor([0, 7, 20, 33])
    with torch.no_grad():
        got = q(idx, offsets)
        assert float(F.cosine_similarity(got.flatten(), model(idx, offsets).flatten(), dim=0)) > 0.999
    lowbit.save(q, tmp_path / "bag.lowbit")
    back = lowbit.load(tmp_path / "bag.lowbit", _Classifier().eval())
    with torch.no_grad():
        assert torch.equal(back(idx, offsets), got)
        torch._dynamo.reset()
        torch.testing.assert_close(torch.compile(q)(idx, offsets), got)
    ort = pytest.importorskip("onnxruntime")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lowbit.export_onnx(q, (idx, offsets), tmp_path / "bag.onnx")
    sess = ort.InferenceSession(str(tmp_path / "bag.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out = sess.run(None, {names[0]: idx.numpy(), names[1]: offsets.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(out), got, rtol=1e-5, atol=1e-5)
