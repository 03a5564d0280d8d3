"""QuantConfig: what quantize_model / prepare_qat do to each layer. Public API; no torch import.

A small frozen dataclass in the style of torchao's configs: weight dtype, activation mode,
granularity, observer, plus per-layer overrides (mixed precision) and exclusions.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Optional, Union

__all__ = ["QuantConfig"]

_WEIGHTS = ("int8", "int4")
_ACTIVATIONS = ("dynamic", "dynamic_per_tensor", "static", None)
_GRANULARITIES = ("per_channel", "per_tensor")
_OBSERVERS = ("minmax", "moving_average", "histogram", "percentile", "entropy")
_ACT_DTYPES = ("uint8", "int8")


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize a model's Linear and Conv2d layers.

    Args:
        weight: "int8" or "int4" (4-bit values in [-7, 7], stored one per byte for the int8
            kernels).
        activation: "dynamic" (activations quantized per row at run time), "dynamic_per_tensor",
            "static" (per-tensor parameters fixed by calibration or QAT) or None (weight-only: the
            weights are stored quantized and dequantized for a float matmul).
        granularity: "per_channel" (one weight scale per output channel) or "per_tensor".
        symmetric_weights: zero point 0 for weights (required by the int8 kernels; False is only
            allowed weight-only).
        observer: activation observer for static calibration: "minmax", "moving_average",
            "histogram" (MSE-optimal clipping), "percentile" or "entropy".
        activation_dtype: "uint8" (asymmetric, the default) or "int8" for static activations.
        embedding: "int8" also stores ``nn.Embedding`` tables as int8 rows (weight-only, one scale
            per row; 4x smaller vocabularies), None keeps them float.
        exclude: module-name patterns (fnmatch, e.g. "classifier" or "encoder.*.output.dense")
            kept in float32.
        per_layer: pattern -> QuantConfig (or dict of overrides) for mixed precision; the first
            matching pattern wins.

    Example:
        >>> cfg = lowbit.QuantConfig(activation="static", per_layer={"fc2": {"weight": "int4"}})
        >>> cfg.for_layer("fc2").weight, cfg.for_layer("fc1").weight
        ('int4', 'int8')
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
        if not self.symmetric_weights and self.activation is not None:
            raise ValueError(
                "QuantConfig.symmetric_weights=False: the int8 kernels need symmetric weights; "
                "asymmetric weights are only supported weight-only (activation=None)"
            )
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
                sub = replace(self, per_layer={}, exclude=(), **dict(sub))
            elif not isinstance(sub, QuantConfig):
                raise TypeError(
                    f"QuantConfig.per_layer[{pattern!r}]: expected a QuantConfig or dict"
                )
            resolved[pattern] = sub
        object.__setattr__(self, "per_layer", resolved)

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
        return 4 if self.weight == "int4" else 8

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
