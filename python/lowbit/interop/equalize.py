"""Model transforms for activation-aware scales (SmoothQuant, AWQ) and bias correction: the torch
side of :mod:`lowbit.core.smoothing`. Public torch layer built on convert's calibration hooks.

Scales ``s`` (one per input channel of a Linear) divide the layer's input and multiply its weight
columns; where the input's producer allows it exactly, the division is folded into it, otherwise the
layer is wrapped in :class:`InputScaled` (an explicit per-channel multiply before it). Supported
folds (each leaves the float model's outputs unchanged up to float rounding):

- **LayerNorm -> Linears** (torch.fx trace): a LayerNorm with affine weights whose output is read
  only by the Linears being scaled (pre-LN transformers): its weight and bias are divided by ``s``.
- **Linear -> Linear** (torch.fx trace): a Linear whose output is read only by the scaled Linear:
  its output rows and bias are divided by ``s``.
- **value -> attention output** (module structure, BERT/MiniLM style): a module with
  ``.self.value`` and ``.output.dense`` Linears (transformers' ``BertAttention``): attention is
  linear in V channel by channel, so the value rows are divided by ``s`` of ``output.dense``.

Post-LN BERT's LayerNorm outputs also feed the residual stream, so q/k/v and the intermediate dense
(and the dense after GELU) get explicit input scales: the Linear ``name`` becomes
``InputScaled`` at ``name`` with the Linear at ``name.layer``. transformers' ``Conv1D`` (GPT-2's
Linear with an (in, out) weight) is scaled the same way, with an explicit input scale. A layer whose
weight another module shares (a tied LM head) is left unscaled.

``quantize_model`` runs these (``QuantConfig(algorithm="awq" | "smoothquant")``) on a copy of the
float model before quantizing it, and bias correction (``bias_correction=True``) after: one pass for
the float outputs' means, then one pass of the quantized model per corrected layer, in model order.
Each quantized layer records ``algorithm`` and ``algorithm_stats`` (alpha, the searched loss before
and after, where the scale went, the bias shift), which :func:`lowbit.summary` shows.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from ..core.clipping import MSEClip
from ..core.config import QuantConfig, as_config
from ..core.gptq import HessianObserver
from ..core.smoothing import AWQ, ChannelStats, SmoothQuant, awq_search, smoothquant_search
from ..nn._common import is_conv1d

__all__ = ["InputScaled", "apply_awq", "smooth_quant"]

EQUALIZED_ATTR = "_lowbit_equalized"


class InputScaled(nn.Module):
    """A layer behind an explicit per-channel input scale: ``layer(x * scale)`` (the scale on the
    last dimension). Made by :func:`lowbit.smooth_quant` / :func:`lowbit.apply_awq` where no
    preceding op can absorb the scale; ``lowbit.quantize_model`` quantizes ``layer`` (static
    activations are then calibrated on the scaled inputs).

    Example:
        >>> import torch
        >>> m = InputScaled(torch.nn.Linear(2, 1), torch.tensor([2.0, 0.5]))
        >>> m(torch.ones(1, 2)).shape
        torch.Size([1, 1])
    """

    def __init__(self, layer: nn.Module, scale: torch.Tensor) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("scale", scale.detach().to(torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x * self.scale.to(x.dtype))

    @property
    def weight(self) -> torch.Tensor:
        """The weight on the unscaled inputs (the layer's, times the scale per input column), in the
        layer's shape and dtype, computed when used (:class:`lowbit.nn.DequantizedWeight`): models that
        read ``layer.weight.dtype`` in their forward (T5) run."""
        from ..nn.linear import DequantizedWeight

        inner = self.layer.weight
        return DequantizedWeight(self, tuple(inner.shape), inner.device, inner.dtype)

    @property
    def bias(self) -> Optional[torch.Tensor]:
        """The layer's bias (the scale is on the inputs: the bias is unchanged)."""
        return self.layer.bias

    def dequantized_weight(self) -> torch.Tensor:
        inner = self.layer
        if hasattr(inner, "dequantized_weight"):
            return inner.dequantized_weight() * self.scale
        w = inner.weight.detach().float()
        return w * (self.scale[:, None] if is_conv1d(inner) else self.scale)  # Conv1D: (in, out)


# --------------------------------------------------------------------------------------------
# which op feeds each Linear


def _fx_producers(model: nn.Module, names: set[str]) -> dict[str, tuple[str, list[str]]]:
    """producer name -> (kind, consumer names) from a torch.fx trace: LayerNorms / Linears whose
    output is read only by Linears in ``names`` (as their only argument)."""
    try:
        import torch.fx

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # models with data-dependent control flow (transformers' models) do not trace
        return {}
    mods = dict(model.named_modules())
    out = {}
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        m = mods.get(node.target)
        if isinstance(m, nn.LayerNorm) and m.elementwise_affine and m.weight is not None:
            kind = "LayerNorm"
        elif type(m) is nn.Linear:
            kind = "Linear"
        else:
            continue
        users = list(node.users)
        if not users or not all(u.op == "call_module" and u.target in names and len(u.args) == 1 and not u.kwargs
                                and u.args[0] is node for u in users):
            continue
        consumers = sorted({u.target for u in users})
        if kind == "Linear" and len(consumers) != 1:
            continue
        out[node.target] = (kind, consumers)
    return out


def _structural_producers(model: nn.Module, names: set[str]) -> dict[str, tuple[str, list[str]]]:
    """BERT-style attention: ``X.self.value`` -> ``X.output.dense`` (attention is linear in V per channel)."""
    out = {}
    for n, m in model.named_modules():
        sa, so = getattr(m, "self", None), getattr(m, "output", None)
        v, d = getattr(sa, "value", None), getattr(so, "dense", None)
        if type(v) is nn.Linear and type(d) is nn.Linear and v.out_features == d.in_features:
            pre = f"{n}." if n else ""
            if pre + "output.dense" in names:
                out[pre + "self.value"] = ("value", [pre + "output.dense"])
    return out


def _groups(model: nn.Module, names: list[str]) -> list[tuple[Optional[str], str, list[str]]]:
    """(producer or None, kind, consumers): every name in exactly one group."""
    found = {**_fx_producers(model, set(names)), **_structural_producers(model, set(names))}
    groups, taken = [], set()
    for prod, (kind, cons) in found.items():
        if prod in cons or any(c in taken for c in cons):
            continue
        groups.append((prod, kind, cons))
        taken.update(cons)
    groups += [(None, "input scale", [n]) for n in names if n not in taken]
    return groups


# --------------------------------------------------------------------------------------------
# statistics and the transform


def _collect(model: nn.Module, layers: dict[str, nn.Module], calib_data: Any, progress: bool, what: str,
             hessian: set[str], sample_rows: int = 0, seed: int = 0,
             halves: Optional[dict[str, tuple[ChannelStats, ChannelStats]]] = None,
             split: frozenset = frozenset()) -> tuple[dict, dict]:
    """name -> ChannelStats (and HessianObserver for names in ``hessian``) of each layer's input rows.
    For names in ``split``, ``halves[name]`` gets (fit, held): the statistics of the first half of
    each batch's rows and of the second half (with the reservoir sample), for a held-out search."""
    from .convert import _layer_rows, _run_with_hooks, _weight_rows

    stats, hess = {}, {}
    for n, m in layers.items():
        k = _weight_rows(m).shape[1]
        stats[n] = ChannelStats(k, sample_rows=0 if n in split else sample_rows, seed=seed)
        if n in hessian:
            hess[n] = HessianObserver(k)
        if n in split and halves is not None:
            halves[n] = (ChannelStats(k), ChannelStats(k, sample_rows=sample_rows, seed=seed))

    def on_input(n: str, x: torch.Tensor) -> None:
        rows = _layer_rows(layers[n], x)
        stats[n].update(rows)
        if n in hess:
            hess[n].update(rows)
        if halves is not None and n in halves:
            r = rows.reshape(-1, rows.shape[-1])
            halves[n][0].update(r[: r.shape[0] // 2])
            halves[n][1].update(r[r.shape[0] // 2:])

    seen = _run_with_hooks(model, layers, on_input, calib_data, progress, what)
    never = [n for n, c in seen.items() if not c]
    if never:
        raise ValueError(f"calib_data: layer '{never[0]}' never ran on the calibration data, so {what} has no "
                         "statistics for it (exclude it with QuantConfig(exclude=[...]))")
    return stats, hess


def _linear_targets(model: nn.Module, config: QuantConfig, want: Any, what: str) -> dict[str, nn.Module]:
    """The nn.Linear layers ``want(cfg)`` selects (not excluded); other layer kinds asked for raise.
    A layer whose weight Parameter another module shares (an LM head tied to the input embedding)
    is left out: scaling its input channels would scale the other module's weight too (OPT's tied
    embedding table, corrupted that way, took the logits' cosine to 0.62)."""
    from .convert import _candidates

    cands = list(_candidates(model))
    owners: dict[int, int] = {}  # Parameter id -> distinct modules holding it (any kind: BART's embedding is a subclass)
    for m in model.modules():
        for p in m._parameters.values():
            if p is not None:
                owners[id(p)] = owners.get(id(p), 0) + 1
    shared = {n for n, m in cands if owners.get(id(m.weight), 0) > 1}
    out = {}
    for n, m in cands:
        cfg = config.for_layer(n)
        if cfg.is_excluded(n) or not want(cfg) or n in shared:
            continue
        if type(m) is not nn.Linear and not is_conv1d(m):
            raise ValueError(f"layer '{n}': {what} covers nn.Linear (and transformers' Conv1D) layers, not "
                             f"{type(m).__name__}; exclude it "
                             f"(QuantConfig(exclude=[{n!r}])) or give it another algorithm with per_layer")
        out[n] = m
    return out


def _apply_scales(model: nn.Module, producer: Optional[str], kind: str, consumers: list[str], s: np.ndarray,
                  wrappers: dict[str, str]) -> str:
    """Folds / wraps ``s`` for one group in place; returns where the division went."""
    st = torch.from_numpy(s)
    with torch.no_grad():
        for c in consumers:
            lin = model.get_submodule(c)
            cols = st[:, None] if is_conv1d(lin) else st  # Conv1D stores the weight as (in, out)
            lin.weight.copy_((lin.weight.double() * cols).to(lin.weight.dtype))
        if producer is None:
            c = consumers[0]
            lin = model.get_submodule(c)
            parent, _, child = c.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, InputScaled(lin, (1.0 / st).float()))
            wrappers[c] = c + ".layer"
            return "input scale"
        p = model.get_submodule(producer)
        p.weight.copy_((p.weight.double() / (st if kind == "LayerNorm" else st[:, None])).to(p.weight.dtype))
        if p.bias is not None:
            p.bias.copy_((p.bias.double() / st).to(p.bias.dtype))
    return f"folded into {kind} '{producer}'"


def _equalize(model: nn.Module, config: QuantConfig, calib_data: Any, progress: bool,
              only: Optional[Any] = None) -> dict[str, dict[str, Any]]:
    """Runs AWQ / SmoothQuant in place on ``model`` for the Linear layers whose config asks for them;
    returns original name -> record (algorithm, alpha, losses, where the scale went, name of the Linear now)."""
    def algo_of(cfg: QuantConfig) -> Any:
        a = cfg.algorithm
        return a if isinstance(a, (AWQ, SmoothQuant)) else None

    layers = _linear_targets(model, config, lambda c: algo_of(c) is not None and (only is None or only(c)),
                             "AWQ / SmoothQuant")
    if not layers:
        return {}
    names = list(layers)
    groups = _groups(model, names)
    algos = {n: algo_of(config.for_layer(n)) for n in names}
    for prod, _, cons in groups:
        if len({type(algos[c]) for c in cons}) > 1 or len({algos[c] for c in cons}) > 1:
            raise ValueError(f"layers {cons} read one input ('{prod}') and must share an algorithm and its options")
    sq = [a for a in algos.values() if isinstance(a, SmoothQuant)]
    sample = max((a.sample_rows for a in sq if a.alpha_grid is not None), default=0)
    seed = sq[0].seed if sq else 0
    split = frozenset(n for n in names if isinstance(algos[n], SmoothQuant) and len(algos[n].alphas) > 1
                      and algos[n].holdout)
    halves: dict[str, tuple[ChannelStats, ChannelStats]] = {}
    stats, hess = _collect(model, layers, calib_data, progress, "AWQ / SmoothQuant statistics",
                           {n for n in names if isinstance(algos[n], AWQ)}, sample, seed, halves, split)
    from ..core.calibration import _progress
    from .convert import _weight_rows

    records: dict[str, dict[str, Any]] = {}
    wrappers: dict[str, str] = {}
    for prod, kind, cons in _progress(groups, progress, desc="AWQ / SmoothQuant scales", unit="group"):
        algo = algos[cons[0]]
        ws = [_weight_rows(layers[c]).numpy() for c in cons]
        schemes = [config.for_layer(c).weight for c in cons]
        if isinstance(algo, AWQ):
            # the scale search rounds to nearest (AWQ: scales first, then the clipping search, MSEClip below)
            s, info = awq_search(ws, stats[cons[0]], hess[cons[0]].hessian(), schemes, algo.alphas)
        else:
            act = config.for_layer(cons[0]).activation
            per = "static" if act.calibrated else getattr(act, "per", "tensor")
            s, info = smoothquant_search(ws, stats[cons[0]], schemes, algo.alphas, per, halves.get(cons[0]),
                                         algo.min_scale)
        where = _apply_scales(model, prod, kind, cons, s, wrappers)
        for c in cons:
            records[c] = {"algorithm": algo, "layer": wrappers.get(c, c), "scale": where, "s": s, "producer": prod,
                          "kind": kind, **info}
    return records


def _float_model(model: Any, calib_data: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if calib_data is None:
        raise ValueError("calib_data: needed (an iterable of batches the model runs on)")
    return copy.deepcopy(model)


def smooth_quant(
    model: nn.Module,
    calib_data: Iterable,
    alpha: float = 0.5,
    *,
    alpha_grid: Any = None,
    config: Union[QuantConfig, Mapping, None] = None,
    sample_rows: int = 512,
    seed: int = 0,
    progress: bool = True,
) -> nn.Module:
    """SmoothQuant (Xiao et al., ICML 2023): a new float model whose Linear inputs are divided by
    ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`` (``max|X_j|`` over ``calib_data``) and whose
    weight columns are multiplied by it, so per-tensor int8 activations see no outlier channels.
    The division is folded into the preceding LayerNorm / Linear where exact, else kept as an
    :class:`InputScaled` wrapper (see the module docstring). ``model`` is never modified.

    Args:
        model: a float model. calib_data: batches, as for :func:`lowbit.quantize_model`.
        alpha: migration strength in [0, 1].
        alpha_grid: None, or an int / sequence of alphas searched per layer group by the simulated
            w8a8 error on ``sample_rows`` seeded calibration rows.
        config: the QuantConfig the model will be quantized with (weight scheme for the search;
            ``exclude`` keeps layers unscaled); default int8 weights, static activations.
        sample_rows, seed: reservoir sample of the search. progress: tqdm bars.

    Returns:
        The smoothed float model; ``model._lowbit_equalized`` maps each layer to its alpha, losses
        and where its scale went.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.LayerNorm(8), torch.nn.Linear(8, 4))
        >>> sm = lowbit.smooth_quant(m, [torch.randn(16, 8)], progress=False)
        >>> bool(torch.allclose(sm(torch.ones(2, 8)), m(torch.ones(2, 8)), atol=1e-5))
        True
    """
    opts = SmoothQuant(alpha=alpha, alpha_grid=alpha_grid, sample_rows=sample_rows, seed=seed)
    base = as_config(config if config is not None else QuantConfig(weight="int8", activation="static"))
    cfg = _with_algorithm(base, opts)
    work = _float_model(model, calib_data)
    setattr(work, EQUALIZED_ATTR, _equalize(work, cfg, calib_data, progress))
    return work


def apply_awq(
    model: nn.Module,
    calib_data: Iterable,
    config: Union[QuantConfig, Mapping, None] = None,
    *,
    alpha_grid: Any = 20,
    clip: bool = False,
    progress: bool = True,
) -> nn.Module:
    """AWQ (Lin et al., MLSys 2024): a new float model whose Linear layers' weight columns are scaled
    by ``s = mean|X|^alpha`` (alpha searched on ``alpha_grid`` per layer group to minimize the output
    error of the weights rounded as ``config`` asks), the inputs divided by ``s`` (folded where
    exact, else :class:`InputScaled`). ``model`` is never modified; quantize the result with the
    same ``config`` (``clip=True`` is meant for ``algorithm="mse"`` then).

    Args:
        model: a float model. calib_data: batches, as for :func:`lowbit.quantize_model`.
        config: the QuantConfig the model will be quantized with (default int4 groups of 64).
        alpha_grid: an int (points on [0, 1]) or a sequence of alphas. clip: search with MSE scales.
        progress: tqdm bars.

    Returns:
        The scaled float model, with ``model._lowbit_equalized`` as :func:`smooth_quant`.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
        >>> am = lowbit.apply_awq(m, [torch.randn(32, 64)], progress=False)
        >>> bool(torch.allclose(am(torch.ones(2, 64)), m(torch.ones(2, 64)), atol=1e-4))
        True
    """
    opts = AWQ(alpha_grid=alpha_grid, clip=clip)
    base = as_config(config if config is not None else QuantConfig(weight="int4", group_size=64))
    cfg = _with_algorithm(base, opts)
    work = _float_model(model, calib_data)
    setattr(work, EQUALIZED_ATTR, _equalize(work, cfg, calib_data, progress))
    return work


def _with_algorithm(config: QuantConfig, algo: Any) -> QuantConfig:
    """``config`` with ``algorithm`` set everywhere (per_layer entries too)."""
    per = {p: QuantConfig(c.weight, c.activation, embedding=c.embedding, on_unsupported=c.on_unsupported,
                          algorithm=algo) for p, c in config.per_layer.items()}
    return QuantConfig(config.weight, config.activation, embedding=config.embedding, exclude=config.exclude,
                       per_layer=per, on_unsupported=config.on_unsupported, algorithm=algo)


# --------------------------------------------------------------------------------------------
# quantize_model(algorithm="awq" / "smoothquant", bias_correction=True)


def _inner_algorithm(a: Any) -> Any:
    if isinstance(a, AWQ):
        if a.gptq:
            from ..core.gptq import GPTQ

            return GPTQ(clip=a.clip)
        return MSEClip() if a.clip else None
    if isinstance(a, SmoothQuant):
        return None
    return a


def _strip(config: QuantConfig, renames: dict[str, str]) -> QuantConfig:
    """The config quantize_model runs after the transforms: AWQ/SmoothQuant replaced by what rounds
    the scaled weights, no bias correction, and the per-layer configs of wrapped layers under their
    new names (first, so they win)."""
    def inner(c: QuantConfig) -> QuantConfig:
        return QuantConfig(c.weight, c.activation, embedding=c.embedding, on_unsupported=c.on_unsupported,
                           algorithm=_inner_algorithm(c.algorithm), rotation=c.rotation)

    per = {new: inner(config.for_layer(old)) for old, new in renames.items()}
    per.update({p: inner(c) for p, c in config.per_layer.items()})
    return QuantConfig(config.weight, config.activation, embedding=config.embedding, exclude=config.exclude,
                       per_layer=per, on_unsupported=config.on_unsupported,
                       algorithm=_inner_algorithm(config.algorithm), rotation=config.rotation)


def _output_means(model: nn.Module, layers: dict[str, nn.Module], calib_data: Any, progress: bool,
                  what: str) -> dict[str, np.ndarray]:
    """name -> mean output per channel (float64) of each layer over ``calib_data`` (eval mode, no grad):
    Linear outputs over every row, Conv2d outputs over batch and pixels."""
    from .convert import _run_with_hooks

    stats: dict[str, ChannelStats] = {}

    def on_output(name: str, out: torch.Tensor) -> None:
        y = out.to(torch.float64)
        mod = layers[name]
        y = y.movedim(1, -1) if isinstance(mod, nn.Conv2d) or getattr(mod, "_is_conv2d", False) or y.dim() == 4 else y
        if name not in stats:
            stats[name] = ChannelStats(y.shape[-1])
        stats[name].update(y.reshape(-1, y.shape[-1]).numpy())

    _run_with_hooks(model, layers, on_output, calib_data, progress, what, outputs=True)
    missing = [n for n in layers if n not in stats]
    if missing:
        raise ValueError(f"calib_data: layer '{missing[0]}' never ran on the calibration data ({what})")
    return {n: s.mean for n, s in stats.items()}


def quantize_equalized(model: nn.Module, config: QuantConfig, calib_data: Any, inplace: bool,
                       progress: bool) -> nn.Module:
    """quantize_model for configs with AWQ / SmoothQuant or bias correction: scales the float model
    (a copy unless ``inplace``), quantizes it with the remaining config, then corrects biases and
    records per layer ``q.algorithm`` / ``q.algorithm_stats`` (summary / compare show them)."""
    from ..core.calibration import _progress
    from .convert import _candidates, quantize_model

    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    config.check_patterns(n for n, _ in model.named_modules())
    if calib_data is None:
        raise ValueError("calib_data: AWQ / SmoothQuant / bias correction need calibration data (an iterable "
                         "of batches)")
    originals = [n for n, _ in _candidates(model)]
    work = model if inplace else copy.deepcopy(model)
    records = _equalize(work, config, calib_data, progress)
    renames = {old: r["layer"] for old, r in records.items() if r["layer"] != old}
    inner = _strip(config, renames)
    bc = {renames.get(o, o): work.get_submodule(renames.get(o, o)) for o in originals
          if config.for_layer(o).bias_correction and not config.for_layer(o).is_excluded(o)}
    for n, m in bc.items():
        if getattr(m, "groups", 1) != 1 or type(m) is nn.Conv1d:
            raise ValueError(f"layer '{n}': bias correction covers Linear and groups=1 Conv2d layers")
        if m.bias is None:  # a zero bias to correct (the float model computes the same)
            m.bias = nn.Parameter(torch.zeros(m.weight.shape[0], dtype=m.weight.dtype), requires_grad=False)
    float_means = _output_means(work, bc, calib_data, progress, "bias correction: float outputs") if bc else {}
    q = quantize_model(work, inner, calib_data=calib_data, inplace=True, progress=progress)
    for r in records.values():
        mod = q.get_submodule(r["layer"])
        if hasattr(mod, "scheme"):
            prev = getattr(mod, "algorithm_stats", None) or {}
            mod.algorithm = r["algorithm"]
            mod.algorithm_stats = {**prev, "alpha": r["alpha"], "loss_rtn": r["loss_rtn"], "loss": r["loss"],
                                   "scale": r["scale"]}
            # the float layer's input is x, this one's x / s (compare feeds it so; not saved in files)
            mod.input_channel_scale = torch.as_tensor(r["s"], dtype=torch.float32)
        if r["kind"] == "Linear" and r["producer"] is not None:  # the producer's outputs were divided by s
            prod = q.get_submodule(renames.get(r["producer"], r["producer"]))
            if hasattr(prod, "scheme"):
                prod.output_channel_scale = torch.as_tensor(1.0 / r["s"], dtype=torch.float32)
    done = [n for n in bc if hasattr(q.get_submodule(n), "scheme")]
    for n in _progress(done, progress, desc="bias correction", unit="layer"):  # in model order: sequential
        mod = q.get_submodule(n)
        shift = float_means[n] - _output_means(q, {n: mod}, calib_data, False, "bias correction")[n]
        with torch.no_grad():
            mod.bias.add_(torch.from_numpy(shift).to(mod.bias.dtype))
        stats = dict(getattr(mod, "algorithm_stats", None) or {})
        stats["bias_shift_rms"] = float(np.sqrt(np.mean(shift ** 2)))
        mod.algorithm_stats = stats
        if getattr(mod, "algorithm", None) is None:
            mod.algorithm = _BIAS_CORRECTION
    return q


class _BiasCorrectionTag:
    """The ``algorithm`` recorded on layers whose only change is bias correction."""

    name = "bias_correction"

    def to_dict(self) -> dict[str, Any]:
        return {"name": "bias_correction"}


_BIAS_CORRECTION = _BiasCorrectionTag()
