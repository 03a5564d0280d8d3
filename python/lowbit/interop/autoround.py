"""AutoRound's training loop (see :mod:`lowbit.core.autoround` for the method): learned rounding
offsets and scale factors for the quantized layers of one block at a time, trained with torch
autograd on the float block's outputs. Torch interop layer, called by :func:`lowbit.quantize_model`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..core.autoround import AutoRound
from ..core.calibration import _progress
from ..core.schemes import WeightScheme
from ..nn._common import is_conv1d

__all__ = ["autoround_layers"]


def _rows_to_weight(m: nn.Module, shape: torch.Size, rows: torch.Tensor) -> torch.Tensor:
    """The inverse of ``convert._weight_rows``: a (out, k) weight back in the module's layout ``shape``."""
    if is_conv1d(m):
        return rows.t()
    if isinstance(m, nn.Conv1d):
        return rows.reshape(shape[0], shape[2], shape[1]).permute(0, 2, 1)
    if isinstance(m, nn.Conv2d):
        return rows.reshape(shape[0], shape[2], shape[3], shape[1]).permute(0, 3, 1, 2)
    return rows


class _LearnedRounding:
    """One layer's rounding offsets V and scale factors g on the grid of its starting quantization."""

    def __init__(self, rows: np.ndarray, scheme: WeightScheme, opts: AutoRound) -> None:
        from ..core.clipping import mse_clip_quantize

        n, k = rows.shape
        self.scheme, self.k = scheme, k
        rtn = scheme.quantize(rows)
        self.start = mse_clip_quantize(rows, scheme)[0] if opts.clip else rtn
        grid = scheme.column_grid(self.start, n, k)
        if grid is None:
            raise ValueError(f"AutoRound: {scheme.describe()} have no rounding grid (it supports int8, int4, uint4 "
                             "and nf4 weights)")
        self.grid = grid
        self.w = torch.from_numpy(np.array(rows, np.float32))
        self.rtn = torch.from_numpy(scheme.dequantize(rtn, n, k))  # for the report's baseline
        self.s = torch.from_numpy(np.array(grid.scale, np.float32))  # (n, G)
        self.z = None if grid.zero_point is None else self._expand(torch.from_numpy(
            np.array(grid.zero_point, np.float32)))
        self.v = torch.zeros(n, k, requires_grad=True)
        s0 = self.start.get("weight_scale")
        # Codebook formats (nf4) keep their block absmax: learned factors made all-MiniLM-L6-v2's block
        # losses worse there (layer 0: 0.00151 against 0.00088 with the offsets alone, 30 steps).
        learn = (opts.learn_scales and grid.levels is None and getattr(scheme, "granularity", None) != "per_tensor"
                 and isinstance(s0, np.ndarray) and s0.dtype == np.float32
                 and s0.size == self.s.numel())
        self.g = torch.ones(self.s.shape, requires_grad=True) if learn else None
        if grid.levels is not None:
            self.levels = torch.from_numpy(np.array(grid.levels, np.float32))
            self.thresholds = torch.from_numpy(np.array(grid.thresholds, np.float32))
            self.step = float(2.0 / (len(grid.levels) - 1))  # the mean spacing of the codebook on [-1, 1]

    def params(self) -> list[torch.Tensor]:
        return [self.v] + ([self.g] if self.g is not None else [])

    def _expand(self, a: torch.Tensor) -> torch.Tensor:
        return torch.repeat_interleave(a, self.grid.group_size, dim=1)[:, :self.k]

    def _scale(self) -> torch.Tensor:
        return self.s if self.g is None else self.s * self.g.clamp(0.5, 1.5)

    def values(self) -> torch.Tensor:
        """The dequantized weight rows (n, k): exactly on the scheme's grid, differentiable in V and g
        (round and nearest-level pass gradients straight through)."""
        s = self._expand(self._scale())
        inv = torch.where(s > 0, 1.0 / torch.where(s > 0, s, torch.ones(())), torch.zeros(()))
        v = self.v.clamp(-0.5, 0.5)
        if self.grid.levels is None:
            y = self.w * inv + v
            r = y + (torch.round(y) - y).detach()
            q = torch.clamp(r + self.z, self.grid.qmin, self.grid.qmax) - self.z
            return q * s
        y = self.w * inv + v * self.step
        r = y + (self.levels[torch.bucketize(y.detach(), self.thresholds)] - y).detach()
        return r * s

    def stored(self) -> dict[str, np.ndarray]:
        """The scheme's stored arrays of the learned rounding (the starting parameters, scaled by g)."""
        with torch.no_grad():
            vals = self.values().numpy()
            stored = dict(self.start)
            if self.g is not None:
                s0 = stored["weight_scale"]
                stored["weight_scale"] = self._scale().numpy().astype(np.float32).reshape(s0.shape)
        return self.scheme.requantize(np.ascontiguousarray(vals), stored)


def _masked_mse(out: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    d = (out.float() - target.float()) ** 2
    if mask is not None and out.dim() == 3 and tuple(mask.shape) == tuple(out.shape[:2]):
        w = mask.to(d.dtype).unsqueeze(-1)
        return (d * w).sum() / (w.sum() * d.shape[-1]).clamp(min=1.0)
    return d.mean()


class _FakeWeights:
    """Puts each layer's learned-rounding weight in place of its ``weight`` Parameter while a block
    trains (``apply`` before every forward), and puts the Parameters back on exit."""

    def __init__(self, layers: dict[str, tuple[nn.Module, _LearnedRounding]]) -> None:
        self.layers = layers
        self.saved = {n: m.weight for n, (m, _) in layers.items()}

    def apply(self, rtn: bool = False) -> None:
        for n, (m, r) in self.layers.items():
            w = _rows_to_weight(m, self.saved[n].shape, r.rtn if rtn else r.values())  # reads m.weight: first
            del m.weight
            m.weight = w.to(self.saved[n].dtype)  # a bf16 / fp16 model computes in its own dtype

    def __enter__(self) -> _FakeWeights:
        return self

    def __exit__(self, *exc: Any) -> None:
        for n, (m, _) in self.layers.items():
            if not isinstance(getattr(m, "weight", None), nn.Parameter):
                m.__dict__.pop("weight", None)
                m.weight = self.saved[n]


_HALF = (torch.float16, torch.bfloat16)


class _float32:
    """Runs a half-precision block in float32 (its parameters and buffers converted in place, the
    same objects), then puts every tensor back in its own dtype."""

    def __init__(self, unit: nn.Module) -> None:
        self.unit = unit
        self.tensors = [(t, t.dtype) for t in [*unit.parameters(), *unit.buffers()]]

    def __enter__(self) -> None:
        self.unit.to(torch.float32)

    def __exit__(self, *exc: Any) -> None:
        with torch.no_grad():
            for t, dtype in self.tensors:
                t.data = t.data.to(dtype)


def _tree_float32(obj: Any) -> Any:
    """``obj`` (a block's cached arguments) with its half-precision tensors in float32."""
    return torch.utils._pytree.tree_map(
        lambda t: t.to(torch.float32) if isinstance(t, torch.Tensor) and t.dtype in _HALF else t, obj)


def _is_norm(m: nn.Module) -> bool:
    return isinstance(m, nn.LayerNorm) or type(m).__name__.endswith(("LayerNorm", "RMSNorm"))


def _train_block(unit: nn.Module, run: Callable[[Any], torch.Tensor], items: Sequence[Any],
                 targets: Sequence[torch.Tensor], masks: Sequence[Optional[torch.Tensor]],
                 layers: dict[str, tuple[nn.Module, _LearnedRounding]], opts: AutoRound) -> dict[str, float]:
    """Trains V, g (and the float biases, norms) of ``layers`` in ``unit`` (the block); returns the
    block's mean loss with round to nearest (``loss_rtn``), the starting rounding (``loss_start``) and
    the learned one (``loss``); where training ends above the start on the calibration data, the
    start is put back (``loss == loss_start``). No other parameter of the block receives a gradient."""
    block_params = {id(p): p for p in unit.parameters()}
    flags = {k: p.requires_grad for k, p in block_params.items()}
    biases = [m.bias for m, _ in layers.values() if opts.tune_bias and isinstance(m.bias, nn.Parameter)]
    if opts.tune_norms:
        biases += [p for m in unit.modules() if _is_norm(m) for p in m.parameters(recurse=False)]
    try:
        for p in block_params.values():
            p.requires_grad_(False)
        for b in biases:
            b.requires_grad_(True)
        learned = [p for _, r in layers.values() for p in r.params()]
        start = [p.detach().clone() for p in learned + biases]
        groups = [{"params": learned, "lr": opts.lr}]
        if biases:
            groups.append({"params": biases, "lr": opts.lr / 100})
        opt = torch.optim.Adam(groups)
        decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 - step / max(opts.steps, 1))  # linear to 0
        with _FakeWeights(layers) as fake, torch.enable_grad():
            def mean_loss(rtn: bool = False) -> float:
                with torch.no_grad():
                    fake.apply(rtn)
                    total = sum(float(_masked_mse(run(it), t, mk)) for it, t, mk in zip(items, targets, masks))
                return total / len(items)

            rtn = mean_loss(rtn=True)
            before = mean_loss() if opts.clip else rtn  # without clip the start is round to nearest
            for step in range(opts.steps):
                i = step % len(items)
                fake.apply()
                loss = _masked_mse(run(items[i]), targets[i], masks[i])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                decay.step()
            after = mean_loss()
            if not after <= before:  # never worse than the start on the calibration data (nor NaN): keep it
                with torch.no_grad():
                    for p, s in zip(learned + biases, start):
                        p.copy_(s)
                after = before
    finally:
        for k, p in block_params.items():
            p.requires_grad_(flags[k])
    return {"loss_rtn": rtn, "loss_start": before, "loss": after}


def autoround_layers(
    model: nn.Module,
    targets: dict[str, nn.Module],
    calib_data: Any,
    build: Callable[[str], Any],
    install: Callable[[str, Any], None],
    opts_of: Callable[[str], AutoRound],
    progress: bool,
) -> None:
    """Quantizes ``targets`` with AutoRound block by block and installs them (``build(name)``
    returns the round-to-nearest quantized module or None, ``install(name, q)`` puts it in the model).
    The targets it does not install (outside the blocks, or sharing a weight) are left to the caller."""
    from .convert import (
        _advance,
        _batch_error,
        _block_plan,
        _calib_batches,
        _capture_block_inputs,
        _hidden,
        _token_mask,
        _weight_rows,
        run_batch,
    )

    batches = list(_calib_batches(calib_data, "AutoRound"))
    if not batches:
        raise ValueError("calib_data: AutoRound needs at least one calibration batch")
    weights = [id(m.weight) for m in targets.values()]
    shared = {n for n, m in targets.items() if weights.count(id(m.weight)) > 1}  # keep their starting rounding
    with torch.no_grad():
        plan = _block_plan(model, targets, batches)
        items: list[Any] = [] if plan is None else _capture_block_inputs(model, plan[0][0], batches)
    if plan is not None:
        blocks, per_block, _, _ = plan
        masks = [mk for _, _, mk in items]
        units = [(b, d, lambda it, b=b: _hidden(b(*it[0], **it[1]))) for b, d in zip(blocks, per_block)]
    else:  # the whole model is the block; its first output tensor the target
        items = list(range(len(batches)))
        masks = [_token_mask(b) for b in batches]
        units = [(model, dict(targets), lambda j: _hidden(run_batch(model, batches[j])))]
    for _, mine, _ in units:  # one training run per block: its layers cannot take different options
        kinds = {opts_of(n) for n in mine if n not in shared}
        if len(kinds) > 1:
            raise ValueError(f"config: the layers of one block ({', '.join(mine)}) train together and need the same "
                             f"AutoRound options, got {', '.join(sorted(map(repr, kinds)))}")
    bar = _progress(range(sum(len(d) for _, d, _ in units)), progress, desc="AutoRound (block by block)", unit="layer")
    ticks = iter(bar)
    f_items = list(items)  # the float blocks' inputs
    for unit, mine, run in units:
        with torch.no_grad():
            outs = []
            for i, it in enumerate(f_items):
                try:
                    outs.append(run(it))
                except Exception as e:
                    raise _batch_error(i, None, e) from e
        if any(o is None for o in outs):
            raise ValueError("AutoRound: the block (or model) returned no tensor to reproduce")
        layers: dict[str, tuple[nn.Module, _LearnedRounding]] = {}
        built: dict[str, Any] = {}
        for name, m in mine.items():
            q = None if name in shared else build(name)
            if q is not None:
                built[name] = q
                layers[name] = (m, _LearnedRounding(_weight_rows(m).numpy(), q.scheme, opts_of(name)))
        if layers:
            opts = opts_of(next(iter(layers)))
            if plan is not None and any(p.dtype in _HALF for p in unit.parameters()):
                with _float32(unit):  # fp16 gradients overflowed (NaN scales); bf16 ones are coarse
                    stats = _train_block(unit, lambda it, run=run: run(_tree_float32(it)), items, outs, masks, layers,
                                         opts)
            else:
                stats = _train_block(unit, run, items, outs, masks, layers, opts)
            for name, (m, r) in layers.items():
                q = built[name]
                q._set_stored(r.stored())
                if q.bias is not None and m.bias is not None:
                    with torch.no_grad():
                        q.bias.copy_(m.bias.detach().to(torch.float32))
                q.algorithm, q.algorithm_stats = opts, dict(stats)
                install(name, q)
                next(ticks, None)
        if plan is not None:
            with torch.no_grad():
                items = [_advance(it, run(it)) for it in items]  # now through the quantized block
            f_items = [_advance(it, o) for it, o in zip(f_items, outs)]
    if hasattr(bar, "close"):
        bar.close()
