"""lowbit.quantize_checkpoint: quantize a (sharded) safetensors checkpoint bigger than memory into a
lowbit file, one tensor at a time. Torch layer built on quantize_model's per-layer rules and
lowbit.save's format.

Reading: each input file's safetensors header is parsed and every tensor is read on its own with
``readinto`` into a fresh buffer (not memory-mapped: pages of a mapping stay in the process's
resident set until it is unmapped, so a mapped pass over the checkpoint would count the whole file).
Writing: tensors go to a temporary data file as they are made, with their SHA-256 prefixes; at the
end the safetensors header (with lowbit's metadata) is written and the data copied behind it in
16 MiB chunks. So peak memory is a small multiple of the largest layer's float weight (read,
widened to float32, quantized) plus the interpreter, torch and lowbit: tested, a 256 MiB float32
checkpoint of 16 MiB tensors within 160 MiB over the process's resident memory before the call;
``benchmarks/bench_checkpoint.py``, a 6 GiB bf16 checkpoint of 86 MiB tensors: +512 MiB (peak
738 MiB), the same as for a 0.5 GiB one.

The model is a skeleton: a model of the checkpoint's architecture, ideally built on the meta
device (``with torch.device("meta"): model = Net()``), which costs no memory. Its layers decide
what is quantized exactly as :func:`lowbit.quantize_model` would (candidates, ``exclude``,
``per_layer``, ``on_unsupported``), with round-to-nearest formats or ``algorithm="mse"``; every
other tensor is copied as stored. :func:`lowbit.load` then loads the file into a meta skeleton
without materializing float weights.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Mapping
from typing import Any, Union

import torch
from torch import nn

from ..core.config import QuantConfig, as_config
from ..nn import QuantConv1d, QuantConv2d, QuantLinear
from .convert import (
    _candidates,
    _conv_bn_pairs,
    _float_leaves,
    _shared_weights,
    _unsupported,
    _unsupported_reason,
    _weight_rows,
)

__all__ = ["quantize_checkpoint"]

PathLike = Union[str, "os.PathLike[str]"]

_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}
_CODES = {v: k for k, v in _DTYPES.items()}
_CHUNK = 16 << 20


class _Source:
    """The tensors of one or several safetensors files, read one at a time (no mapping)."""

    def __init__(self, src: PathLike) -> None:
        src = os.fspath(src)
        if os.path.isdir(src):
            index = os.path.join(src, "model.safetensors.index.json")
            if os.path.exists(index):
                with open(index) as f:
                    weight_map = json.load(f).get("weight_map")
                if not isinstance(weight_map, dict):
                    raise ValueError(f"src: '{index}' has no weight_map")
                files = sorted(set(weight_map.values()))
            else:
                files = sorted(n for n in os.listdir(src) if n.endswith(".safetensors"))
            paths = [os.path.join(src, n) for n in files]
        elif os.path.exists(src):
            paths = [src]
        else:
            raise FileNotFoundError(f"src: no such file or directory: '{src}'")
        if not paths:
            raise ValueError(f"src: no .safetensors file in '{src}'")
        self.where: dict[str, tuple[str, int, str, list[int], int, int]] = {}
        for path in paths:
            with open(path, "rb") as f:
                head = f.read(8)
                if len(head) != 8:
                    raise ValueError(f"src: '{path}' is not a safetensors file (too short)")
                (n,) = struct.unpack("<Q", head)
                if n > 100 << 20:
                    raise ValueError(f"src: '{path}' is not a safetensors file (header of {n} bytes)")
                try:
                    header = json.loads(f.read(n))
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    raise ValueError(f"src: '{path}' has a corrupted safetensors header: {e}") from None
            header.pop("__metadata__", None)
            for key, info in header.items():
                if key in self.where:
                    raise ValueError(f"src: tensor '{key}' is in two files ('{self.where[key][0]}', '{path}')")
                if info.get("dtype") not in _DTYPES:
                    raise ValueError(f"src: tensor '{key}' in '{path}' has unsupported dtype {info.get('dtype')!r}")
                start, end = info["data_offsets"]
                self.where[key] = (path, 8 + n, info["dtype"], list(info["shape"]), start, end)

    def keys(self) -> list[str]:
        return list(self.where)

    def get(self, key: str) -> torch.Tensor:
        path, base, code, shape, start, end = self.where[key]
        buf = torch.empty(end - start, dtype=torch.uint8)
        with open(path, "rb", buffering=0) as f:
            f.seek(base + start)
            view = memoryview(buf.numpy())
            done = 0
            while done < len(view):
                got = f.readinto(view[done:])
                if not got:
                    raise ValueError(f"src: '{path}' is truncated (tensor '{key}')")
                done += got
        return buf.view(_DTYPES[code]).reshape(shape)


class _Writer:
    """A safetensors file written incrementally: data to a temporary file first, header last."""

    def __init__(self, dst: str) -> None:
        self.dst = dst
        folder = os.path.dirname(os.path.abspath(dst))
        self.data = tempfile.NamedTemporaryFile(dir=folder, prefix=".lowbit-", suffix=".data", delete=False)
        self.header: dict[str, Any] = {}
        self.sums: dict[str, str] = {}
        self.offset = 0

    def add(self, key: str, t: torch.Tensor) -> None:
        t = t.detach().to("cpu").contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b""
        self.data.write(raw)
        n = t.numel() * t.element_size()
        self.header[key] = {"dtype": _CODES[t.dtype], "shape": list(t.shape),
                            "data_offsets": [self.offset, self.offset + n]}
        self.sums[key] = hashlib.sha256(raw).hexdigest()[:16]  # as lowbit.save's checksums
        self.offset += n

    def finish(self, meta: dict[str, Any]) -> None:
        meta = dict(meta, checksums=self.sums)
        header = dict(self.header, __metadata__={"lowbit": json.dumps(meta)})
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self.data.flush()
        tmp = self.dst + ".partial"
        with open(tmp, "wb") as out:
            out.write(struct.pack("<Q", len(raw)))
            out.write(raw)
            self.data.seek(0)
            shutil.copyfileobj(self.data, out, _CHUNK)
        self.close()
        os.replace(tmp, self.dst)

    def close(self) -> None:
        self.data.close()
        if os.path.exists(self.data.name):
            os.unlink(self.data.name)


def _materialize(m: nn.Module, prefix: str, src: _Source) -> nn.Module:
    """A copy of the skeleton module ``m`` holding its tensors read from ``src``."""
    real = copy.deepcopy(m)
    state = {k: src.get(prefix + k) for k in m.state_dict()}
    real.load_state_dict(state, strict=True, assign=True)
    return real


def quantize_checkpoint(
    src: PathLike,
    dst: PathLike,
    config: Union[QuantConfig, Mapping, None] = None,
    *,
    model: nn.Module,
) -> dict[str, Any]:
    """Quantizes a safetensors checkpoint into a :func:`lowbit.save` file, one layer at a time.

    Args:
        src: a ``.safetensors`` file, or a folder of shards (with ``model.safetensors.index.json``,
            as transformers writes them, or every ``*.safetensors`` file in it).
        dst: the lowbit file to write (replaced atomically at the end).
        config: a :class:`lowbit.QuantConfig` (or dict) with round-to-nearest weights (or
            ``algorithm="mse"``), dynamic or no activation quantization.
        model: a skeleton of the checkpoint's architecture, best on the meta device; it decides
            which layers are quantized, as in :func:`lowbit.quantize_model`, and is not modified.

    Returns:
        The metadata written (``layers``: each quantized layer's spec; ``float_layers``: the
        layers kept float and why).

    Raises:
        TypeError: ``model`` is not an nn.Module.
        FileNotFoundError: ``src`` does not exist.
        ValueError: a config that needs data (static activations, GPTQ) or a model whose transforms
            span layers (shared weights, BatchNorm folding, quantized embeddings): use
            :func:`lowbit.quantize_model`; checkpoint tensors that do not match the model.

    Example:
        >>> import torch, tempfile, os
        >>> from safetensors.torch import save_file
        >>> net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.LayerNorm(32))
        >>> d = tempfile.mkdtemp(); save_file(net.state_dict(), os.path.join(d, "model.safetensors"))
        >>> with torch.device("meta"):
        ...     skeleton = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.LayerNorm(32))
        >>> meta = lowbit.quantize_checkpoint(d, os.path.join(d, "q.lowbit"), {"weight": "int4"}, model=skeleton)
        >>> q = lowbit.load(os.path.join(d, "q.lowbit"), skeleton)
        >>> type(q[0]).__name__, q[0].weight_packed.device.type
        ('QuantLinear', 'cpu')
    """
    from .serialization import FORMAT

    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    config = as_config(config)
    config.check_patterns(n for n, _ in model.named_modules())
    cands = _candidates(model)
    embeddings = [n for n, m in model.named_modules() if type(m) is nn.Embedding]
    for name, _ in cands + [(n, None) for n in embeddings]:
        cfg = config.for_layer(name)
        if cfg.is_excluded(name):
            continue
        if cfg.activation.calibrated:
            raise ValueError("config: static activations need calibration data; quantize_checkpoint writes "
                             "round-to-nearest weights with dynamic or no activation quantization")
        if getattr(cfg.algorithm, "name", None) in ("gptq", "autoround"):
            raise ValueError(f"config: {type(cfg.algorithm).__name__} needs calibration data; use quantize_model on "
                             "the loaded model")
        if name in embeddings and cfg.embedding is not None:
            raise ValueError("config: embedding quantization is not supported by quantize_checkpoint yet")
        if cfg.rotation is not None:
            raise ValueError("config: rotation is not supported by quantize_checkpoint yet; use quantize_model on "
                             "the loaded model")
    if not cands:
        raise ValueError(f"model: {type(model).__name__} has no nn.Linear or nn.Conv2d layer to quantize")
    if _shared_weights(model, cands):
        raise ValueError("model: layers share weights (tied embeddings?); use quantize_model, which has a "
                         "policy for them")
    if _conv_bn_pairs(model):
        raise ValueError("model: BatchNorm layers follow convolutions (quantize_model folds them); use "
                         "quantize_model")
    src_t = _Source(src)
    expected = model.state_dict()
    missing = [k for k in expected if k not in src_t.where]
    unexpected = [k for k in src_t.where if k not in expected]
    if missing or unexpected:
        raise ValueError(f"src: does not match the model: missing tensors {missing[:5]}, unexpected tensors "
                         f"{unexpected[:5]}")
    for k, t in expected.items():
        _, _, code, shape, _, _ = src_t.where[k]
        if list(t.shape) != shape:
            raise ValueError(f"src: tensor '{k}' has shape {tuple(shape)}, the model's is {tuple(t.shape)}")

    dst = os.fspath(dst)
    writer = _Writer(dst)
    layers: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    written: set[str] = set()
    try:
        for name, m in cands:
            cfg = config.for_layer(name)
            prefix = f"{name}." if name else ""
            real = _materialize(m, prefix, src_t)
            why = _unsupported_reason(name, real, cfg)
            if why is not None:
                if cfg.is_excluded(name):
                    reasons[name] = why
                else:
                    _unsupported(name, why, cfg, reasons)
                continue
            cls = QuantConv2d if isinstance(m, nn.Conv2d) else QuantConv1d if isinstance(m, nn.Conv1d) else QuantLinear
            try:
                q = cls.from_float(real, cfg, name=name)
                if cfg.algorithm is not None:  # MSE clipping (data-free), as quantize_model
                    from ..core.clipping import mse_clip_quantize

                    stored, _ = mse_clip_quantize(_weight_rows(real), q.scheme, cfg.algorithm)
                    q._set_stored(stored)
            except ValueError as e:
                _unsupported(name, str(e), cfg, reasons)
                continue
            del real
            layers[name] = q.spec()
            for k, t in q.state_dict().items():
                writer.add(prefix + k, t)
                written.add(prefix + k)
            written.update(prefix + k for k in m.state_dict())
            del q
        for key in expected:  # everything else as stored
            if key not in written:
                writer.add(key, src_t.get(key))
        handled = set(reasons) | set(layers)
        reasons.update(_float_leaves(model, handled))
        cls_ = type(model)
        import lowbit

        meta = {"format": FORMAT, "lowbit_version": lowbit.__version__, "torch_version": torch.__version__,
                "model_class": f"{cls_.__module__}:{cls_.__qualname__}", "config": config.to_dict(),
                "layers": layers, "float_layers": reasons, "aliases": {}}
        writer.finish(meta)
    except BaseException:
        writer.close()
        raise
    return meta
