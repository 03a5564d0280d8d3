"""lowbit.save / lowbit.load: round trips, fresh skeletons, corrupted files, other architectures."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

import lowbit
from lowbit.models import DigitsCNN


@pytest.fixture
def x():
    return torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(3))


@pytest.fixture(params=["dynamic", "static", None])
def qmodel(request, x):
    torch.manual_seed(0)
    cfg = lowbit.QuantConfig(activation=request.param, per_layer={"fc2": {"weight": "int4"}})
    return lowbit.quantize_model(DigitsCNN().eval(), cfg, calib_data=[x], progress=False)


def test_save_load_into_fresh_skeleton(tmp_path, qmodel, x):
    path = tmp_path / "digits.safetensors"
    lowbit.save(qmodel, path)
    torch.manual_seed(123)  # a skeleton with different random float weights
    loaded = lowbit.load(path, DigitsCNN().eval())
    assert torch.equal(loaded(x), qmodel(x))
    assert str(lowbit.summary(loaded)) == str(lowbit.summary(qmodel))
    assert loaded.fc2.weight_dtype == "int4"
    # without a skeleton: only on request, and the saved class is rebuilt (it takes no arguments)
    with pytest.raises(ValueError, match="pass `model=`.*trust_model_class=True"):
        lowbit.load(str(path))
    assert torch.equal(lowbit.load(str(path), trust_model_class=True)(x), qmodel(x))
    # loading into an already quantized model of the same layout works too
    assert torch.equal(lowbit.load(path, loaded)(x), qmodel(x))


def test_file_metadata(tmp_path, qmodel):
    from safetensors import safe_open

    path = tmp_path / "m.safetensors"
    lowbit.save(qmodel, path)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["lowbit"])
        assert f.get_tensor("fc1.weight_int8").dtype == torch.int8
    assert meta["format"] == "lowbit.model/1" and meta["lowbit_version"] == lowbit.__version__
    assert meta["model_class"] == "lowbit.demo.models:DigitsCNN"
    assert (
        meta["layers"]["fc2"]["weight"]["format"] == "int4"
        and meta["config"]["per_layer"]["fc2"]["weight"]["format"] == "int4"
    )


def test_state_dict_round_trip(qmodel, x):
    torch.manual_seed(7)
    fresh = lowbit.quantize_model(
        DigitsCNN().eval(),
        lowbit.QuantConfig(activation=qmodel.fc1.activation, per_layer={"fc2": {"weight": "int4"}}),
        calib_data=[x * 3],
        progress=False,
    )
    assert not torch.equal(fresh(x), qmodel(x))
    fresh.load_state_dict(qmodel.state_dict())
    assert torch.equal(fresh(x), qmodel(x))


def test_corrupted_and_foreign_files(tmp_path, qmodel):
    good = tmp_path / "good.safetensors"
    lowbit.save(qmodel, good)
    raw = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated.safetensors"):
        lowbit.load(truncated, DigitsCNN())
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="garbage.safetensors"):
        lowbit.load(garbage, DigitsCNN())
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"a": torch.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="plain.safetensors.*no lowbit metadata"):
        lowbit.load(plain, DigitsCNN())
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        lowbit.load(tmp_path / "missing.safetensors", DigitsCNN())


def test_other_architecture_is_rejected_and_left_untouched(tmp_path, qmodel):
    path = tmp_path / "m.safetensors"
    lowbit.save(qmodel, path)
    wider = DigitsCNN(width=8)
    with pytest.raises(ValueError, match=r"m.safetensors.*layer 'conv1' was Conv2d\(1, 16"):
        lowbit.load(path, wider)
    other = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="layer 'conv1'.*does not have"):
        lowbit.load(path, other)
    hidden = DigitsCNN(hidden=32)
    with pytest.raises(ValueError, match="layer 'fc1'"):
        lowbit.load(path, hidden)
    assert type(hidden.conv1) is torch.nn.Conv2d  # nothing replaced on failure

    class Extra(DigitsCNN):
        def __init__(self):
            super().__init__()
            self.extra = torch.nn.Linear(3, 3)

    extra = Extra()
    with pytest.raises(ValueError, match=r"missing tensors \['extra.weight'"):
        lowbit.load(path, extra)
    assert type(extra.conv1) is torch.nn.Conv2d


def test_qat_models_must_be_converted_first(tmp_path):
    qat = lowbit.prepare_qat(DigitsCNN(), lowbit.QuantConfig(activation="static"))
    with pytest.raises(ValueError, match="convert"):
        lowbit.save(qat, tmp_path / "q.safetensors")


def test_save_load_with_quantized_embedding(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(20, 8), torch.nn.Linear(8, 3))
    q = lowbit.quantize_model(model, lowbit.QuantConfig(embedding="int8"))
    path = tmp_path / "emb.safetensors"
    lowbit.save(q, path)
    idx = torch.tensor([[1, 5, 19]])
    loaded = lowbit.load(
        path, torch.nn.Sequential(torch.nn.Embedding(20, 8), torch.nn.Linear(8, 3))
    )
    assert isinstance(loaded[0], lowbit.nn.QuantEmbedding) and torch.equal(loaded(idx), q(idx))
    with pytest.raises(ValueError, match=r"layer '0' was Embedding\(20, 8\)"):
        lowbit.load(path, torch.nn.Sequential(torch.nn.Embedding(21, 8), torch.nn.Linear(8, 3)))


def _with_model_class(src, dst, model_class):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        meta = json.loads(f.metadata()["lowbit"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["model_class"] = model_class
    save_file(tensors, str(dst), metadata={"lowbit": json.dumps(meta)})
    return dst


@pytest.mark.parametrize("model_class", ["os:abort", "builtins:input", "sys:exit", "os:system", "subprocess:Popen",
                                         "evil_module_beside_the_file:Model", "torch.nn:Module.__subclasses__",
                                         "lowbit.demo.models:_private", "", "no colon", 42])
def test_load_never_imports_or_calls_what_a_file_names(tmp_path, qmodel, model_class, monkeypatch):
    """A model file is inert: a hostile model_class is refused before anything is imported or called."""
    path = tmp_path / "m.safetensors"
    lowbit.save(qmodel, path)
    (tmp_path / "evil_module_beside_the_file.py").write_text("raise SystemExit('imported!')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    hostile = _with_model_class(path, tmp_path / "hostile.safetensors", model_class)
    for trust in (False, True):
        with pytest.raises(ValueError, match="lowbit.load"):
            lowbit.load(hostile, trust_model_class=trust)
    assert "evil_module_beside_the_file" not in sys.modules


def _rewrite(src, dst, edit_meta=None, edit_tensors=None, keep_checksums=False):
    """A copy of a saved file with its metadata / tensors edited (checksums dropped unless kept)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        meta = json.loads(f.metadata()["lowbit"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if not keep_checksums:
        meta.pop("checksums", None)
    if edit_meta:
        edit_meta(meta)
    if edit_tensors:
        edit_tensors(tensors)
    save_file(tensors, str(dst), metadata={"lowbit": json.dumps(meta)})
    return dst


def _set(name, value):
    def edit(tensors):
        tensors[name] = torch.full_like(tensors[name], value)
    return edit


@pytest.mark.parametrize("case,match", [
    (dict(edit_tensors=_set("fc1.weight_scale", float("nan"))), "weight_scale"),
    (dict(edit_tensors=_set("fc1.weight_scale", -1.0)), "weight_scale"),
    (dict(edit_tensors=_set("fc1.act_scale", 0.0)), "act_scale"),
    (dict(edit_tensors=_set("fc1.act_zero_point", 1000)), "act_zero_point"),
    (dict(edit_tensors=_set("fc2.weight_zero_point", 100)), "weight_zero_point"),
    (dict(edit_meta=lambda m: m["layers"]["conv1"].update(stride=[0, 1])), "invalid spec.*stride"),
    (dict(edit_meta=lambda m: m["layers"]["conv1"].update(surprise=1)), "invalid spec"),
    (dict(edit_meta=lambda m: m.update(config={"weight": "int3"})), "invalid config"),
    (dict(edit_meta=lambda m: m.update(layers=[1, 2])), "corrupted layer metadata"),
    (dict(edit_tensors=_set("fc1.bias", 7.0), keep_checksums=True), "does not match its checksum"),
])
def test_load_validates_everything_before_changing_the_model(tmp_path, case, match):
    torch.manual_seed(0)
    model = DigitsCNN().eval()
    data = [torch.randn(8, 1, 8, 8) for _ in range(2)]
    cfg = lowbit.QuantConfig(activation="static", per_layer={"fc2": {"weight": "int4", "symmetric_weights": False,
                                                                     "activation": "float"}})
    q = lowbit.quantize_model(model, cfg, calib_data=data, progress=False)
    path = tmp_path / "ok.safetensors"
    lowbit.save(q, path)
    bad = _rewrite(path, tmp_path / "bad.safetensors", **case)
    target = DigitsCNN().eval()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    types = {n: type(m) for n, m in target.named_modules()}
    with pytest.raises(ValueError, match=match):
        lowbit.load(bad, target)
    assert {n: type(m) for n, m in target.named_modules()} == types  # nothing replaced
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())  # nothing written
    assert torch.equal(lowbit.load(path, DigitsCNN())(data[0]), q(data[0]))  # the intact file loads

def test_shared_weights_stored_once_and_tied_again_on_load(tmp_path):
    from safetensors import safe_open
    from test_torch_convert import shared_pair

    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    for weight in ("int8", "nf4"):
        q = lowbit.quantize_model(shared_pair(), lowbit.QuantConfig(weight=weight))
        path = tmp_path / f"shared_{weight}.lowbit"
        lowbit.save(q, path)
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            meta = json.loads(f.metadata()["lowbit"])
        data = q.a.scheme.data_name
        assert f"a.{data}" in keys and f"b.{data}" not in keys and "c_again.bias" not in keys
        assert meta["aliases"][f"b.{data}"] == f"a.{data}" and meta["aliases"]["c_again.bias"] == "c.bias"
        loaded = lowbit.load(path, shared_pair())
        assert loaded.c is loaded.c_again
        for name in q.a.scheme.storage_spec(64, 64):
            assert loaded.a._buffers[name] is loaded.b._buffers[name]
        assert loaded.a.bias is not loaded.b.bias
        assert torch.equal(loaded(x), q(x))
        assert lowbit.metrics.model_nbytes(loaded) == lowbit.metrics.model_nbytes(q)
        assert str(lowbit.summary(loaded)) == str(lowbit.summary(q))


def test_load_refuses_flipped_bits_in_tensor_data(tmp_path, qmodel):
    """safetensors has no checksum: lowbit.save records one per tensor, so a flipped bit anywhere in
    the tensor data is caught before the model changes."""
    path = tmp_path / "m.safetensors"
    lowbit.save(qmodel, path)
    raw = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(raw[:8], "little")
    rng = np.random.default_rng(0)
    for pos in rng.integers(header, len(raw), 5):
        bad = bytearray(raw)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        flipped = tmp_path / "flipped.safetensors"
        flipped.write_bytes(bytes(bad))
        target = DigitsCNN()
        before = {k: v.clone() for k, v in target.state_dict().items()}
        with pytest.raises(ValueError, match="does not match its checksum"):
            lowbit.load(flipped, target)
        assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())
