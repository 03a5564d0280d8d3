"""lowbit.save / lowbit.load: quantized models as safetensors plus JSON metadata. Public torch layer.

The file holds the model's whole state_dict (quantized weights as stored: int8, 4-bit codes two
per byte, fp16/bf16, packed log2/ternary/binary codes; scales; float layers) and, in the
safetensors header metadata under the key "lowbit", a JSON document: format version, lowbit and
torch versions, the model class, the QuantConfig, each quantized layer's constructor arguments
and the layers kept in float with their reason. A tensor used by several modules (a tied
embedding and LM head, Linear layers sharing a weight) is stored once; its other names are listed
under "aliases" (name -> stored name) and tied again on load. Files written before per-channel
int4 weights were packed (``weight_int8`` tensors, no ``group_size`` in the layer specs) still load.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from typing import Any, Optional, Union

import torch
from torch import nn

import lowbit

from ..core.config import QuantConfig
from ..nn import QuantConv1d, QuantConv2d, QuantEmbedding, QuantEmbeddingBag, QuantLinear
from ..nn._common import is_conv1d
from ..nn.attention import use_lowbit_attention_
from ..nn.chain import chain_int8_, chained_layers
from ..nn.decompose import decompose_saved_
from ..nn.fused import fuse_activations_, fused_activations
from ..nn.linear import _QuantBase
from ..nn.norm import use_lowbit_layernorm_
from ..nn.siblings import group_siblings_
from ._torch_ops import pack_nibbles
from .convert import _CONFIG_ATTR, _FOLDED_ATTR, _REASONS_ATTR, _aliases, _float_bytes, _set_submodule

__all__ = ["load", "save"]

FORMAT = "lowbit.model/1"
_KINDS = {"QuantLinear": QuantLinear, "QuantConv2d": QuantConv2d, "QuantConv1d": QuantConv1d,
          "QuantEmbedding": QuantEmbedding, "QuantEmbeddingBag": QuantEmbeddingBag}

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


def _metadata(model: nn.Module, aliases: dict[str, str]) -> dict[str, Any]:
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
        "aliases": aliases,
        "chains": [list(pair) for pair in chained_layers(model)],  # uint8 activations (lowbit.nn.chain)
        # activations run in place on a QuantLinear's result (lowbit.nn.fused)
        "inplace_activations": [list(pair) for pair in fused_activations(model)],
        "folded_batchnorms": dict(getattr(model, _FOLDED_ATTR, {})),  # conv -> BatchNorm (now Identity)
        "sparse": {n: m.__dict__["_lowbit_sparse"]["nnz"] for n, m in model.named_modules()
                   if "_lowbit_sparse" in m.__dict__},  # lowbit.sparse_storage: name -> stored nonzero codes
    }


def save(model: nn.Module, path: PathLike) -> None:
    """Writes ``model`` (quantized or not) to ``path`` as safetensors + JSON metadata.

    Tensors are copied to CPU. A tensor object used by several modules (tied weights) is stored
    once and its other names recorded as aliases (safetensors has no aliasing); other views of
    shared memory are stored as copies. QAT models: :func:`lowbit.convert` them first.

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
    aliases: dict[str, str] = {}
    stored: dict[int, str] = {}  # id of a module's tensor -> the name it is stored under
    seen: set[int] = set()
    for k, v in model.state_dict(keep_vars=True).items():
        if id(v) in stored:  # the same tensor object under another name: stored once
            aliases[k] = stored[id(v)]
            continue
        stored[id(v)] = k
        t = v.detach().to("cpu").contiguous()
        if t.data_ptr() in seen and t.numel():  # other views of shared memory: copies
            t = t.clone()
        seen.add(t.data_ptr())
        tensors[k] = t
    meta = _metadata(model, aliases)
    meta["checksums"] = {k: _digest(t) for k, t in tensors.items()}
    save_file(tensors, os.fspath(path), metadata={"lowbit": json.dumps(meta)})


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


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()).hexdigest()[:16]


def _check_checksums(meta: dict[str, Any], tensors: dict[str, torch.Tensor], path: str) -> None:
    """Tensor data against the SHA-256 prefixes :func:`save` recorded (files without them load)."""
    sums = meta.get("checksums")
    if sums is None:
        return
    if not isinstance(sums, dict) or set(sums) != set(tensors):
        raise ValueError(f"lowbit.load: '{path}': the checksum table does not list the file's tensors")
    for k, t in tensors.items():
        if _digest(t) != sums[k]:
            raise ValueError(f"lowbit.load: '{path}': tensor '{k}' does not match its checksum "
                             "(the file was damaged or edited)")


def _check_values(mod: nn.Module, name: str, state: dict[str, torch.Tensor], path: str) -> None:
    """Stored values a layer's kernels rely on: finite non-negative weight scales (positive for
    affine formats), zero points in their range, a finite positive activation scale."""
    def bad(what: str) -> ValueError:
        return ValueError(f"lowbit.load: '{path}': layer '{name}': {what}")

    scheme = getattr(mod, "scheme", None)
    if scheme is not None:
        stored = {k: v.numpy() if v.dtype != torch.bfloat16 else v.view(torch.int16).numpy()
                  for k, v in state.items() if k in scheme.storage_spec(mod.out_flat, mod.in_flat)}
        try:
            scheme.check_stored(stored)
        except ValueError as e:
            raise bad(str(e)) from None
    elif "weight_scale" in state and not bool(torch.all(torch.isfinite(state["weight_scale"])
                                                        & (state["weight_scale"] > 0))):
        raise bad("weight_scale must be finite and > 0")
    if "act_scale" in state:
        s = float(state["act_scale"])
        if not (math.isfinite(s) and s > 0):
            raise bad(f"act_scale must be finite and > 0, got {s}")
        lo, hi = (-128, 127) if mod.activation_dtype == "int8" else (0, 255)
        zp = int(state["act_zero_point"])
        if not lo <= zp <= hi:
            raise bad(f"act_zero_point {zp} is outside [{lo}, {hi}] for {mod.activation_dtype} activations")


def _skeleton(meta: dict[str, Any], path: str, trust: bool) -> nn.Module:
    """The saved model class built with no arguments, only with ``trust_model_class=True`` and only
    when it names an ``nn.Module`` subclass in a module that is already imported: a file must never
    import or call anything of its choosing (``os:abort``, ``builtins:input``, a ``.py`` beside it)."""
    name = meta.get("model_class")
    if not trust:
        raise ValueError(
            f"lowbit.load: '{path}' was saved from {name!r}; pass `model=` (a float model of that "
            "architecture, e.g. a fresh instance), or trust_model_class=True to build that class with no "
            "arguments (only nn.Module subclasses of modules already imported are accepted)")
    module_name, _, qualname = name.partition(":") if isinstance(name, str) else ("", "", "")
    obj: Any = sys.modules.get(module_name)
    if obj is None:
        raise ValueError(f"lowbit.load: '{path}' names {name!r}, whose module is not imported; import it "
                         "first (lowbit.load never imports modules named by a file) or pass `model=`")
    for part in qualname.split("."):
        if not part.isidentifier() or part.startswith("_"):
            raise ValueError(f"lowbit.load: '{path}' names {name!r}, which is not a public class path")
        obj = getattr(obj, part, None)
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ValueError(f"lowbit.load: '{path}' names {name!r}, which is not an nn.Module subclass")
    try:
        return obj()
    except Exception as e:
        raise ValueError(
            f"lowbit.load: cannot build {name!r} saved in '{path}' without arguments ({type(e).__name__}: {e}); "
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
        if is_conv1d(float_mod):  # transformers' Conv1D: weight (in, out)
            ok = tuple(float_mod.weight.shape) == (spec["in_features"], spec["out_features"])
        else:
            ok = isinstance(float_mod, nn.Linear) and (
                float_mod.in_features,
                float_mod.out_features,
            ) == (spec["in_features"], spec["out_features"])
        want = f"Linear({spec['in_features']}, {spec['out_features']}) or Conv1D"
    elif kind in ("QuantEmbedding", "QuantEmbeddingBag"):
        ok = isinstance(float_mod, nn.Embedding if kind == "QuantEmbedding" else nn.EmbeddingBag) and (
            float_mod.num_embeddings,
            float_mod.embedding_dim,
        ) == (spec["num_embeddings"], spec["embedding_dim"])
        want = f"{kind.removeprefix('Quant')}({spec['num_embeddings']}, {spec['embedding_dim']})"
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


def _tie(model: nn.Module, alias: str, src: str) -> None:
    """Makes the tensor called ``alias`` the same object as the one called ``src`` (a parameter or
    buffer), as it was in the saved model."""
    owners = []
    for key in (alias, src):
        mod_name, _, attr = key.rpartition(".")
        owners.append((model.get_submodule(mod_name) if mod_name else model, attr))
    (dst_mod, dst_attr), (src_mod, src_attr) = owners
    if src_attr in src_mod._parameters:
        dst_mod._parameters[dst_attr] = src_mod._parameters[src_attr]
    else:
        dst_mod._buffers[dst_attr] = src_mod._buffers[src_attr]


def load(path: PathLike, model: Optional[nn.Module] = None, *, trust_model_class: bool = False) -> nn.Module:
    """Loads a model written by :func:`save`.

    ``model`` is a float model of the same architecture (a fresh skeleton is fine: its weights are
    replaced); its Linear / transformers Conv1D / Conv2d layers that were quantized become
    QuantLinear / QuantConv2d (in the saved weight format) and every tensor is loaded, so outputs
    are identical to the saved model's; tensors the saved model shared (tied weights) are one
    object again. It is modified in place, put in eval mode (the layers are inference layers),
    and returned. A file is inert: without ``model`` it raises, unless ``trust_model_class=True``,
    and then builds the saved class with no arguments only when it is an ``nn.Module`` subclass of a
    module that is already imported (nothing is imported or called because a file names it).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a corrupted file or one not written by lowbit.save (names the file), or a model
            of another architecture (names the file and the layer or tensor).
    """
    path = os.fspath(path)
    meta, tensors = _read(path)
    if model is None:
        model = _skeleton(meta, path, trust_model_class)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    _check_checksums(meta, tensors, path)
    config = None
    if meta.get("config") is not None:  # parsed before anything changes
        try:
            config = QuantConfig.from_dict(meta["config"])
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise ValueError(f"lowbit.load: '{path}' has an invalid config: {e}") from None
    layers = meta.get("layers", {})
    if not isinstance(layers, dict):
        raise ValueError(f"lowbit.load: '{path}' has corrupted layer metadata")
    replaced: dict[str, tuple[nn.Module, nn.Module]] = {}
    model = decompose_saved_(model, tensors)  # saved with its layers decomposed (lowbit.nn.decompose)
    float_bytes = _float_bytes(model)
    module_aliases = _aliases(model)
    for name, spec in layers.items():
        if not isinstance(spec, dict):
            raise ValueError(f"lowbit.load: '{path}': layer '{name}' has corrupted metadata")
        spec = _upgrade(name, spec, tensors, path)
        try:
            current = model.get_submodule(name)
        except AttributeError:
            current = None
        _check_layer(current, name, spec, path)
        if isinstance(current, _KINDS[spec["kind"]]):
            continue
        kwargs = {k: v for k, v in spec.items() if k != "kind"}
        try:
            if spec["kind"] == "QuantConv2d":  # JSON lists back to nn.Conv2d's pairs
                for k in ("kernel_size", "stride", "padding", "dilation"):
                    kwargs[k] = tuple(kwargs[k])
            q = _KINDS[spec["kind"]](**kwargs)  # a known kind: _check_layer
        except (TypeError, ValueError, KeyError) as e:
            raise ValueError(f"lowbit.load: '{path}': layer '{name}' has an invalid spec: {e}") from None
        q.layer_name = name
        q._float_nbytes = float_bytes[name]
        if is_conv1d(current):
            q._float_type = type(current).__name__
        for alias in module_aliases[id(current)]:  # a module registered under several names
            replaced[alias] = (current, q)
    folded = meta.get("folded_batchnorms", {})
    if not isinstance(folded, dict) or not all(isinstance(v, str) for v in folded.values()):
        raise ValueError(f"lowbit.load: '{path}' has corrupted folded-BatchNorm metadata")
    for bn_name in folded.values():  # folded into the convolution's weights: Identity, as quantize_model left it
        try:
            bn = model.get_submodule(bn_name)
        except AttributeError:
            raise ValueError(f"lowbit.load: '{path}': the model has no BatchNorm '{bn_name}'") from None
        if not isinstance(bn, nn.Identity):
            replaced[bn_name] = (bn, nn.Identity())
    for name, (_, q) in replaced.items():
        _set_submodule(model, name, q)
    sparse = meta.get("sparse", {})  # layers stored as bitmask + values (lowbit.sparse_storage)
    if not isinstance(sparse, dict) or any(n not in replaced for n in sparse):
        for name, (orig, _) in replaced.items():
            _set_submodule(model, name, orig)
        raise ValueError(f"lowbit.load: '{path}' has corrupted sparse-layer metadata")
    from ..compress.sparse import _empty, dense_codes

    for name, nnz in sparse.items():
        try:
            _empty(replaced[name][1], nnz)
        except ValueError as e:
            for n, (orig, _) in replaced.items():
                _set_submodule(model, n, orig)
            raise ValueError(f"lowbit.load: '{path}': layer '{name}' has invalid sparse metadata: {e}") from None
    tied = meta.get("aliases", {})
    if not isinstance(tied, dict) or not all(isinstance(a, str) and isinstance(b, str) for a, b in tied.items()):
        raise ValueError(f"lowbit.load: '{path}' has corrupted alias metadata")
    for alias, src in tied.items():
        if src in tensors and alias not in tensors:
            tensors[alias] = tensors[src]
    try:
        expected = model.state_dict()
        if any(a not in expected or b not in expected for a, b in tied.items()):
            raise ValueError(f"lowbit.load: '{path}': its aliases name tensors the model does not have")
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
        for name in layers:  # the values too: scales, zero points, activation parameters
            mod = model.get_submodule(name)
            if isinstance(mod, (_QuantBase, QuantEmbedding)):
                _check_values(mod, name, {k[len(name) + 1:]: t for k, t in tensors.items()
                                          if k.startswith(name + ".") and "." not in k[len(name) + 1:]}, path)
    except ValueError:
        for name, (orig, _) in replaced.items():  # leave the caller's model as it was
            _set_submodule(model, name, orig)
        raise
    # a skeleton on the meta device (issue 17: no float weights materialized) takes the file's tensors
    model.load_state_dict(tensors, strict=True, assign=any(t.is_meta for t in expected.values()))
    for alias, src in tied.items():
        _tie(model, alias, src)
    for name in sparse:  # the mask must hold as many bits as values were stored
        try:
            dense_codes(model.get_submodule(name))
        except ValueError as e:
            raise ValueError(f"lowbit.load: '{path}': layer '{name}': {e}") from None
    model.eval()  # inference layers; BatchNorm statistics must not move on the first batch
    setattr(model, _REASONS_ATTR, dict(meta.get("float_layers", {})))
    if config is not None:
        setattr(model, _CONFIG_ATTR, config)
    if folded:
        setattr(model, _FOLDED_ATTR, dict(folded))
    if meta.get("chains"):  # rebuilt from the model's structure (the same layers for the same architecture)
        chain_int8_(model)
    if meta.get("inplace_activations"):
        fuse_activations_(model)
    group_siblings_(model)  # runtime forms (lowbit.nn.siblings, .attention, .norm): nothing to store
    use_lowbit_attention_(model)
    use_lowbit_layernorm_(model)
    return model
