"""lowbit.save / lowbit.load: quantized models as safetensors plus JSON metadata. Public torch layer.

The file holds the model's whole state_dict (quantized weights as stored: int8, 4-bit codes two
per byte, fp16/bf16, packed log2/ternary/binary codes; scales; float layers) and, in the
safetensors header metadata under the key "lowbit", a JSON document: format version, lowbit and
torch versions, the model class, the QuantConfig, each quantized layer's constructor arguments
and the layers kept in float with their reason. Files written before per-channel int4 weights
were packed (``weight_int8`` tensors, no ``group_size`` in the layer specs) still load.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any, Optional, Union

import torch
from torch import nn

import lowbit

from ..core.config import QuantConfig
from ..nn import QuantConv1d, QuantConv2d, QuantEmbedding, QuantLinear
from ..nn.linear import _QuantBase
from ._torch_ops import pack_nibbles
from .convert import _CONFIG_ATTR, _REASONS_ATTR, _set_submodule

__all__ = ["load", "save"]

FORMAT = "lowbit.model/1"
_KINDS = {"QuantLinear": QuantLinear, "QuantConv2d": QuantConv2d, "QuantConv1d": QuantConv1d,
          "QuantEmbedding": QuantEmbedding}

PathLike = Union[str, "os.PathLike[str]"]
# Scheme options of layer specs written before weight schemes (flat keywords beside the format name).
_FLAT_OPTIONS = ("group_size", "granularity", "symmetric_weights", "log2_bits", "activation_dtype")


def _upgrade(name: str, spec: dict[str, Any], tensors: dict[str, torch.Tensor], path: str) -> dict[str, Any]:
    """Turns layer specs of older files (format names with flat options) into scheme dicts and packs
    their one-per-byte int4 weights."""
    if spec.get("kind") not in ("QuantLinear", "QuantConv2d", "QuantConv1d"):
        return spec
    spec = dict(spec)
    try:
        if isinstance(spec.get("weight"), str):
            flat = {k: spec.pop(k) for k in _FLAT_OPTIONS if k in spec}
            flat["activation"] = spec.pop("activation", "dynamic")
            cfg = QuantConfig.from_dict({"weight": spec["weight"], **flat})
        else:
            cfg = QuantConfig(spec["weight"], spec["activation"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"lowbit.load: '{path}': layer '{name}' has an unknown weight scheme: {e}") from None
    spec["weight"], spec["activation"] = cfg.weight.to_dict(), cfg.activation.to_dict()
    old = f"{name}.weight_int8"
    if cfg.weight.name == "int4" and cfg.weight.group_size is None and old in tensors:
        tensors[f"{name}.weight_packed"] = pack_nibbles(tensors.pop(old))
    return spec


def _metadata(model: nn.Module) -> dict[str, Any]:
    layers = {
        n: m.spec() for n, m in model.named_modules() if isinstance(m, (_QuantBase, QuantEmbedding))
    }
    cfg = getattr(model, _CONFIG_ATTR, None)
    cls = type(model)
    return {
        "format": FORMAT,
        "lowbit_version": lowbit.__version__,
        "torch_version": torch.__version__,
        "model_class": f"{cls.__module__}:{cls.__qualname__}",
        "config": cfg.to_dict() if isinstance(cfg, QuantConfig) else None,
        "layers": layers,
        "float_layers": dict(getattr(model, _REASONS_ATTR, {})),
    }


def save(model: nn.Module, path: PathLike) -> None:
    """Writes ``model`` (quantized or not) to ``path`` as safetensors + JSON metadata.

    Tensors are copied to CPU; tensors sharing memory are stored once each (safetensors has no
    aliasing). QAT models: :func:`lowbit.convert` them first.

    Raises:
        TypeError: ``model`` is not an nn.Module.
        ValueError: the model still holds QAT modules.

    Example:
        >>> import torch, tempfile, os
        >>> m = lowbit.quantize_model(torch.nn.Sequential(torch.nn.Linear(8, 2)))
        >>> path = os.path.join(tempfile.mkdtemp(), "m.safetensors")
        >>> lowbit.save(m, path)
        >>> m2 = lowbit.load(path, torch.nn.Sequential(torch.nn.Linear(8, 2)))
        >>> bool(torch.equal(m(torch.ones(1, 8)), m2(torch.ones(1, 8))))
        True
    """
    from safetensors.torch import save_file

    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    from ..nn import QATConv2d, QATLinear

    qat = [n for n, m in model.named_modules() if isinstance(m, (QATLinear, QATConv2d))]
    if qat:
        raise ValueError(
            f"save: layer '{qat[0]}' is a QAT module; call lowbit.convert(model) before saving"
        )
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in model.state_dict().items():
        t = v.detach().to("cpu").contiguous()
        if t.data_ptr() in seen and t.numel():
            t = t.clone()
        seen.add(t.data_ptr())
        tensors[k] = t
    save_file(tensors, os.fspath(path), metadata={"lowbit": json.dumps(_metadata(model))})


def _read(path: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors import safe_open

    if not os.path.exists(path):
        raise FileNotFoundError(f"lowbit.load: no such file: '{path}'")
    try:
        with safe_open(path, framework="pt") as f:
            raw = (f.metadata() or {}).get("lowbit")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise ValueError(
            f"lowbit.load: '{path}' is not a readable safetensors file (corrupted or truncated?): {e}"
        ) from e
    if raw is None:
        raise ValueError(
            f"lowbit.load: '{path}' has no lowbit metadata (not written by lowbit.save)"
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"lowbit.load: '{path}' has corrupted lowbit metadata: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(
            f"lowbit.load: '{path}' has format {meta.get('format') if isinstance(meta, dict) else None!r}, "
            f"expected {FORMAT!r}"
        )
    return meta, tensors


def _skeleton(meta: dict[str, Any], path: str) -> nn.Module:
    module_name, _, qualname = meta.get("model_class", "").partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj()
    except Exception as e:
        raise ValueError(
            f"lowbit.load: cannot rebuild {meta.get('model_class')!r} saved in '{path}' without arguments ({e}); "
            "pass a float model of the same architecture as `model`"
        ) from e


def _check_layer(
    float_mod: Optional[nn.Module], name: str, spec: dict[str, Any], path: str
) -> None:
    kind = spec.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"lowbit.load: '{path}': layer '{name}' has unknown kind {kind!r}")
    if float_mod is None:
        raise ValueError(
            f"lowbit.load: '{path}' has quantized layer '{name}', which the model does not have "
            "(different architecture?)"
        )
    if isinstance(float_mod, _KINDS[kind]):
        got = float_mod.spec()
        if got != spec:
            raise ValueError(
                f"lowbit.load: '{path}': layer '{name}' is {spec}, the model's is {got}"
            )
        return
    if kind == "QuantLinear":
        ok = isinstance(float_mod, nn.Linear) and (
            float_mod.in_features,
            float_mod.out_features,
        ) == (spec["in_features"], spec["out_features"])
        want = f"Linear({spec['in_features']}, {spec['out_features']})"
    elif kind == "QuantEmbedding":
        ok = isinstance(float_mod, nn.Embedding) and (
            float_mod.num_embeddings,
            float_mod.embedding_dim,
        ) == (spec["num_embeddings"], spec["embedding_dim"])
        want = f"Embedding({spec['num_embeddings']}, {spec['embedding_dim']})"
    else:
        base, ks = (nn.Conv1d, spec["kernel_size"]) if kind == "QuantConv1d" else (nn.Conv2d, spec["kernel_size"])
        shown = tuple(ks) if isinstance(ks, list) else ks
        ok = isinstance(float_mod, base) and (
            float_mod.in_channels,
            float_mod.out_channels,
            list(float_mod.kernel_size) if base is nn.Conv2d else float_mod.kernel_size[0],
            float_mod.groups,
        ) == (spec["in_channels"], spec["out_channels"], ks, spec.get("groups", 1))
        want = f"{base.__name__}({spec['in_channels']}, {spec['out_channels']}, kernel_size={shown})"
    if not ok:
        raise ValueError(
            f"lowbit.load: '{path}': layer '{name}' was {want} when saved, the model has "
            f"{float_mod!r} (different architecture?)"
        )


def load(path: PathLike, model: Optional[nn.Module] = None) -> nn.Module:
    """Loads a model written by :func:`save`.

    ``model`` is a float model of the same architecture (a fresh skeleton is fine: its weights are
    replaced); its Linear / Conv2d layers that were quantized become QuantLinear / QuantConv2d (in
    the saved weight format) and every tensor is loaded, so outputs are identical to the saved
    model's. It is modified in place, put in eval mode (the layers are inference layers),
    and returned. Without ``model`` the saved class is imported and built with no arguments.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a corrupted file or one not written by lowbit.save (names the file), or a model
            of another architecture (names the file and the layer or tensor).
    """
    path = os.fspath(path)
    meta, tensors = _read(path)
    if model is None:
        model = _skeleton(meta, path)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    replaced: dict[str, tuple[nn.Module, nn.Module]] = {}
    for name, spec in meta.get("layers", {}).items():
        spec = _upgrade(name, spec, tensors, path)
        try:
            current = model.get_submodule(name)
        except AttributeError:
            current = None
        _check_layer(current, name, spec, path)
        if isinstance(current, _KINDS[spec["kind"]]):
            continue
        kwargs = {k: v for k, v in spec.items() if k != "kind"}
        if spec["kind"] == "QuantLinear":
            q = QuantLinear(**kwargs)
        elif spec["kind"] == "QuantEmbedding":
            q = QuantEmbedding(**kwargs)
        elif spec["kind"] == "QuantConv1d":
            q = QuantConv1d(**kwargs)
        else:
            for k in ("kernel_size", "stride", "padding", "dilation"):
                kwargs[k] = tuple(kwargs[k])
            q = QuantConv2d(**kwargs)
        q.layer_name = name
        q._float_nbytes = sum(
            p.numel() * p.element_size() for p in current.parameters(recurse=False)
        )
        replaced[name] = (current, q)
    for name, (_, q) in replaced.items():
        _set_submodule(model, name, q)
    try:
        expected = model.state_dict()
        missing = [k for k in expected if k not in tensors]
        unexpected = [k for k in tensors if k not in expected]
        if missing or unexpected:
            raise ValueError(
                f"lowbit.load: '{path}' does not match the model (different architecture?): "
                f"missing tensors {missing[:5]}, unexpected tensors {unexpected[:5]}"
            )
        for k, t in tensors.items():
            if tuple(t.shape) != tuple(expected[k].shape) or t.dtype != expected[k].dtype:
                raise ValueError(
                    f"lowbit.load: '{path}': tensor '{k}' is {t.dtype}{tuple(t.shape)} in the file, "
                    f"the model expects {expected[k].dtype}{tuple(expected[k].shape)}"
                )
    except ValueError:
        for name, (orig, _) in replaced.items():  # leave the caller's model as it was
            _set_submodule(model, name, orig)
        raise
    model.load_state_dict(tensors, strict=True)
    model.eval()  # inference layers; BatchNorm statistics must not move on the first batch
    setattr(model, _REASONS_ATTR, dict(meta.get("float_layers", {})))
    if meta.get("config") is not None:
        setattr(model, _CONFIG_ATTR, QuantConfig.from_dict(meta["config"]))
    return model
