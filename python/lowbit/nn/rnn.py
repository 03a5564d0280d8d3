"""``torch.nn.LSTM`` / ``GRU`` / ``RNN`` as Linear layers and a recurrence, so that lowbit quantizes
them. Public torch layer (lowbit.nn).

torch's recurrent modules keep their weights as Parameters that one fused ATen kernel reads; no
Linear module exists to quantize, so time-series and sequence models kept their recurrent layers
float. :class:`Recurrent` holds, per layer and direction, ``ih_l{k}`` (input -> gates, run once on
the whole sequence: one matrix product of ``T * N`` rows), ``hh_l{k}`` (hidden -> gates, once per
time step) and, for an LSTM with ``proj_size``, ``hr_l{k}``, as ``nn.Linear`` layers over torch's
own Parameters (``_reverse`` for the second direction, as torch names them), and computes torch's
equations (gate orders i, f, g, o and r, z, n; GRU's ``r * (W_hn h + b_hn)``) with every
argument torch's modules take: ``num_layers``, ``bias``, ``batch_first``, ``dropout`` between
layers in training, ``bidirectional``, ``proj_size``, initial states, unbatched inputs and
``PackedSequence`` inputs (each sequence stops at its own length; the result is packed the same
way). ``quantize_model``, ``prepare_qat`` and ``load`` apply it (:mod:`lowbit.nn.decompose`).

The recurrence is a Python loop over time steps: ``hh``'s (quantized) product, then the gate
arithmetic, in NumPy for eager float32 CPU inference (a third of torch's per-op cost on these small
arrays) and in torch ops otherwise (autograd, QAT, tracing, other dtypes). A long sequence of a small
layer still pays per-step overhead that torch's fused float kernel does not; the input projections,
most of the work for wide inputs, run as one product per layer.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ._common import recording_graph

__all__ = ["Recurrent", "is_torch_rnn"]

_MODES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}  # gates per hidden unit
_FORWARDS = {nn.LSTM: nn.LSTM.forward, nn.GRU: nn.GRU.forward, nn.RNN: nn.RNN.forward}


def is_torch_rnn(m: nn.Module) -> bool:
    """True for ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` and subclasses that keep their forward."""
    base = next((b for b in _FORWARDS if isinstance(m, b)), None)
    return base is not None and type(m).forward is _FORWARDS[base] and getattr(m, "mode", None) in _MODES


def _linear(w: nn.Parameter, b: Optional[nn.Parameter]) -> nn.Linear:
    lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device="meta")
    lin.weight = w  # torch's own Parameters
    if b is not None:
        lin.bias = b
    return lin


def _cell(mode: str, gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor,
          c: Optional[torch.Tensor]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """One time step: the new (h before projection, c)."""
    if mode == "LSTM":
        i, f, g, o = (gi + gh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if mode == "GRU":
        ir, iz, in_ = gi.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(in_ + r * hn)
        return n + z * (h - n), None
    a = gi + gh
    return (torch.tanh(a) if mode == "RNN_TANH" else torch.relu(a)), None


def _sigmoid_np(a: np.ndarray) -> np.ndarray:
    """In place: sigmoid(a) = 0.5 * tanh(a / 2) + 0.5 (no overflow for large |a|)."""
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


def _cell_np(mode: str, gi: np.ndarray, gh: np.ndarray, h: np.ndarray,
             c: Optional[np.ndarray]) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """:func:`_cell` on float32 NumPy rows, for inference: NumPy's vectorized ufuncs on these small
    arrays cost a third of torch's per-op dispatch (8 x 128 LSTM step: ~14 against ~40 us)."""
    if mode == "LSTM":
        hs = gi.shape[-1] // 4
        g = np.add(gi, gh)
        tg = np.tanh(g[:, 2 * hs:3 * hs])
        s = _sigmoid_np(g)
        c = s[:, hs:2 * hs] * c
        c += s[:, :hs] * tg
        out = np.tanh(c)
        out *= s[:, 3 * hs:]
        return out, c
    if mode == "GRU":
        hs = gi.shape[-1] // 3
        rz = _sigmoid_np(np.add(gi[:, :2 * hs], gh[:, :2 * hs]))
        n = gh[:, 2 * hs:] * rz[:, :hs]
        n += gi[:, 2 * hs:]
        np.tanh(n, out=n)
        out = h - n
        out *= rz[:, hs:]
        out += n
        return out, None
    a = np.add(gi, gh)
    return (np.tanh(a, out=a) if mode == "RNN_TANH" else np.maximum(a, 0, out=a)), None


def _numpy_steps(x: torch.Tensor) -> bool:
    """The recurrence may run its gate arithmetic in NumPy: eager CPU float32 inference."""
    return (not torch.is_grad_enabled() and x.dtype == torch.float32 and x.device.type == "cpu"
            and not recording_graph())


class Recurrent(nn.Module):
    """``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` as ``nn.Linear`` layers and a recurrence (see the
    module docstring); built from the torch module with its Parameters, same forward signature
    and results (up to float summation order).

    Example:
        >>> torch.manual_seed(0) and None
        >>> lstm = torch.nn.LSTM(8, 16, num_layers=2, batch_first=True)
        >>> mine = lowbit.nn.Recurrent(lstm)
        >>> x = torch.randn(3, 5, 8)
        >>> torch.allclose(mine(x)[0], lstm(x)[0], atol=1e-6)
        True
        >>> mine.hh_l1
        Linear(in_features=16, out_features=64, bias=True)
    """

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        if not is_torch_rnn(rnn):
            raise TypeError(f"rnn: expected a torch.nn.LSTM, GRU or RNN, got {type(rnn).__name__}")
        self.mode: str = rnn.mode
        self.input_size, self.hidden_size, self.num_layers = rnn.input_size, rnn.hidden_size, rnn.num_layers
        self.bias, self.batch_first, self.dropout = rnn.bias, rnn.batch_first, float(rnn.dropout)
        self.bidirectional, self.proj_size = rnn.bidirectional, getattr(rnn, "proj_size", 0)
        for name in self._names():
            self.add_module(f"ih_{name}", _linear(getattr(rnn, f"weight_ih_{name}"),
                                                  getattr(rnn, f"bias_ih_{name}", None)))
            self.add_module(f"hh_{name}", _linear(getattr(rnn, f"weight_hh_{name}"),
                                                  getattr(rnn, f"bias_hh_{name}", None)))
            if self.proj_size:
                self.add_module(f"hr_{name}", _linear(getattr(rnn, f"weight_hr_{name}"), None))
        self.train(rnn.training)

    def flatten_parameters(self) -> None:
        """A no-op, as torch's on CPU (models call it in their forward)."""

    def _names(self) -> list[str]:
        """torch's parameter suffixes, layer by layer: l0, l0_reverse, l1, ..."""
        dirs = ("", "_reverse") if self.bidirectional else ("",)
        return [f"l{k}{d}" for k in range(self.num_layers) for d in dirs]

    @staticmethod
    def part_names(rnn: nn.Module) -> list[str]:
        """The Linear layers :class:`Recurrent` builds from ``rnn`` (relative names)."""
        dirs = ("", "_reverse") if rnn.bidirectional else ("",)
        kinds = ("ih", "hh", "hr") if getattr(rnn, "proj_size", 0) else ("ih", "hh")
        return [f"{kind}_l{k}{d}" for k in range(rnn.num_layers) for d in dirs for kind in kinds]

    def _initial(self, hx: Any, n: int, like: torch.Tensor, batched: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        d = 2 if self.bidirectional else 1
        out_size = self.proj_size or self.hidden_size
        if hx is None:
            h0 = like.new_zeros(self.num_layers * d, n, out_size)
            return h0, (like.new_zeros(self.num_layers * d, n, self.hidden_size) if self.mode == "LSTM" else None)
        if self.mode == "LSTM":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise RuntimeError("LSTM: hx must be a tuple (h_0, c_0)")
            h0, c0 = hx
        else:
            h0, c0 = hx, None
        if not batched:
            h0, c0 = h0.unsqueeze(1), None if c0 is None else c0.unsqueeze(1)
        want = (self.num_layers * d, n, out_size)
        if tuple(h0.shape) != want:
            raise RuntimeError(f"Expected hidden size {want}, got {list(h0.shape)}")
        if c0 is not None and tuple(c0.shape) != (self.num_layers * d, n, self.hidden_size):
            raise RuntimeError(f"Expected hidden size {(self.num_layers * d, n, self.hidden_size)}, got "
                               f"{list(c0.shape)}")
        return h0, c0

    def forward(self, input: Union[torch.Tensor, PackedSequence], hx: Any = None) -> tuple[Any, Any]:  # noqa: A002
        packed = isinstance(input, PackedSequence)
        lengths = None
        if packed:
            x, lengths = pad_packed_sequence(input)  # (T, N, I), original batch order
            batched = True
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"{self.mode}: Expected input to be 2D or 3D, got {input.dim()}D instead")
            batched = input.dim() == 3
            x = input.unsqueeze(1) if not batched else input.transpose(0, 1) if self.batch_first else input
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got "
                               f"{x.shape[-1]}")
        steps, n = x.shape[0], x.shape[1]
        h0, c0 = self._initial(hx, n, x, batched)
        valid = None if lengths is None else (torch.arange(steps).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(-1)
        h_n, c_n = [], []
        d = 2 if self.bidirectional else 1
        numpy_steps = _numpy_steps(x) and h0.dtype == torch.float32
        names = self._names()
        for layer in range(self.num_layers):
            outs = []
            for direction in range(d):
                name = names[layer * d + direction]
                gi = getattr(self, f"ih_{name}")(x)  # every step's input projection in one product
                hh, hr = getattr(self, f"hh_{name}"), getattr(self, f"hr_{name}", None)
                h, c = h0[layer * d + direction], None if c0 is None else c0[layer * d + direction]
                order = range(steps) if direction == 0 else range(steps - 1, -1, -1)
                if numpy_steps:
                    out_t, h, c = self._steps_np(gi, hh, hr, h, c, valid, order)
                else:
                    out_t, h, c = self._steps(gi, hh, hr, h, c, valid, order)
                outs.append(out_t if steps else x.new_zeros(0, n, h.shape[-1]))
                h_n.append(h)
                if c is not None:
                    c_n.append(c)
            x = outs[0] if d == 1 else torch.cat(outs, dim=-1)
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                x = F.dropout(x, p=self.dropout)
        hidden = torch.stack(h_n)
        cell = torch.stack(c_n) if c_n else None
        if packed:
            order = input.sorted_indices
            xs = x if order is None else x.index_select(1, order)
            ls = lengths if order is None else lengths.index_select(0, order.cpu())
            data = pack_padded_sequence(xs, ls, enforce_sorted=True).data
            output: Any = PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
        elif not batched:
            output, hidden = x.squeeze(1), hidden.squeeze(1)
            cell = None if cell is None else cell.squeeze(1)
        else:
            output = x.transpose(0, 1) if self.batch_first else x
        return output, ((hidden, cell) if self.mode == "LSTM" else hidden)

    def _steps(self, gi: torch.Tensor, hh: nn.Module, hr: Optional[nn.Module], h: torch.Tensor,
               c: Optional[torch.Tensor], valid: Optional[torch.Tensor], order: range) -> tuple:
        """One direction of one layer in torch ops (autograd, tracing, any dtype): (outputs, h, c)."""
        out: list[Optional[torch.Tensor]] = [None] * len(order)
        for t in order:
            h_new, c_new = _cell(self.mode, gi[t], hh(h), h, c)
            if hr is not None:
                h_new = hr(h_new)
            if valid is None:
                h, c, out[t] = h_new, c_new, h_new
            else:  # a sequence past its length keeps its state and outputs zeros
                h = torch.where(valid[t], h_new, h)
                c = None if c is None else torch.where(valid[t], c_new, c)
                out[t] = h_new * valid[t]
        return (torch.stack(out) if out else None), h, c

    def _steps_np(self, gi: torch.Tensor, hh: nn.Module, hr: Optional[nn.Module], h: torch.Tensor,
                  c: Optional[torch.Tensor], valid: Optional[torch.Tensor], order: range) -> tuple:
        """:meth:`_steps` with the gate arithmetic in NumPy (eager float32 CPU inference); the
        products stay the layers' own (quantized) calls."""
        g = gi.detach().numpy()
        hn, cn = h.detach().numpy().copy(), None if c is None else c.detach().numpy().copy()
        ok = None if valid is None else valid.numpy()
        out: list[Optional[np.ndarray]] = [None] * len(order)
        for t in order:
            gh = hh(torch.from_numpy(hn)).numpy()
            h_new, c_new = _cell_np(self.mode, g[t], gh, hn, cn)
            if hr is not None:
                h_new = hr(torch.from_numpy(h_new)).numpy()
            if ok is None:
                hn, cn, out[t] = h_new, c_new, h_new
            else:
                hn = np.where(ok[t], h_new, hn)
                cn = None if cn is None else np.where(ok[t], c_new, cn)
                out[t] = h_new * ok[t]
        stacked = torch.from_numpy(np.stack(out)) if out else None
        return stacked, torch.from_numpy(np.ascontiguousarray(hn)), None if cn is None else torch.from_numpy(cn)

    def extra_repr(self) -> str:
        s = f"{self.mode}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        return s + (", batch_first=True" if self.batch_first else "")
