"""AutoRound: weight rounding and scales learned block by block from the float block's outputs.
Public API layer (the options; the training runs in :mod:`lowbit.interop.autoround`, with torch).

Cheng et al., "Optimize Weight Rounding via Signed Gradient Descent for the Quantization of LLMs"
(2023; Intel's AutoRound). For every quantized layer of a block, a rounding offset ``V`` (one per
weight, in [-0.5, 0.5]) and a scale factor ``g`` (one per channel or group, in [0.5, 1.5]) are
learned so that the block, run on the inputs that the already quantized blocks produce, reproduces
the float block's output on the float inputs::

    q(W) = s g (clamp(round(W / (s g) + V) + z, qmin, qmax) - z)          (integer formats)
    q(W) = s levels[nearest(W / s + V * 2/15)]                             (nf4: g = 1)

    min over V, g (and the layers' float biases) of  || block_q(X_q) - block(X) ||^2

where ``s``, ``z`` are the starting parameters (round to nearest's, or the MSE clipping search's
with ``clip=True``), ``round`` and ``nearest`` pass gradients straight through, and the mean is
over real tokens (``attention_mask`` 1). Blocks are taken in order, with only one block's inputs
in memory; each block's quantized output is the next one's input. Outside a ``ModuleList`` of
blocks (a CNN, a layer before or after the blocks) the whole model is the block and its first
output tensor the target.

lowbit's departures from the paper, both measured on all-MiniLM-L6-v2: Adam instead of signed
gradient descent, and the float biases of the quantized layers tuned too (with ``lr / 100``).
The result is an ordinary stored weight of the scheme (the kernels never see V or g).

Measured (``benchmarks/bench_gptq.py --models minilm --calib mix``, 256 calibration sentences, one
thread): all-MiniLM-L6-v2's worst-sentence cosine to the float embeddings, int4 g64: AutoRound
0.983, GPTQ (damp 0.1) 0.967, round to nearest 0.945; nf4: 0.988, 0.978, 0.965. It is the slow
option: about 4 minutes against GPTQ's 20-40 s. At int8 with dynamic activations the activation
rounding dominates and the gain is small. 400 steps, tuning the LayerNorms, or more calibration
sentences did not raise MiniLM's worst cosine further, and neither did (int4 g64 worst / mean on the
test sentences, against 0.9834 / 0.9882): 256 random vocabulary-word sequences added to the 256
calibration sentences (0.9833 / 0.9887), a per-token relative loss (0.9824 / 0.9880), an extra loss
on the mean-pooled output (0.9842 / 0.9875), QDrop's random half-and-half mix of float and quantized
block inputs (Wei et al. 2022; 0.9848 / 0.9883, nf4 0.9875 / 0.9910 against 0.9879 / 0.9910), both
(0.9849 / 0.9890, nf4 0.9858 / 0.9911), two blocks trained together (0.9826 / 0.9873, 1.8x the time)
or ten times the bias learning rate (0.9833 / 0.9879). The last block costs about half of the
remaining loss (``benchmarks/bench_gptq.py --block-report``: 0.0054 of int4's mean 1 - cosine 0.0118,
0.0033 of nf4's 0.0090): no later block is trained to absorb its error, and its tokens' errors are
about 1.7 times larger on the test sentences than on the calibration sentences.

More calibration text is what helps: the offsets (one per weight) overfit a few thousand tokens.
All-MiniLM-L6-v2, int4 g64 with rotation (``QuantConfig(rotation="hadamard")``), mean cosine on
calibration sentences against 256 held-out corpus sentences, then the test sentences' worst: 256
sentences and 200 steps 0.9980 against 0.9937, worst 0.9843; 2,048 sentences 0.9960 against
0.9950, worst 0.9871; 4,096 sentences and 400 steps, worst 0.9887-0.9896 (int4 g64, four runs:
batches in the given order or grouped by length, 600 steps, rotation blocks of 512) and
0.9889-0.9907 (nf4, three runs), in 220-260 s at 2 threads in length-grouped batches
(:func:`lowbit.text_batches`; 414-450 s without). Tuning the biases and LayerNorms end to end on the
pooled embeddings afterwards, batches of 64, or asymmetric uint4 groups did not raise them further.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["AutoRound"]


@dataclass(frozen=True)
class AutoRound:
    """AutoRound options (the ``algorithm`` of a :class:`lowbit.QuantConfig`); see the module
    docstring for the method.

    Attributes:
        steps: optimizer steps per block (200), each on one batch of ``calib_data`` in turn.
        lr: Adam learning rate of the rounding offsets and scale factors (0.005); biases use lr / 100.
        learn_scales: learn a factor on each channel's or group's scale (True) of the integer
            formats (int8, int4, uint4). Formats with one scale per tensor keep it, and so does nf4
            (learned block-absmax factors made MiniLM's block losses worse than the offsets alone).
        tune_bias: tune the quantized layers' float biases with the rounding (True).
        tune_norms: also tune the block's normalization layers (LayerNorm, RMSNorm: they stay float).
        clip: start from the error-minimizing (MSE) scales instead of round to nearest's (True).

    Training is deterministic (batches in order, no sampling): the same model, data and options
    give the same weights.
    """

    steps: int = 200
    lr: float = 5e-3
    learn_scales: bool = True
    tune_bias: bool = True
    tune_norms: bool = False
    clip: bool = True

    name = "autoround"

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"AutoRound.steps: expected an int >= 0, got {self.steps!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr < 1:
            raise ValueError(f"AutoRound.lr: expected a number in (0, 1), got {self.lr!r}")
        for field in ("learn_scales", "tune_bias", "tune_norms", "clip"):
            if not isinstance(getattr(self, field), bool):
                raise TypeError(f"AutoRound.{field}: expected a bool, got {type(getattr(self, field)).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": "autoround", "steps": self.steps, "lr": self.lr, "learn_scales": self.learn_scales,
                "tune_bias": self.tune_bias, "tune_norms": self.tune_norms, "clip": self.clip}
