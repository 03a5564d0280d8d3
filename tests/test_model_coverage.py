"""Architectures users bring (tiny random transformers models built from configs, offline): every
one quantizes and runs; models whose forward reads ``layer.weight`` (T5, ViT) see the quantized
layers' lazily dequantized weight (lowbit.nn.DequantizedWeight); SmoothQuant / AWQ scale GPT-2's
Conv1D layers and leave tied LM heads alone."""

from __future__ import annotations

import lowbit
import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")
F = torch.nn.functional


def _t5():
    return tf.T5ForConditionalGeneration(tf.T5Config(d_model=64, d_ff=128, num_layers=2, num_heads=4, vocab_size=200,
                                                     d_kv=16))


def _vit():
    return tf.ViTModel(tf.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                    image_size=32, patch_size=8))


def _opt():
    return tf.OPTForCausalLM(tf.OPTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=128,
                                          vocab_size=200, word_embed_proj_dim=64))


def _gpt2():
    return tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=200, bos_token_id=0,
                                            eos_token_id=0))


def _bart():  # its LM head is tied to a subclass of nn.Embedding (BartScaledWordEmbedding)
    return tf.BartForConditionalGeneration(tf.BartConfig(d_model=64, encoder_layers=2, decoder_layers=2,
                                                         encoder_attention_heads=4, decoder_attention_heads=4,
                                                         encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=200))


MODELS = {"t5": _t5, "vit": _vit, "opt": _opt, "gpt2": _gpt2, "bart": _bart}


def _inputs(name: str, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    if name == "vit":
        return {"pixel_values": torch.randn(2, 3, 32, 32, generator=g)}
    ids = torch.randint(0, 200, (2, 12), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if name in ("t5", "bart"):
        batch["decoder_input_ids"] = ids[:, :5]
    return batch


def _output(model, batch) -> torch.Tensor:
    with torch.no_grad():
        out = model(**batch)
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten(), b.flatten(), dim=0))


CONFIGS = {"dynamic": {}, "static": {"activation": "static"}, "int4": {"weight": "int4", "group_size": 32},
           "smoothquant": {"activation": "static", "algorithm": "smoothquant"},
           "gptq": {"weight": "int4", "group_size": 32, "algorithm": "gptq"},
           "autoround": {"weight": "int4", "group_size": 32, "algorithm": lowbit.AutoRound(steps=5)}}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("name", list(MODELS))
def test_architectures_quantize_and_stay_close_to_float(name, config):
    """Before: T5 and ViT raised AttributeError ('QuantLinear' / 'QuantConv2d' has no attribute
    'weight': their forward reads it), OPT and BART with SmoothQuant fell to cosine 0.62 and 0.80 (the
    tied LM head's scale scaled the embedding table), GPT-2's Conv1D layers refused SmoothQuant and
    AutoRound failed on every model with a key/value cache (backward through freed graphs) and on
    GPT-2's Conv1D (its weight put back untransposed)."""
    if name == "vit" and config == "smoothquant":  # the patch embedding is a Conv2d: a clear refusal
        with pytest.raises(ValueError, match="not Conv2d"):
            lowbit.quantize_model(_vit().eval(), CONFIGS[config], calib_data=[_inputs(name, 1)], progress=False)
        return
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    batch = _inputs(name, 0)
    ref = _output(model, batch)
    q = lowbit.quantize_model(model, CONFIGS[config], calib_data=[_inputs(name, s) for s in (1, 2)], progress=False)
    floor = 0.97 if config in ("int4", "gptq", "autoround") else 0.99
    assert _cos(_output(q, batch), ref) > floor
    assert not any(type(m) is torch.nn.Linear for n, m in q.named_modules() if not n.endswith("lm_head.layer")
                   and n not in ("lm_head",)), "a Linear left float"


def test_dequantized_weight_is_metadata_until_used():
    """``layer.weight`` of a quantized layer: the float module's shape and layout, float32, the
    buffers' device; an op on it or ``numpy()`` gives exactly ``dequantized_weight()``; not a
    Parameter, not in the state dict."""
    torch.manual_seed(0)
    cases = [
        (torch.nn.Linear(64, 8), {}),
        (torch.nn.Linear(64, 8), {"weight": "nf4"}),
        (torch.nn.Conv2d(4, 6, 3, groups=2), {}),
        (torch.nn.Conv1d(4, 6, 5), {"weight": "int4", "group_size": 32}),
    ]
    for layer, cfg in cases:
        q = lowbit.quantize_model(torch.nn.Sequential(layer), cfg, progress=False)[0]
        w = q.weight
        assert isinstance(w, torch.Tensor) and isinstance(w, lowbit.nn.DequantizedWeight)
        assert w.shape == layer.weight.shape and w.dtype == torch.float32 and w.device == layer.weight.device
        deq = q.dequantized_weight()
        assert torch.equal(w * 1, deq) and torch.equal(w.clone(), deq)
        np.testing.assert_array_equal(w.numpy(), deq.numpy())
        ref = layer.weight.detach()
        assert _cos(deq, ref) > 0.97  # the float layout (a permuted one would not correlate)
        assert "weight" not in q.state_dict() and not list(q.parameters())
    lin = lowbit.nn.QuantLinear.from_float(torch.nn.Linear(16, 4), lowbit.QuantConfig(activation="float"))
    x = torch.randn(3, 16)
    torch.testing.assert_close(F.linear(x, lin.weight, lin.bias), lin(x))


def test_gpt2_conv1d_scaled_by_smoothquant_and_awq_in_float():
    """SmoothQuant / AWQ on GPT-2's Conv1D layers (weight (in, out)): the scaled float model computes
    what the float one does, and each layer's effective weight (InputScaled.weight) is the original."""
    torch.manual_seed(0)
    model = _gpt2().eval()
    batch = _inputs("gpt2", 0)
    calib = [_inputs("gpt2", s) for s in (1, 2)]
    ref = _output(model, batch)
    for new in (lowbit.smooth_quant(model, calib, alpha=0.8, progress=False),
                lowbit.apply_awq(model, calib, {"weight": "int4", "group_size": 32}, progress=False)):
        torch.testing.assert_close(_output(new, batch), ref, rtol=1e-4, atol=1e-4)
        for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            scaled = new.transformer.h[0].get_submodule(name)
            assert type(scaled).__name__ == "InputScaled", name
            torch.testing.assert_close(scaled.weight * 1, model.transformer.h[0].get_submodule(name).weight,
                                       rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["opt", "gpt2", "bart"])
def test_replaying_a_block_on_its_captured_input_does_not_see_earlier_replays(name):
    """GPTQ, AWQ and AutoRound replay each block on its captured inputs many times (float, then
    quantized inputs): the captured arguments hold no key/value cache (GPT-2 passes it by position,
    OPT / BART by keyword), so a replay on other hidden states gives what a first call on them gives,
    not an attention over the keys of earlier replays too."""
    from lowbit.interop.convert import _advance, _block_plan, _capture_block_inputs, _hidden

    torch.manual_seed(0)
    model = MODELS[name]().eval()
    batches = [_inputs(name, s) for s in (1, 2)]
    targets = {n: m for n, m in model.named_modules() if type(m) is torch.nn.Linear or type(m).__name__ == "Conv1D"}
    with torch.no_grad():
        plan = _block_plan(model, targets, batches)
        assert plan is not None
        block = plan[0][0]
        used, fresh = _capture_block_inputs(model, block, batches), _capture_block_inputs(model, block, batches)
        for item, clean in zip(used, fresh):
            h = _hidden(block(*item[0], **item[1]))  # a first replay on the captured input
            other = _advance(item, h * 0.5 + 1.0)  # then other hidden states (as a quantized block's)
            want = _advance(clean, h * 0.5 + 1.0)
            torch.testing.assert_close(_hidden(block(*other[0], **other[1])),
                                       _hidden(block(*want[0], **want[1])), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("config", ["gptq", "autoround", "smoothquant"])
def test_half_precision_models(config, dtype):
    """Models loaded in float16 / bfloat16 (as LLMs usually are): the algorithms run and the model
    keeps its dtype. AutoRound failed on both (its float32 trial weights in a half-precision block;
    then float16 gradients overflowed to NaN scales): it now trains half-precision blocks in float32."""
    torch.manual_seed(0)
    model = _opt().eval().to(dtype)
    batch = _inputs("opt", 0)
    ref = _output(model, batch).float()
    q = lowbit.quantize_model(model, CONFIGS[config], calib_data=[_inputs("opt", s) for s in (1, 2)], progress=False)
    out = _output(q, batch)
    assert out.dtype == dtype
    assert _cos(out.float(), ref) > 0.97
    assert q.model.decoder.layers[0].final_layer_norm.weight.dtype == dtype


def _mixtral():
    return tf.MixtralForCausalLM(tf.MixtralConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                  intermediate_size=128, vocab_size=200, num_key_value_heads=2,
                                                  num_local_experts=4, num_experts_per_tok=2))


def test_moe_experts_unfused_compute_the_same():
    """transformers' fused experts (3-D gate_up_proj / down_proj) as one Linear pair per expert over
    the same storage: the model computes what it did (up to float rounding: transformers may run its
    experts as one grouped matmul); other layouts are left alone."""
    torch.manual_seed(0)
    model = _mixtral().eval()
    batch = _inputs("mixtral", 0)
    ref = _output(model, batch)
    names = lowbit.nn.unfuse_experts_(model)
    assert names == ["model.layers.0.mlp.experts", "model.layers.1.mlp.experts"]
    experts = model.model.layers[0].mlp.experts
    assert isinstance(experts, lowbit.nn.Experts) and len(experts.gate_up) == 4
    torch.testing.assert_close(_output(model, batch), ref, rtol=1e-5, atol=1e-6)
    assert experts.gate_up[1].weight.data_ptr() == experts.gate_up[0].weight.data_ptr() + 256 * 64 * 4  # views

    class Biased(torch.nn.Module):  # GPT-OSS-like: biases, so not the Mixtral layout
        def __init__(self):
            super().__init__()
            self.gate_up_proj = torch.nn.Parameter(torch.zeros(2, 8, 4))
            self.down_proj = torch.nn.Parameter(torch.zeros(2, 4, 4))
            self.gate_up_proj_bias = torch.nn.Parameter(torch.zeros(2, 8))
            self.act_fn = torch.nn.SiLU()

        def forward(self, hidden_states, top_k_index, top_k_weights):
            return hidden_states

    assert not lowbit.nn.is_fused_experts(Biased())


@pytest.mark.parametrize("config", ["dynamic", "int4", "gptq"])
def test_moe_experts_are_quantized(config, tmp_path):
    """Before: a Mixtral-style model's experts (most of its weights) stayed float. Now every expert's
    two matrices are quantized (GPTQ with each expert's own tokens), the caller's model keeps its
    fused experts, and save / load gives the same outputs."""
    torch.manual_seed(0)
    model = _mixtral().eval()
    batch = _inputs("mixtral", 0)
    ref = _output(model, batch)
    q = lowbit.quantize_model(model, CONFIGS[config], calib_data=[_inputs("mixtral", s) for s in (1, 2, 3)],
                              progress=False)
    kinds = {type(m).__name__ for n, m in q.named_modules() if ".experts.gate_up." in n or ".experts.down." in n}
    assert kinds == {"QuantLinear"}
    assert not any("gate_up_proj" in n for n, _ in q.named_parameters())
    assert type(model.model.layers[0].mlp.experts).__name__ == "MixtralExperts"
    assert _cos(_output(q, batch), ref) > 0.97
    s = lowbit.summary(q)
    assert s.bytes_after < 0.45 * s.bytes_before
    lowbit.save(q, tmp_path / "moe.lowbit")
    torch.manual_seed(0)
    back = lowbit.load(tmp_path / "moe.lowbit", _mixtral().eval())
    assert torch.equal(_output(back, batch), _output(q, batch))


@pytest.mark.parametrize("config", ["dynamic", "static", "int4", "gptq"])
def test_whisper_reads_its_conv1d_strides(config):
    """Whisper checks its input length against ``conv1.stride[0] * conv2.stride[0]``: a QuantConv1d's
    public geometry is nn.Conv1d's 1-tuples (it was the internal (1, k) pairs, so the quantized
    model refused its own inputs); GPTQ covers its nn.Conv1d layers (it refused them)."""
    torch.manual_seed(0)
    model = tf.WhisperForConditionalGeneration(tf.WhisperConfig(
        d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=16, max_source_positions=32, vocab_size=200,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)).eval()

    def batch(s):
        g = torch.Generator().manual_seed(s)
        return {"input_features": torch.randn(2, 16, 64, generator=g),
                "decoder_input_ids": torch.randint(0, 200, (2, 5), generator=g)}

    ref = _output(model, batch(0))
    q = lowbit.quantize_model(model, CONFIGS[config], calib_data=[batch(1), batch(2)], progress=False)
    conv = q.model.encoder.conv2
    assert type(conv).__name__ == "QuantConv1d"
    assert (conv.kernel_size, conv.stride, conv.padding, conv.dilation) == ((3,), (2,), (1,), (1,))
    assert _cos(_output(q, batch(0)), ref) > (0.97 if config == "int4" else 0.99)


@pytest.mark.parametrize("padding", [0, 2, "same"])
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_gptq_rows_of_a_conv1d_reproduce_it(padding, padding_mode):
    """The rows GPTQ's Hessian is built from for an nn.Conv1d (its patches in lowbit's (k, in)
    order) times the weight rows give the convolution's output."""
    from lowbit.interop.convert import _layer_rows, _weight_rows

    torch.manual_seed(0)
    stride = 1 if padding == "same" else 2
    conv = torch.nn.Conv1d(6, 5, 3, stride=stride, padding=padding, dilation=2, padding_mode=padding_mode)
    x = torch.randn(2, 6, 17)
    with torch.no_grad():
        want = conv(x).permute(0, 2, 1).reshape(-1, 5)
        got = _layer_rows(conv, x) @ _weight_rows(conv).t() + conv.bias
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_moe_reports_and_per_expert_configs():
    """compare / sensitivity match a quantized MoE model's per-expert layers with the float model's
    fused experts (unfused for the call, put back after), and a config may name one expert."""
    torch.manual_seed(0)
    model = _mixtral().eval()
    batches = [_inputs("mixtral", s) for s in (1, 2)]
    one = "model.layers.1.mlp.experts.down.2"
    q = lowbit.quantize_model(model, {"weight": "int4", "group_size": 32, "per_layer": {one: {"weight": "int8"}}},
                              progress=False)
    assert q.get_submodule(one).weight_dtype == "int8"
    assert q.get_submodule("model.layers.1.mlp.experts.down.1").weight_dtype == "int4"
    report = lowbit.compare(model, q, batches, progress=False, timing=False)
    names = [layer.name for layer in report.layers]
    assert one in names and len([n for n in names if ".experts." in n]) == 2 * 2 * 4
    assert type(model.model.layers[0].mlp.experts).__name__ == "MixtralExperts"
    rows = lowbit.sensitivity(model, batches, {"weight": "int4", "group_size": 32}, progress=False)
    assert one in {r["layer"] for r in rows.rows}
    assert type(model.model.layers[0].mlp.experts).__name__ == "MixtralExperts"
