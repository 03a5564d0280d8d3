"""QuantConfig: what quantize_model / prepare_qat do to each layer. Public API; no torch import.

A small frozen dataclass in the style of torchao's configs: weight format, activation mode,
granularity, observer, plus per-layer overrides (mixed precision) and exclusions.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Optional, Union

__all__ = ["QuantConfig"]

_WEIGHTS = ("int8", "int4", "uint4", "nf4", "fp16", "bf16", "log2", "ternary", "binary")
# Formats without an activation-quantizing kernel: their layers always multiply float activations.
WEIGHT_ONLY_FORMATS = ("uint4", "fp16", "bf16", "log2", "ternary", "binary")
# Formats with group (block) scales along the input dimension, and their default group size.
_GROUPED = ("int4", "uint4", "nf4")
_DEFAULT_GROUP = {"nf4": 64}
# Formats that have zero points (symmetric_weights applies to them only).
_AFFINE = ("int8", "int4", "uint4")
_CODE_BITS = {"int8": 8, "int4": 4, "uint4": 4, "nf4": 4, "fp16": 16, "bf16": 16, "ternary": 2, "binary": 1}
_ACTIVATIONS = ("dynamic", "dynamic_per_tensor", "static", None)
_GRANULARITIES = ("per_channel", "per_tensor")
_OBSERVERS = ("minmax", "moving_average", "histogram", "percentile", "entropy")
_ACT_DTYPES = ("uint8", "int8")


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize a model's Linear and Conv2d layers.

    Weight formats and the kernel each one runs (``lowbit.summary`` shows the choice per layer):

    ========================  =================================================================
    weight (group_size)       storage and kernel
    ========================  =================================================================
    "int8"                    int8 per channel/tensor; lowbit's int8 kernels
    "int4" (None)             values in [-7, 7] per channel/tensor, packed two per byte; run by
                              the int8 kernels (the QAT format)
    "int4" (32, 64, 128, ...) symmetric codes in [-8, 7] with one scale per group of inputs,
                              packed two per byte; lowbit's fused 4-bit kernel (int8 activations
                              per row with ``activation="dynamic"``, float32 with None).
                              With ``symmetric_weights=False``: codes plus group zero points,
                              weight-only (dequantized, then a float matmul)
    "uint4" (None or groups)  codes in [0, 15] with zero points, weight-only
    "nf4" (default 64)        bitsandbytes' NormalFloat codes, absmax per block of inputs; the
                              fused 4-bit kernel: int8 activations per row and block with
                              ``activation="dynamic"`` (the levels then rounded to int8, within
                              0.5 / 127 of the block absmax), exact float32 with None
    "fp16", "bf16"            16-bit floats, weight-only
    "log2"                    sign + power-of-two codes (``log2_bits`` 4 or 8), weight-only
    "ternary", "binary"       {-a, 0, +a} (2 bits) / {-a, +a} (1 bit) codes, weight-only
    ========================  =================================================================

    The weight-only formats (uint4, fp16, bf16, log2, ternary, binary) are storage and accuracy
    formats, not speed formats: each forward call dequantizes the weight with lowbit's kernels
    into a temporary float32 matrix and runs a float matmul. Group-wise int4 and nf4 run the
    fused 4-bit kernels, which never materialize the float weight.

    Args:
        weight: one of "int8", "int4", "uint4", "nf4", "fp16", "bf16", "log2", "ternary",
            "binary" (see the table).
        activation: "dynamic" (activations quantized per row at run time), "dynamic_per_tensor",
            "static" (per-tensor parameters fixed by calibration or QAT) or None (weight-only: the
            weights are stored quantized and activations stay float). The weight-only formats have
            no kernel that quantizes activations: with them "dynamic" (the default) means float
            activations, and "static" / "dynamic_per_tensor" raise.
        granularity: "per_channel" (one weight scale per output channel) or "per_tensor". Ignored by
            fp16/bf16 (no scales); group-wise formats (``group_size`` set, and nf4) need
            "per_channel".
        symmetric_weights: zero point 0 for int8/int4 weights (required by the int8 and 4-bit
            kernels; False is only allowed weight-only). uint4: True puts the zero point mid-range
            (8), as :func:`lowbit.choose_qparams` does; False fits it to the range. Other formats
            have no zero point and ignore it.
        observer: activation observer for static calibration: "minmax", "moving_average",
            "histogram" (MSE-optimal clipping), "percentile" or "entropy".
        activation_dtype: "uint8" (asymmetric, the default) or "int8" for static activations.
        embedding: "int8" also stores ``nn.Embedding`` tables as int8 rows (weight-only, one scale
            per row; 4x smaller vocabularies), None keeps them float.
        exclude: module-name patterns (fnmatch, e.g. "classifier" or "encoder.*.output.dense")
            kept in float32.
        per_layer: pattern -> QuantConfig (or dict of overrides) for mixed precision; the first
            matching pattern wins. A dict that changes ``weight`` is applied to
            :meth:`with_weight` of this config (so ``group_size`` is kept only when the new format
            takes groups), a QuantConfig is used as is.
        group_size: inputs per scale for "int4" / "uint4" (None: per channel or per tensor, as
            ``granularity`` says) and "nf4" (None: 64, as in QLoRA); must be None for the other
            formats. Consecutive inputs of each output row form a group; for Conv2d the inputs are
            the (kh, kw, in_channels) patch elements. The 4-bit kernel may not accept every
            (in_features, group_size) pair: layers it rejects stay float, with the reason in
            :func:`lowbit.summary`.
        log2_bits: code width of "log2" weights, 4 or 8 (ignored by other formats).

    Example:
        >>> cfg = lowbit.QuantConfig(activation="static", per_layer={"fc2": {"weight": "int4"}})
        >>> cfg.for_layer("fc2").weight, cfg.for_layer("fc1").weight
        ('int4', 'int8')
        >>> nf4 = lowbit.QuantConfig(weight="nf4")
        >>> nf4.weight_group_size, nf4.effective_activation, nf4.weight_bits
        (64, 'dynamic', 4)
        >>> lowbit.QuantConfig(weight="int4", group_size=64).effective_activation
        'dynamic'
    """

    weight: str = "int8"
    activation: Optional[str] = "dynamic"
    granularity: str = "per_channel"
    symmetric_weights: bool = True
    observer: str = "minmax"
    activation_dtype: str = "uint8"
    embedding: Optional[str] = None
    exclude: tuple = ()
    per_layer: Mapping[str, Any] = field(default_factory=dict)
    group_size: Optional[int] = None
    log2_bits: int = 4

    def __post_init__(self) -> None:
        if self.weight not in _WEIGHTS:
            raise ValueError(f"QuantConfig.weight: expected one of {_WEIGHTS}, got {self.weight!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"QuantConfig.activation: expected one of {_ACTIVATIONS}, got {self.activation!r}"
            )
        if self.granularity not in _GRANULARITIES:
            raise ValueError(
                f"QuantConfig.granularity: expected one of {_GRANULARITIES}, got {self.granularity!r}"
            )
        if self.observer not in _OBSERVERS:
            raise ValueError(
                f"QuantConfig.observer: expected one of {_OBSERVERS}, got {self.observer!r}"
            )
        if self.activation_dtype not in _ACT_DTYPES:
            raise ValueError(
                f"QuantConfig.activation_dtype: expected one of {_ACT_DTYPES}, got {self.activation_dtype!r}"
            )
        if self.embedding not in (None, "int8"):
            raise ValueError(
                f"QuantConfig.embedding: expected None or 'int8', got {self.embedding!r}"
            )
        if not isinstance(self.symmetric_weights, bool):
            raise TypeError("QuantConfig.symmetric_weights: expected a bool")
        if not self.symmetric_weights and self.activation is not None and self.weight in ("int8", "int4"):
            raise ValueError(
                "QuantConfig.symmetric_weights=False: the int8 and 4-bit kernels need symmetric weights; "
                "asymmetric int8/int4 weights are only supported weight-only (activation=None)"
            )
        self._check_format()
        excl = (self.exclude,) if isinstance(self.exclude, str) else tuple(self.exclude)
        if not all(isinstance(p, str) for p in excl):
            raise TypeError("QuantConfig.exclude: expected module-name patterns (strings)")
        object.__setattr__(self, "exclude", excl)
        if not isinstance(self.per_layer, Mapping):
            raise TypeError(
                "QuantConfig.per_layer: expected a mapping of pattern -> QuantConfig or dict"
            )
        resolved = {}
        for pattern, sub in self.per_layer.items():
            if not isinstance(pattern, str):
                raise TypeError(f"QuantConfig.per_layer: pattern {pattern!r} is not a string")
            if isinstance(sub, Mapping):
                unknown = set(sub) - {f.name for f in fields(QuantConfig)}
                if unknown:
                    raise ValueError(
                        f"QuantConfig.per_layer[{pattern!r}]: unknown fields {sorted(unknown)}"
                    )
                changes = self._weight_changes(sub["weight"]) if "weight" in sub else {}
                try:
                    sub = replace(self, per_layer={}, exclude=(), **{**changes, **dict(sub)})
                except (TypeError, ValueError) as e:
                    raise type(e)(f"QuantConfig.per_layer[{pattern!r}]: {e}") from None
            elif not isinstance(sub, QuantConfig):
                raise TypeError(
                    f"QuantConfig.per_layer[{pattern!r}]: expected a QuantConfig or dict"
                )
            resolved[pattern] = sub
        object.__setattr__(self, "per_layer", resolved)

    def _check_format(self) -> None:
        """Validates the weight-format fields (group_size, log2_bits) and their combinations."""
        gs = self.group_size
        if gs is not None:
            if isinstance(gs, bool) or not isinstance(gs, int):
                raise TypeError(f"QuantConfig.group_size: expected an int or None, got {type(gs).__name__}")
            if gs <= 0:
                raise ValueError(f"QuantConfig.group_size: must be positive, got {gs}")
            if self.weight not in _GROUPED:
                raise ValueError(
                    f"QuantConfig.group_size: weight={self.weight!r} has no group scales "
                    f"(group_size is for {', '.join(_GROUPED)}); use group_size=None"
                )
            if self.weight == "nf4" and gs % 2:
                raise ValueError(f"QuantConfig.group_size: nf4 blocks must have an even length, got {gs}")
        if isinstance(self.log2_bits, bool) or self.log2_bits not in (4, 8):
            raise ValueError(f"QuantConfig.log2_bits: expected 4 or 8, got {self.log2_bits!r}")
        if self.weight_group_size is not None and self.granularity != "per_channel":
            raise ValueError(
                f"QuantConfig.granularity: {self.weight} weights with group_size={self.weight_group_size} "
                "have one scale per group of each output channel; use granularity='per_channel'"
            )
        if self.weight == "nf4" and self.activation in ("static", "dynamic_per_tensor"):
            raise ValueError(
                f"QuantConfig.activation: {self.activation!r} with weight='nf4': the NF4 kernels take "
                "activations quantized per row and block ('dynamic') or float32 (None)"
            )
        if self.weight in WEIGHT_ONLY_FORMATS and self.activation in ("static", "dynamic_per_tensor"):
            raise ValueError(
                f"QuantConfig.activation: {self.activation!r} with weight={self.weight!r} makes no sense: "
                f"{self.weight} is a weight-only format (no kernel quantizes activations for it), so "
                "activations stay float; use activation=None (or 'dynamic', which means the same here)"
            )
        if self.weight == "int4" and self.group_size is not None and self.activation in (
            "static",
            "dynamic_per_tensor",
        ):
            raise ValueError(
                f"QuantConfig.activation: {self.activation!r} is not supported with group-wise int4 "
                f"weights (group_size={self.group_size}): the 4-bit kernel quantizes activations per "
                "row at run time ('dynamic') or keeps them float (None); group_size=None gives "
                "per-channel int4 weights, which take static activations"
            )

    @property
    def weight_group_size(self) -> Optional[int]:
        """The group (block) size the weights use: ``group_size``, 64 for nf4 when it is None, else
        None (per channel / per tensor / no scales)."""
        if self.group_size is not None:
            return self.group_size
        return _DEFAULT_GROUP.get(self.weight)

    @property
    def effective_activation(self) -> Optional[str]:
        """The activation mode the layers actually run: ``activation``, or None (float
        activations) for the weight-only formats."""
        if self.weight in WEIGHT_ONLY_FORMATS:
            return None
        return self.activation

    def _weight_changes(self, weight: str) -> dict[str, Any]:
        changes: dict[str, Any] = {"weight": weight}
        if weight not in _GROUPED:
            changes["group_size"] = None
        if (weight in WEIGHT_ONLY_FORMATS or weight == "nf4") and self.activation in ("static", "dynamic_per_tensor"):
            changes["activation"] = None
        if weight in _DEFAULT_GROUP:  # always group-wise
            changes["granularity"] = "per_channel"
        return changes

    def with_weight(self, weight: str) -> QuantConfig:
        """This config with another weight format, keeping what still applies: ``group_size``
        stays when ``weight`` takes groups (int4, uint4, nf4) and is reset to None otherwise;
        static or per-tensor dynamic activations become None for the weight-only formats, and
        granularity becomes "per_channel" for nf4 (always block-wise).

        Example:
            >>> cfg = lowbit.QuantConfig(weight="int4", group_size=64)
            >>> cfg.with_weight("int8").group_size, cfg.with_weight("nf4").group_size
            (None, 64)
        """
        return replace(self, **self._weight_changes(weight))

    def is_excluded(self, name: str) -> bool:
        """True when ``name`` matches a pattern of ``exclude``."""
        return any(fnmatch.fnmatchcase(name, p) for p in self.exclude)

    def for_layer(self, name: str) -> QuantConfig:
        """The config that applies to the module called ``name`` (first matching per_layer entry)."""
        for pattern, sub in self.per_layer.items():
            if fnmatch.fnmatchcase(name, pattern):
                return sub
        return self

    @property
    def weight_bits(self) -> int:
        """Bits per stored weight code, scales not included: int8 8, int4/uint4/nf4 4, fp16/bf16
        16, log2 4 or 8, ternary 2, binary 1."""
        return self.log2_bits if self.weight == "log2" else _CODE_BITS[self.weight]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; :meth:`from_dict` inverts it."""
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        d["exclude"] = list(self.exclude)
        d["per_layer"] = {k: v.to_dict() for k, v in self.per_layer.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantConfig:
        d = dict(d)
        d["exclude"] = tuple(d.get("exclude", ()))
        d["per_layer"] = {k: cls.from_dict(v) for k, v in d.get("per_layer", {}).items()}
        return cls(**d)

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))


def as_config(config: Union[QuantConfig, Mapping[str, Any], None]) -> QuantConfig:
    """Accepts a QuantConfig, a dict of its fields or None (the defaults)."""
    if config is None:
        return QuantConfig()
    if isinstance(config, QuantConfig):
        return config
    if isinstance(config, Mapping):
        return QuantConfig(**config)
    raise TypeError(f"config: expected a lowbit.QuantConfig, got {type(config).__name__}")
