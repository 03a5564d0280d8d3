"""Attention on lowbit's float32 kernel inside torch models (lowbit.attention). Public torch layer
(lowbit.nn).

A quantized transformer spends a quarter of its time or more in the float attention between its
int8 linears (MiniLM, batch 8 x 128 tokens, 2 threads: ~10 of ~40 ms). Two ways in:

- :func:`scaled_dot_product_attention`: a drop-in for ``torch.nn.functional.
  scaled_dot_product_attention``. CPU float32 inference calls (no dropout, no autograd, not
  while torch.compile / export / jit traces) run on lowbit's kernel; every other call goes to
  torch's function unchanged.
- Hugging Face transformers models: :func:`use_lowbit_attention_` switches a model whose
  ``config._attn_implementation`` is "sdpa" to "lowbit", an attention function registered with
  transformers (``AttentionInterface``, with sdpa's mask function) that does what transformers'
  sdpa function does, on lowbit's kernel: grouped-query heads read in place (no repeat), the
  result written straight in the (batch, tokens, heads, dim) layout the model reshapes. Calls
  it does not cover (position bias, softcap, output_attentions, dropout, autograd, tracing, not
  float32 CPU) go to transformers' sdpa function. ``lowbit.quantize_model`` applies it.

Values: float32 with the kernel's own summation order and exp (within ~1e-6 relative of torch's,
not bit-identical: torch's CPU and math paths differ from each other as much).
"""

from __future__ import annotations

import math
import sys
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import _core
from ..core.attention import additive_mask
from ..core.attention import attention as _attention
from ._common import recording_graph, stamp, stamped

__all__ = ["scaled_dot_product_attention", "use_lowbit_attention_", "use_torch_attention_"]

ATTN_NAME = "lowbit"


def _eager(*tensors: Optional[torch.Tensor]) -> bool:
    """True when lowbit's kernel may run: eager, CPU float32 4-D with a contiguous last dimension,
    no autograd recording."""
    if recording_graph():
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is None:
            continue
        if (t.device.type != "cpu" or t.dtype != torch.float32 or t.dim() != 4 or (grad and t.requires_grad)
                or (t.stride(3) != 1 and t.shape[3] > 1) or t.is_neg() or t.is_conj()):
            return False
    return True


# the last boolean mask converted: (its stamp, the additive float mask); a model's layers share one
# mask per forward. One tuple, replaced whole (threads see an old or a new entry).
_MASK: list[Optional[tuple[Any, torch.Tensor]]] = [None]


def _float_mask(mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    if mask is None or mask.dtype != torch.bool:
        return mask
    hit = _MASK[0]
    if hit is not None and stamped(hit[0], mask):
        return hit[1]
    src = mask
    if mask.dim() >= 2 and mask.shape[-2] > 1 and torch.equal(mask, mask[..., :1, :].expand_as(mask)):
        mask = mask[..., :1, :]  # one row for every query (padding): the kernel reads it once per head
    m = torch.zeros(mask.shape, dtype=torch.float32).masked_fill_(~mask, float("-inf"))
    _MASK[0] = (stamp(src), m)
    return m


def _mask_ok(mask: Optional[torch.Tensor], shape: tuple[int, int, int, int]) -> bool:
    """A mask the kernel takes: CPU bool / float32, broadcasting to shape (batch, heads, queries, keys)."""
    if mask is None:
        return True
    if (mask.device.type != "cpu" or mask.dtype not in (torch.bool, torch.float32) or mask.dim() > 4
            or (torch.is_grad_enabled() and mask.requires_grad)):
        return False
    dims = (1,) * (4 - mask.dim()) + tuple(mask.shape)
    return all(d in (1, w) for d, w in zip(dims, shape))


def _kernel_takes(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Optional[torch.Tensor],
                  grouped: bool) -> bool:
    """The shapes (and ``mask``) lowbit's kernel runs, in eager CPU float32 inference; key/value
    heads fewer than the query's (dividing them) only when ``grouped``."""
    return (_eager(query, key, value) and query.shape[0] == key.shape[0] == value.shape[0]
            and key.shape[1] == value.shape[1] and key.shape[2] == value.shape[2] and query.shape[3] == key.shape[3]
            and (key.shape[1] == query.shape[1]
                 or (grouped and key.shape[1] > 0 and query.shape[1] % key.shape[1] == 0))
            and (key.shape[2] > 0 or query.shape[2] == 0)
            and _mask_ok(mask, (query.shape[0], query.shape[1], query.shape[2], key.shape[2])))


def scaled_dot_product_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                 attn_mask: Optional[torch.Tensor] = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: Optional[float] = None,
                                 enable_gqa: bool = False) -> torch.Tensor:
    """``torch.nn.functional.scaled_dot_product_attention`` with lowbit's kernel for CPU float32
    4-D inference calls (see the module docstring); the same arguments, result and errors.

    Example:
        >>> q = torch.randn(1, 2, 5, 8)
        >>> torch.allclose(lowbit.nn.scaled_dot_product_attention(q, q, q),
        ...                torch.nn.functional.scaled_dot_product_attention(q, q, q), atol=1e-5)
        True
    """
    ok = (dropout_p == 0.0 and not (is_causal and attn_mask is not None)
          and _kernel_takes(query, key, value, attn_mask, enable_gqa))
    if not ok:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                                              is_causal=is_causal, scale=scale, enable_gqa=enable_gqa)
    m = _float_mask(attn_mask)
    return torch.from_numpy(_attention(query.detach(), key.detach(), value.detach(), None if m is None else m.detach(),
                                       causal=is_causal, scale=scale))


def _hf_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: Optional[torch.Tensor], dropout: float = 0.0, scaling: Optional[float] = None,
                  is_causal: Optional[bool] = None, position_bias: Optional[torch.Tensor] = None,
                  **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' sdpa attention function (``sdpa_attention_forward``) on lowbit's kernel."""
    ok = (position_bias is None and not dropout and kwargs.get("softcap") is None
          and not kwargs.get("output_attentions", False) and key.shape[2] > 0
          and _kernel_takes(query, key, value, attention_mask, True))
    if not ok:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, position_bias=position_bias, **kwargs)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(query.shape[2] > 1 and attention_mask is None and causal)  # as transformers' sdpa decides
    m = _float_mask(attention_mask)
    m = None if m is None else additive_mask(m.detach(), (query.shape[0], query.shape[1], query.shape[2], key.shape[2]))
    scale = 1.0 / math.sqrt(query.shape[3]) if scaling is None else float(scaling)
    # (batch, tokens, heads, dim): the layout the model reshapes; the checks above are all the
    # kernel needs (decoding calls this per layer and token: no further Python work)
    out = _core.attention(query.detach().numpy(), key.detach().numpy(), value.detach().numpy(), m, causal, scale,
                          None, True)
    return torch.from_numpy(out), None


_REGISTERED = False


def _register() -> bool:
    """Registers "lowbit" with transformers' attention and mask interfaces; False without them."""
    global _REGISTERED
    if _REGISTERED:
        return True
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError:
        return False
    AttentionInterface.register(ATTN_NAME, _hf_attention)
    AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)
    _REGISTERED = True
    return True


if "transformers" in sys.modules:  # e.g. unpickling a switched model: its config names "lowbit"
    _register()


def _switch(model: nn.Module, old: str, new: str) -> list[str]:
    done = []
    for name, m in model.named_modules():
        cfg = getattr(m, "config", None)
        if cfg is None or getattr(cfg, "_attn_implementation", None) != old or not hasattr(m, "set_attn_implementation"):
            continue
        try:
            m.set_attn_implementation(new)
        except (ValueError, ImportError, AttributeError):  # a model that takes no custom attention function
            continue
        done.append(name)
    return done


def use_lowbit_attention_(model: nn.Module) -> list[str]:
    """Switches the transformers models in ``model`` (itself or submodules) that run "sdpa"
    attention to lowbit's kernel (see the module docstring), in place; returns their names ("" for
    ``model`` itself). Models without transformers' attention interface are left as they are.

    Example:
        >>> lowbit.nn.use_lowbit_attention_(torch.nn.Linear(2, 2))
        []
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not any(getattr(getattr(m, "config", None), "_attn_implementation", None) == "sdpa" for m in model.modules()):
        return []
    if not _register():
        return []
    return _switch(model, "sdpa", ATTN_NAME)


def use_torch_attention_(model: nn.Module) -> list[str]:
    """Undoes :func:`use_lowbit_attention_` in place: "sdpa" attention again; returns the names."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return _switch(model, ATTN_NAME, "sdpa")
