"""QuantConfig: what quantize_model / prepare_qat do to each layer. Public API; no torch import.

A small frozen dataclass in the style of torchao's configs that composes a weight scheme and an
activation scheme (:mod:`lowbit.schemes`) with per-layer overrides (mixed precision), exclusions
and the policy for layers that cannot be quantized as asked.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Optional, Union

from .schemes import (
    ActivationScheme,
    StaticActivations,
    WeightScheme,
    activation_scheme,
    close_matches,
    weight_scheme,
)

__all__ = ["QuantConfig", "as_config"]

# QuantConfig keywords that refine the weight shorthand / the activation shorthand.
_WEIGHT_OPTIONS = ("group_size", "granularity", "symmetric_weights", "log2_bits", "double_quant")
_ACT_OPTIONS = ("observer", "activation_dtype")
_ON_UNSUPPORTED = ("raise", "float")
_EMBEDDINGS = (None, "int8")


def _config_message(msg: str) -> str:
    """A scheme's error in QuantConfig's words: "Int4Weights.symmetric: ..." -> "QuantConfig.symmetric_weights: ..."."""
    if msg.startswith("QuantConfig."):
        return msg
    m = re.match(r"(\w+Weights)\.(\w+)(.*)", msg, re.S)
    if m:
        field = {"bits": "log2_bits", "symmetric": "symmetric_weights"}.get(m.group(2), m.group(2))
        msg = field + m.group(3)
    return f"QuantConfig.{msg}"


def _algorithm(value: Any) -> Any:
    """None / "rtn" (round to nearest), "gptq", "mse", "awq", "smoothquant", "autoround", an options
    object or its to_dict() form."""
    from .autoround import AutoRound
    from .clipping import MSEClip
    from .gptq import GPTQ
    from .smoothing import AWQ, SmoothQuant

    kinds = {"gptq": GPTQ, "mse": MSEClip, "awq": AWQ, "smoothquant": SmoothQuant, "autoround": AutoRound}
    if value is None or value == "rtn":
        return None
    if isinstance(value, str) and value in kinds:
        return kinds[value]()
    if isinstance(value, tuple(kinds.values())):
        return value
    if isinstance(value, Mapping) and value.get("name") in kinds:
        return kinds[value["name"]](**{k: v for k, v in value.items() if k != "name"})
    raise ValueError(f"QuantConfig.algorithm: expected None, 'rtn', 'gptq', 'mse', 'awq', 'smoothquant', "
                     f"'autoround' or a lowbit.GPTQ / MSEClip / AWQ / SmoothQuant / AutoRound, got {value!r}"
                     + close_matches(value, ("rtn", *kinds)))


def _weight_options(w: WeightScheme) -> dict[str, Any]:
    """The QuantConfig keywords that describe ``w`` (for carrying them to another format)."""
    inverse = {field: opt for opt, field in type(w).options.items()}
    return {inverse[f.name]: getattr(w, f.name) for f in fields(w) if f.name in inverse}


@dataclass(frozen=True, init=False)
class QuantConfig:
    """How to quantize a model's layers: a weight scheme x an activation scheme, plus overrides.

    ``weight`` and ``activation`` take scheme objects (:mod:`lowbit.schemes`) or their shorthand
    strings, refined by the keyword options below. The weight formats and the kernel each one runs
    (``lowbit.summary`` shows the choice per layer):

    ========================  =================================================================
    weight (options)          storage and kernel
    ========================  =================================================================
    "int8"                    int8 per channel/tensor; the int8 GEMM
    "int4" (group_size None)  values in [-7, 7] per channel/tensor, packed two per byte; the int8
                              GEMM (the QAT format)
    "int4" (group_size 32k)   symmetric codes in [-8, 7], one scale per group of inputs, packed
                              two per byte; the fused 4-bit kernel (int8 activations per row and
                              group with "dynamic", float32 with "float"). ``symmetric_weights=
                              False``: codes plus group zero points, weight-only, any group size
    "uint4" (group_size)      codes in [0, 15] with zero points, weight-only
    "nf4" (group_size 64)     NormalFloat codes, absmax per block (group) of inputs; the fused
                              4-bit kernel ("dynamic": levels rounded to int8; "float": exact)
    "fp16", "bf16"            16-bit floats, weight-only
    "log2" (log2_bits 4/8)    sign + power-of-two codes, weight-only
    "ternary", "binary"       {-a, 0, +a} (2 bits) / {-a, +a} (1 bit) codes, weight-only
    ========================  =================================================================

    Weight-only formats dequantize the weight on each call (lowbit's kernels) and run a float
    matmul: storage and accuracy formats, not speed formats.

    Args:
        weight: a :class:`~lowbit.schemes.WeightScheme` or shorthand (table above).
        activation: an :class:`~lowbit.schemes.ActivationScheme` or shorthand: "dynamic"
            (quantized per row at run time), "dynamic_per_tensor", "static" (per-tensor parameters
            fixed by calibration or QAT), "float" (weight-only; None means the same) or "auto"
            (the default: "dynamic" where the weight's kernel quantizes activations, else "float").
            A mode the weight's kernel cannot run raises ValueError saying what would work.
        group_size: inputs per scale for "int4" / "uint4" (None: per channel or tensor) and "nf4"
            (blocks; default 64). Consecutive inputs of each output row form a group; for Conv2d the
            inputs are the (kh, kw, in_channels) patch elements.
        granularity: "per_channel" (default) or "per_tensor" weight scales.
        symmetric_weights: zero point 0 for int8/int4 (the kernels need it; False is weight-only);
            uint4: True puts the zero point mid-range (8).
        log2_bits: code width of "log2" weights, 4 or 8.
        double_quant: "nf4": quantize the block scales too (QLoRA; :func:`lowbit.pack_weight`).
        observer: static calibration observer: "minmax", "moving_average", "histogram" (MSE),
            "percentile" or "entropy".
        activation_dtype: static activations "uint8" (asymmetric, default) or "int8".
        embedding: "int8" also stores ``nn.Embedding`` tables as int8 rows; None keeps them float.
        exclude: module-name patterns (fnmatch) kept in float32. A pattern that matches no module
            of the model raises ValueError (with close matches) in :func:`lowbit.quantize_model`.
        per_layer: pattern -> QuantConfig or dict of overrides for mixed precision; the first
            matching pattern wins. A dict that changes ``weight`` keeps the options that still
            apply (:meth:`with_weight`); a QuantConfig is used as is.
        on_unsupported: "raise" (default): a layer that cannot be quantized as asked raises
            ValueError naming the layer, why, and what would work; "float": it stays float with a
            warning and the reason in :func:`lowbit.summary`.
        algorithm: how weights are rounded: None (round to nearest); "gptq" / a
            :class:`lowbit.GPTQ` (error-compensating rounding from the layers' input statistics on
            ``calib_data``); "mse" / a :class:`lowbit.MSEClip` (error-minimizing scales: a clipping
            search per channel or group, no data needed); "awq" / a :class:`lowbit.AWQ`
            (activation-aware per-input-channel scales for the weight format, Linear layers);
            "smoothquant" / a :class:`lowbit.SmoothQuant` (activation outliers migrated into the
            weights, for quantized activations; Linear layers); "autoround" / a :class:`lowbit.AutoRound`
            (rounding offsets and scales learned block by block to reproduce the float blocks' outputs on
            ``calib_data``). All for int8, int4, uint4 and nf4.
        bias_correction: add each quantized Linear / Conv2d's expected output shift to its bias
            (Nagel et al. 2019, empirical variant): ``E[y_float] - E[y_quant]`` per output channel
            over ``calib_data``, layer by layer in model order, so the shift measured includes the
            quantized layers before it and the activation rounding (for one layer with float
            inputs it is ``(W - Q) E[x]``). Layers without a bias get one.
        rotation: None, or "hadamard" / a :class:`lowbit.Rotation`: Linear layers store ``W R`` and
            rotate their inputs by ``R`` (random signs times a Walsh-Hadamard block) on every call,
            so activation and weight outliers spread over their block before rounding
            (:mod:`lowbit.core.rotation`; QuaRot). Composes with every ``algorithm``; the cost is
            one pass over each layer's input.

    Example:
        >>> cfg = lowbit.QuantConfig(activation="static", per_layer={"fc2": {"weight": "int4"}})
        >>> cfg.for_layer("fc2").weight.name, cfg.for_layer("fc1").weight.name
        ('int4', 'int8')
        >>> nf4 = lowbit.QuantConfig(weight="nf4")
        >>> nf4.weight, nf4.activation
        (NF4Weights(group_size=64, double_quant=False), DynamicActivations(per='row'))
        >>> lowbit.QuantConfig(weight="fp16").activation
        FloatActivations()
    """

    weight: WeightScheme
    activation: ActivationScheme
    embedding: Optional[str]
    exclude: tuple
    per_layer: Mapping[str, Any]
    on_unsupported: str
    algorithm: Optional[Any]
    bias_correction: bool
    rotation: Optional[Any]

    def __init__(
        self,
        weight: Any = "int8",
        activation: Any = "auto",
        *,
        group_size: Optional[int] = None,
        granularity: Optional[str] = None,
        symmetric_weights: Optional[bool] = None,
        log2_bits: Optional[int] = None,
        double_quant: Optional[bool] = None,
        observer: Optional[str] = None,
        activation_dtype: Optional[str] = None,
        embedding: Optional[str] = None,
        exclude: Any = (),
        per_layer: Optional[Mapping[str, Any]] = None,
        on_unsupported: str = "raise",
        algorithm: Any = None,
        bias_correction: bool = False,
        rotation: Any = None,
    ) -> None:
        try:
            w = weight_scheme(weight, "weight", group_size=group_size, granularity=granularity,
                              symmetric_weights=symmetric_weights, log2_bits=log2_bits, double_quant=double_quant)
        except (TypeError, ValueError) as e:
            raise type(e)(_config_message(str(e))) from None
        if activation == "auto":
            act = w.default_activation()
            if observer is not None or activation_dtype is not None:
                raise ValueError("observer/activation_dtype: they refine static activations; "
                                 "pass activation='static' too")
        else:
            act = activation_scheme(activation, observer=observer, dtype=activation_dtype,
                                    name="QuantConfig.activation")
        try:
            w.check_activation(act)
        except ValueError as e:
            raise ValueError(f"QuantConfig.{e}") from None
        if embedding not in _EMBEDDINGS:
            raise ValueError(f"QuantConfig.embedding: expected None or 'int8', got {embedding!r}")
        if on_unsupported not in _ON_UNSUPPORTED:
            raise ValueError(f"QuantConfig.on_unsupported: expected 'raise' or 'float', got {on_unsupported!r}")
        excl = (exclude,) if isinstance(exclude, str) else tuple(exclude)
        if not all(isinstance(p, str) for p in excl):
            raise TypeError("QuantConfig.exclude: expected module-name patterns (strings)")
        algo = _algorithm(algorithm)
        clips = algo is not None and (algo.name == "mse" or (algo.name in ("awq", "autoround") and algo.clip))
        if clips and getattr(w, "double_quant", False):
            raise ValueError("QuantConfig.algorithm: MSE clipping searches float32 scales; nf4 with "
                             "double_quant stores int8 scale codes")
        if algo is not None and algo.name == "smoothquant" and not act.quantized:
            raise ValueError("QuantConfig.algorithm: SmoothQuant migrates activation outliers for quantized "
                             f"activations (static or dynamic), not {act!r}; for weight-only formats use 'awq'")
        if not isinstance(bias_correction, bool):
            raise TypeError(f"QuantConfig.bias_correction: expected a bool, got {type(bias_correction).__name__}")
        if algo is not None and type(w).column_quantizer is WeightScheme.column_quantizer:
            raise ValueError(f"QuantConfig.algorithm: {algo.name.upper()} needs fixed-parameter rounding, which "
                             f"{w.describe()} do not have (it supports int8, int4, uint4 and nf4 weights)")
        from .rotation import as_rotation

        set_ = object.__setattr__
        set_(self, "rotation", as_rotation(rotation))
        set_(self, "algorithm", algo)
        set_(self, "bias_correction", bias_correction)
        set_(self, "weight", w)
        set_(self, "activation", act)
        set_(self, "embedding", embedding)
        set_(self, "exclude", excl)
        set_(self, "on_unsupported", on_unsupported)
        set_(self, "per_layer", {})
        per_layer = {} if per_layer is None else per_layer
        if not isinstance(per_layer, Mapping):
            raise TypeError("QuantConfig.per_layer: expected a mapping of pattern -> QuantConfig or dict")
        resolved = {}
        for pattern, sub in per_layer.items():
            if not isinstance(pattern, str):
                raise TypeError(f"QuantConfig.per_layer: pattern {pattern!r} is not a string")
            if isinstance(sub, Mapping):
                try:
                    sub = self._override(dict(sub))
                except (TypeError, ValueError) as e:
                    raise type(e)(f"QuantConfig.per_layer[{pattern!r}]: {e}") from None
            elif not isinstance(sub, QuantConfig):
                raise TypeError(f"QuantConfig.per_layer[{pattern!r}]: expected a QuantConfig or dict")
            resolved[pattern] = sub
        set_(self, "per_layer", resolved)

    # -- derived configs ---------------------------------------------------------------------

    def _override(self, changes: dict[str, Any]) -> QuantConfig:
        """This config (without per_layer / exclude) with ``changes`` (QuantConfig keywords)
        applied; weight options that still apply to a new format are kept."""
        allowed = {"weight", "activation", "embedding", "on_unsupported", "algorithm", "bias_correction", "rotation",
                   *_WEIGHT_OPTIONS,
                   *_ACT_OPTIONS}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}"
                             + close_matches(sorted(unknown)[0], sorted(allowed)))
        w = changes.get("weight", self.weight)
        given = {k: changes[k] for k in _WEIGHT_OPTIONS if k in changes}
        if isinstance(w, str):
            cls = weight_scheme(w, "weight").__class__
            carried = {k: v for k, v in _weight_options(self.weight).items() if k in cls.options}
            if "group_size" in carried and "group_size" not in given and cls.name != self.weight.name:
                if carried["group_size"] is None:
                    carried.pop("group_size")
            w = weight_scheme(w, "weight", **{**carried, **given})
        elif given:
            opts = {**_weight_options(w), **given}
            w = weight_scheme(w.name, "weight", **opts)
        act_given = {k: changes[k] for k in _ACT_OPTIONS if k in changes}
        if "activation" in changes:
            act = changes["activation"]
        else:
            act = self.activation if w.supports(self.activation) else w.default_activation()
        if act_given:
            base = activation_scheme(act) if act != "auto" else w.default_activation()
            if not isinstance(base, StaticActivations):
                raise ValueError("observer/activation_dtype: they refine static activations")
            act = StaticActivations(observer=act_given.get("observer", base.observer),
                                    dtype=act_given.get("activation_dtype", base.dtype))
        return QuantConfig(w, act, embedding=changes.get("embedding", self.embedding),
                           on_unsupported=changes.get("on_unsupported", self.on_unsupported),
                           algorithm=changes.get("algorithm", self.algorithm),
                           bias_correction=changes.get("bias_correction", self.bias_correction),
                           rotation=changes.get("rotation", self.rotation))

    def with_weight(self, weight: Any) -> QuantConfig:
        """This config with another weight format, keeping what still applies: the options of the
        new format (``group_size``, ``granularity``, ...) carry over; the activation mode is kept
        when the new format's kernel runs it, else it becomes that format's default (float for
        weight-only formats). ``exclude`` and ``per_layer`` are kept.

        Example:
            >>> cfg = lowbit.QuantConfig(weight="int4", group_size=64)
            >>> cfg.with_weight("int8").weight, cfg.with_weight("nf4").weight.group_size
            (Int8Weights(granularity='per_channel', symmetric=True), 64)
        """
        c = self._override({"weight": weight})
        return QuantConfig(c.weight, c.activation, embedding=c.embedding, exclude=self.exclude,
                           per_layer=self.per_layer, on_unsupported=self.on_unsupported, algorithm=c.algorithm,
                           bias_correction=c.bias_correction, rotation=c.rotation)

    def is_excluded(self, name: str) -> bool:
        """True when ``name`` matches a pattern of ``exclude``."""
        return any(fnmatch.fnmatchcase(name, p) for p in self.exclude)

    def for_layer(self, name: str) -> QuantConfig:
        """The config that applies to the module called ``name`` (first matching per_layer entry)."""
        for pattern, sub in self.per_layer.items():
            if fnmatch.fnmatchcase(name, pattern):
                return sub
        return self

    def check_patterns(self, names: Any) -> None:
        """Raises ValueError for an ``exclude`` or ``per_layer`` pattern that matches none of the
        module ``names``, naming the close matches."""
        names = list(names)
        for where, patterns in (("exclude", self.exclude), ("per_layer", tuple(self.per_layer))):
            for p in patterns:
                if not any(fnmatch.fnmatchcase(n, p) for n in names):
                    raise ValueError(f"QuantConfig.{where}: {p!r} matches no layer of the model"
                                     + (close_matches(p, names) or " (module names look like "
                                        f"{', '.join(map(repr, [n for n in names if n][:4]))})"))

    # -- compatibility views -------------------------------------------------------------------

    @property
    def group_size(self) -> Optional[int]:
        """The weight scheme's group (block) size, or None."""
        return self.weight.group_size

    weight_group_size = group_size

    @property
    def granularity(self) -> str:
        return getattr(self.weight, "granularity", "per_channel")

    @property
    def symmetric_weights(self) -> bool:
        return getattr(self.weight, "symmetric", True)

    @property
    def log2_bits(self) -> int:
        return getattr(self.weight, "bits", 4)

    @property
    def observer(self) -> str:
        return getattr(self.activation, "observer", "minmax")

    @property
    def activation_dtype(self) -> str:
        return getattr(self.activation, "dtype", "uint8")

    @property
    def weight_bits(self) -> int:
        """Bits per stored weight code, scales not included."""
        return self.weight.code_bits

    # -- serialization -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; :meth:`from_dict` inverts it."""
        return {"weight": self.weight.to_dict(), "activation": self.activation.to_dict(),
                "embedding": self.embedding, "exclude": list(self.exclude),
                "per_layer": {k: v.to_dict() for k, v in self.per_layer.items()},
                "on_unsupported": self.on_unsupported,
                "algorithm": None if self.algorithm is None else self.algorithm.to_dict(),
                **({"bias_correction": True} if self.bias_correction else {}),
                **({"rotation": self.rotation.to_dict()} if self.rotation is not None else {})}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantConfig:
        """Inverse of :meth:`to_dict`; also reads the flat form of files written before schemes
        (``weight`` as a string with ``group_size``, ``granularity``, ... beside it)."""
        d = dict(d)
        d["exclude"] = tuple(d.get("exclude", ()))
        d["per_layer"] = {k: cls.from_dict(v) for k, v in d.get("per_layer", {}).items()}
        if isinstance(d.get("weight"), str):  # the flat form: options beside the names
            act = d.get("activation", "dynamic")
            d["activation"] = act
            if act != "static":
                d.pop("observer", None)
                d.pop("activation_dtype", None)
            opts = {k: d.pop(k) for k in _WEIGHT_OPTIONS if k in d}
            cls_ = weight_scheme(d["weight"], "weight").__class__
            opts = {k: v for k, v in opts.items() if k in cls_.options}
            d["weight"] = weight_scheme(d["weight"], "weight", **opts)
            if act is not None and act != "float" and not d["weight"].supports(activation_scheme(act)):
                d["activation"] = "auto"  # old configs let weight-only formats say "dynamic"
        return cls(**d)

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))


def as_config(config: Union[QuantConfig, Mapping[str, Any], None]) -> QuantConfig:
    """Accepts a QuantConfig, a dict of its keywords or None (the defaults)."""
    if config is None:
        return QuantConfig()
    if isinstance(config, QuantConfig):
        return config
    if isinstance(config, Mapping):
        return QuantConfig(**config)
    raise TypeError(f"config: expected a lowbit.QuantConfig, got {type(config).__name__}")
