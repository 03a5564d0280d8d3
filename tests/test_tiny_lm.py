"""The tiny byte-level language model of lowbit.demo.tiny_lm (trained here on the Python standard
library's sources, offline): GPTQ keeps int4 perplexity within 2% of float, round-to-nearest not."""

from __future__ import annotations

import lowbit
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lowbit.demo.tiny_lm import TinyLMConfig, lm_calibration, load_stdlib_corpus, perplexity, train_tiny_lm  # noqa: E402

# Small enough to train in seconds on 2 busy cores (the benchmark trains the 2-layer d=128 model).
CFG = TinyLMConfig(d_model=64, n_layers=1, n_heads=2, context=64, steps=300, batch=16, lr=1e-2,
                   train_bytes=400_000, test_bytes=24_000)


@pytest.fixture(scope="module")
def trained():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 OpenMP threads on a loaded 2-core machine: 13x slower training
    try:
        with torch.random.fork_rng():
            return train_tiny_lm(CFG)
    finally:
        torch.set_num_threads(threads)


def test_corpus_is_deterministic_and_split_by_file():
    a, b = load_stdlib_corpus(50_000, 10_000), load_stdlib_corpus(50_000, 10_000)
    np.testing.assert_array_equal(a.train, b.train)
    assert a.train.size == 50_000 and a.test.size == 10_000
    assert not set(a.train_files) & set(a.test_files)


def test_gptq_int4_perplexity_beats_round_to_nearest(trained):
    """int4 with one scale per tensor: on a model this small, finer int4 (per channel, g128) moves
    perplexity by less than its noise (measured: float 12.155, g128 RTN 12.142, GPTQ 12.143), per
    tensor RTN visibly hurts (12.458, +2.5%) and GPTQ recovers it (12.211, +0.5%). The benchmark
    measures int4 g128 on the larger model."""
    model, data = trained
    ppl_float = perplexity(model, data.test, context=CFG.context)
    assert ppl_float < 20  # it learned something (a uniform byte model has 256)
    calib = lm_calibration(data, n_windows=64, context=CFG.context)
    ppl = {}
    for name, algo in (("rtn", None), ("gptq", lowbit.GPTQ())):
        q = lowbit.quantize_model(model, lowbit.QuantConfig(weight="int4", granularity="per_tensor", algorithm=algo),
                                  calib_data=calib, progress=False)
        ppl[name] = perplexity(q, data.test, context=CFG.context)
    assert ppl["gptq"] <= ppl["rtn"]
    assert ppl["gptq"] <= 1.02 * ppl_float, (ppl_float, ppl)
    assert ppl["rtn"] >= 1.01 * ppl_float, (ppl_float, ppl)  # round-to-nearest's loss is visible
