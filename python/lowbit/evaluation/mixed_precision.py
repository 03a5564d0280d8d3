"""Mixed precision: per-layer sensitivity to quantization, and automatic per-layer precision
under an accuracy or size budget. Public torch layer built from quantize_model, lowbit.metrics
and compare.
"""

from __future__ import annotations

import copy
import html
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Callable, NamedTuple, Union

import torch
from torch import nn

from ..core.calibration import _progress
from ..core.config import QuantConfig, as_config
from ..core.metrics import _ErrorStats, model_nbytes
from ..interop import distributed as _dist
from ..interop.convert import _set_submodule, quantize_model, run_batch
from ..nn.decompose import decomposed
from ..nn.linear import _QuantBase
from .report import QuantReport, _as_batches, _main_output, compare
from .timing import Timer

__all__ = ["MixedPrecisionResult", "SensitivityReport", "auto_mixed_precision", "sensitivity"]

Metric = Union[str, Callable[[nn.Module], float]]
_METRICS = ("sqnr", "cosine")


class _Scorer:
    """Scores variants of ``model`` on fixed batches: ``metric(model)`` for a callable, else the
    output SQNR (dB) or cosine (x100, in percent) against the float model's cached outputs."""

    def __init__(self, model: nn.Module, batches: list, metric: Metric) -> None:
        if not callable(metric) and metric not in _METRICS:
            raise ValueError(f"metric: expected one of {_METRICS} or a callable eval_fn(model) -> float, got {metric!r}")
        self.batches, self.metric = batches, metric
        self.name = getattr(metric, "__name__", "metric") if callable(metric) else (
            "output SQNR (dB)" if metric == "sqnr" else "output cosine (%)")
        if self.name == "<lambda>":
            self.name = "metric"
        self.ref = None if callable(metric) else [_main_output(run_batch(model, b)).detach() for b in batches]
        self.base = float(metric(model)) if callable(metric) else math.inf if metric == "sqnr" else 100.0

    def __call__(self, model: nn.Module) -> float:
        if callable(self.metric):
            return float(self.metric(model))
        stats = _ErrorStats()
        with torch.no_grad():
            for b, ref in zip(self.batches, self.ref):
                stats.add(ref, _main_output(run_batch(model, b)))
        return stats.sqnr if self.metric == "sqnr" else 100.0 * stats.cosine


@dataclass
class SensitivityReport:
    """Each layer quantized alone, the rest float: the model's score and its drop from float,
    most sensitive (largest drop) first. From :func:`lowbit.sensitivity`.

    Attributes:
        rows: dicts with ``layer``, ``type``, ``weight`` (the precision tried), ``score``, ``drop``.
        metric: what ``score`` measures (higher is better).
        base: the float model's score (inf for SQNR).
    """

    rows: list[dict[str, Any]]
    metric: str
    base: float

    def to_dataframe(self) -> Any:
        """One row per (layer, precision), most sensitive first. Needs pandas."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def most_sensitive(self, n: int = 5) -> list[str]:
        """Names of the ``n`` most sensitive layers."""
        out: list[str] = []
        for r in self.rows:
            if r["layer"] not in out:
                out.append(r["layer"])
        return out[:n]

    def __str__(self) -> str:
        w = max([len("layer")] + [len(r["layer"]) for r in self.rows])
        lines = [f"sensitivity ({self.metric}, float model: {self.base:.4g}; most sensitive first)",
                 f"{'layer':<{w}}  {'type':<12}{'weight':>7}{'score':>12}{'drop':>12}"]
        lines += [f"{r['layer']:<{w}}  {r['type']:<12}{r['weight']:>7}{r['score']:>12.4g}{r['drop']:>12.4g}"
                  for r in self.rows]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{c}</th>" for c in ("layer", "type", "weight", "score", "drop"))
        body = "".join(
            f"<tr><td style='text-align:left'>{html.escape(r['layer'])}</td><td>{r['type']}</td><td>{r['weight']}</td>"
            f"<td>{r['score']:.4g}</td><td>{r['drop']:.4g}</td></tr>" for r in self.rows)
        return (f"<div><b>sensitivity</b> ({html.escape(self.metric)}; float model {self.base:.4g}; most sensitive "
                f"first)<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")

    def plot(self, path: str | None = None) -> Any:
        """Horizontal bars of each layer's score (one colour per precision), most sensitive on top.
        Needs matplotlib; returns the Figure (also saved to ``path`` if given)."""
        import matplotlib.pyplot as plt

        layers = self.most_sensitive(len(self.rows))
        weights = sorted({r["weight"] for r in self.rows})
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(layers) * max(1, len(weights)) + 1.5), layout="constrained")
        h = 0.8 / len(weights)
        for k, wt in enumerate(weights):
            score = {r["layer"]: r["score"] for r in self.rows if r["weight"] == wt}
            ys = [i + k * h for i in range(len(layers))]
            ax.barh(ys, [score.get(n, math.nan) for n in layers], height=h, label=wt)
        ax.set_yticks([i + h * (len(weights) - 1) / 2 for i in range(len(layers))])
        ax.set_yticklabels(layers, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"{self.metric} with only this layer quantized (higher is better)")
        ax.set_title("Per-layer sensitivity (most sensitive on top)")
        ax.legend(title="weight")
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig


def _prepare(model: nn.Module, data: Any, config: Any, weights: Sequence[str], progress: bool):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    batches = list(_as_batches(data))
    if not batches:
        raise ValueError("data: no batches (the iterable is empty)")
    config = as_config(config)
    quantized = {}
    for w in weights:
        cfg = replace(config.with_weight(w), per_layer={})
        calib = batches if cfg.activation.calibrated else None
        # unchained: each layer is put alone into the float model (a chained one would pass uint8 on)
        quantized[w] = quantize_model(model, cfg, calib_data=calib, progress=False, chain_int8=False)
    layers = None
    for q in quantized.values():
        names = [n for n, m in q.named_modules() if isinstance(m, _QuantBase)]
        layers = names if layers is None else [n for n in layers if n in names]
    if not layers:
        raise ValueError(f"model: {type(model).__name__} has no layer that lowbit can quantize under this config")
    return batches, config, quantized, layers


def _sweep(model: nn.Module, scorer: _Scorer, quantized: dict, layers: list[str], progress: bool,
           group: Any = None) -> list[dict]:
    """One row per (layer, format): the model with only that layer quantized. With a process group
    (issue 17) the rows are computed round-robin over the ranks and gathered in the same order."""
    hybrid = decomposed(copy.deepcopy(model).eval())  # decomposed as the quantized models are (lowbit.nn.decompose)
    jobs = [(n, w) for n in layers for w in quantized]
    if group is not None:
        _dist.check_same(group, "sensitivity", {
            "layers and formats": jobs, "metric": scorer.name, "float score": repr(scorer.base),
            "reference outputs": _dist.tensor_digest(scorer.ref) if scorer.ref is not None else None,
            "quantized weights": _dist.tensor_digest([t for w in quantized for t in quantized[w].state_dict().values()])})

    def one(job: tuple[str, str]) -> dict:
        name, w = job
        q = quantized[w].get_submodule(name)
        orig = hybrid.get_submodule(name)
        _set_submodule(hybrid, name, q)
        try:
            score = scorer(hybrid)
        finally:
            _set_submodule(hybrid, name, orig)
        return {"layer": name, "type": type(q).__name__, "weight": w, "score": score,
                "drop": scorer.base - score if math.isfinite(scorer.base) else -score}

    if group is None:
        return [one(j) for j in _progress(jobs, progress, desc="sensitivity", unit="layer")]
    return _dist.spread(group, "sensitivity", jobs, one)


def sensitivity(
    model: nn.Module,
    data: Any,
    config: QuantConfig | dict | None = None,
    *,
    metric: Metric = "sqnr",
    progress: bool = True,
    process_group: Any = None,
) -> SensitivityReport:
    """Quantizes one layer at a time (the others stay float) and measures the effect on the whole
    model: which layers can take low precision and which cannot.

    Args:
        model: the float model (not modified).
        data: a batch or a list of batches (tensors, dicts or ``(inputs, labels)``); also the
            calibration data when ``config`` has static activations.
        config: how each layer is quantized (default ``QuantConfig()``: int8 weights, dynamic
            activations); its ``per_layer`` entries are ignored.
        metric: "sqnr" (model output SQNR in dB vs float), "cosine" (output cosine similarity, in
            percent) or a callable ``eval_fn(model) -> float``, higher is better (e.g. accuracy).
        progress: progress bar over the layers.
        process_group: None (one process), ``"world"`` or a gloo ProcessGroup: a collective call
            (same model and data on every rank) whose evaluations go round-robin to the ranks; every
            rank returns the whole report, the single-process one (:mod:`lowbit.interop.distributed`).

    Returns:
        A :class:`SensitivityReport`, most sensitive layer first (``drop`` = float score - score;
        for SQNR, whose float score is infinite, ``drop`` = -SQNR).

    Example:
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        >>> s = lowbit.sensitivity(m, torch.randn(32, 8), {"weight": "int4"}, progress=False)
        >>> sorted(r["layer"] for r in s.rows)
        ['0', '2']
    """
    group = _dist.resolve_group(process_group)
    cfg = as_config(config)
    batches, cfg, quantized, layers = _dist.run(group, "sensitivity", lambda: _prepare(
        model, data, cfg, [cfg.weight.name], progress))
    was = {m: m.training for m in model.modules()}
    model.eval()
    try:
        scorer = _dist.run(group, "sensitivity", lambda: _Scorer(model, batches, metric))
        rows = _sweep(model, scorer, quantized, layers, progress, group)
    finally:
        for m, t in was.items():
            m.training = t
    rows.sort(key=lambda r: (-r["drop"], r["layer"]))
    return SensitivityReport(rows, scorer.name, scorer.base)


class MixedPrecisionResult(NamedTuple):
    """What :func:`lowbit.auto_mixed_precision` chose.

    Attributes:
        config: a QuantConfig whose ``per_layer`` gives each quantized layer its weight dtype and
            whose ``exclude`` lists the layers kept float; ``quantize_model(model, config, ...)``
            rebuilds ``model``.
        report: :func:`lowbit.compare` of the chosen model against the float one.
        model: the chosen quantized model.
        sensitivity: the per-layer sweep the choice was made from.
        choice: layer name -> weight dtype, or None for float.
    """

    config: QuantConfig
    report: QuantReport
    model: nn.Module
    sensitivity: SensitivityReport
    choice: dict


# Bits per weight code of each candidate; the upgrade ladder goes from the fewest to the most.
_BITS = {"binary": 1, "ternary": 2, "log2": 4, "uint4": 4, "nf4": 4, "int4": 4, "int8": 8, "fp16": 16,
         "bf16": 16, None: 32}


def auto_mixed_precision(
    model: nn.Module,
    data: Any,
    *,
    candidates: Sequence[str | None] = ("int4", "int8", None),
    eval_fn: Callable[[nn.Module], float] | None = None,
    max_drop: float | None = None,
    target_size: int | None = None,
    config: QuantConfig | dict | None = None,
    progress: bool = True,
    timing: bool | Timer = True,
    process_group: Any = None,
) -> MixedPrecisionResult:
    """Picks a precision per layer from ``candidates`` under an accuracy-drop or size budget.

    1. Sensitivity sweep: every layer alone at every quantized candidate (progress bar).
    2. Start with every layer at the smallest candidate, then upgrade one layer one step at a
       time (e.g. int4 -> int8 -> float), always the upgrade that removes the most drop per added
       byte, until the budget is met: with ``max_drop`` until the whole model's drop is at most
       ``max_drop``; with ``target_size`` (bytes of the whole model, see
       :func:`lowbit.metrics.model_nbytes`) as long as the model still fits. With both, the
       smallest model within ``max_drop`` that fits; a UserWarning says when none does.
    3. :func:`lowbit.compare` of the chosen model.

    Args:
        model: the float model (not modified).
        data: a batch or list of batches: evaluation data (and calibration data for static
            activations).
        candidates: weight formats per layer: any :class:`lowbit.QuantConfig` weight ("int4",
            "int8", "nf4", "fp16", ...) and None (float). Each candidate is ``config`` with that
            weight (:meth:`lowbit.QuantConfig.with_weight`: e.g. ``config``'s ``group_size``
            applies to int4/uint4/nf4 candidates). The upgrade ladder orders them by bits per
            weight (ties in the order given).
        eval_fn: ``eval_fn(model) -> float``, higher is better (e.g. accuracy in %). Default: the
            output cosine similarity to the float model on ``data``, in percent.
        max_drop: largest allowed ``eval(float) - eval(quantized)``, in eval_fn's units.
        target_size: largest allowed model size in bytes.
        config: the rest of the quantization settings (activation mode, granularity, ...).
        progress: progress bars.
        timing: measure latencies in the final report (as :func:`lowbit.compare`: True, a
            :class:`lowbit.Timer`, or False). The sensitivity sweep itself times nothing.
        process_group: None (one process), ``"world"`` or a gloo ProcessGroup: a collective call
            (same model and data on every rank); the sensitivity sweep is spread over the ranks as
            in :func:`sensitivity`, the greedy upgrades then run on every rank alike, so every rank
            returns the single-process choice and config (latencies in ``report`` are each rank's).

    Returns:
        A :class:`MixedPrecisionResult` ``(config, report, model, sensitivity, choice)``.

    Raises:
        ValueError: neither budget given, unknown candidates, or ``target_size`` below the
            smallest possible model.

    Example:
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> m = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
        >>> res = lowbit.auto_mixed_precision(m, torch.randn(64, 32), max_drop=0.5, progress=False, timing=False)
        >>> sorted(res.choice.values(), key=str) in (['int4', 'int8'], ['int8', 'int8'], ['int4', 'int4'])
        True
    """
    if max_drop is None and target_size is None:
        raise ValueError("auto_mixed_precision: give max_drop and/or target_size")
    group = _dist.resolve_group(process_group)
    cands = list(dict.fromkeys(candidates))
    bad = [c for c in cands if c not in _BITS]
    if bad or not cands:
        raise ValueError(f"candidates: expected a non-empty subset of {tuple(_BITS)}, got {tuple(candidates)}")
    ladder = sorted(cands, key=lambda c: _BITS[c])
    weights = [c for c in ladder if c is not None]
    if not weights:
        raise ValueError("candidates: include at least one quantized dtype (e.g. 'int4' or 'int8')")
    batches, cfg, quantized, layers = _dist.run(group, "sensitivity", lambda: _prepare(
        model, data, config, weights, progress))
    metric: Metric = eval_fn if eval_fn is not None else "cosine"

    was = {m: m.training for m in model.modules()}
    model.eval()
    try:
        scorer = _dist.run(group, "sensitivity", lambda: _Scorer(model, batches, metric))
        rows = _sweep(model, scorer, quantized, layers, progress, group)
        drop = {(r["layer"], r["weight"]): r["drop"] for r in rows}
        hybrid = decomposed(copy.deepcopy(model).eval())
        floats = {n: hybrid.get_submodule(n) for n in layers}
        nbytes = {(n, w): model_nbytes(quantized[w].get_submodule(n)) for n in layers for w in weights}
        nbytes.update({(n, None): model_nbytes(floats[n]) for n in layers})

        def module(n: str, c: str | None) -> nn.Module:
            return floats[n] if c is None else quantized[c].get_submodule(n)

        level = {n: 0 for n in layers}
        for n in layers:
            _set_submodule(hybrid, n, module(n, ladder[0]))
        size = model_nbytes(hybrid)
        if target_size is not None and size > target_size:
            raise ValueError(f"target_size: {target_size:,} bytes is below the smallest model with these "
                             f"candidates ({size:,} bytes)")

        def cur_drop() -> float:
            return scorer.base - scorer(hybrid)

        d = cur_drop() if max_drop is not None else math.nan
        while max_drop is None or d > max_drop:
            best, best_gain = None, -math.inf
            for n in layers:
                if level[n] + 1 >= len(ladder):
                    continue
                c0, c1 = ladder[level[n]], ladder[level[n] + 1]
                extra = nbytes[(n, c1)] - nbytes[(n, c0)]
                if target_size is not None and size + extra > target_size:
                    continue
                gain = (drop.get((n, c0), 0.0) - drop.get((n, c1), 0.0)) / max(1, extra)
                if gain > best_gain:
                    best, best_gain = n, gain
            if best is None:
                break
            c0, c1 = ladder[level[best]], ladder[level[best] + 1]
            size += nbytes[(best, c1)] - nbytes[(best, c0)]
            level[best] += 1
            _set_submodule(hybrid, best, module(best, c1))
            if max_drop is not None:
                d = cur_drop()
        if max_drop is not None and d > max_drop:
            warnings.warn(f"auto_mixed_precision: no choice within target_size keeps the drop <= {max_drop} "
                          f"(best found: {d:.4g})", UserWarning, stacklevel=2)
    finally:
        for m, t in was.items():
            m.training = t

    choice = {n: ladder[level[n]] for n in layers}
    # Each layer gets exactly the config its candidate was measured with.
    per_layer = {n: replace(cfg.with_weight(c), per_layer={}, exclude=()) for n, c in choice.items() if c is not None}
    excluded = tuple(sorted(set(cfg.exclude) | {n for n, c in choice.items() if c is None}))
    out_cfg = replace(cfg.with_weight(weights[-1]), per_layer=per_layer, exclude=excluded)
    final = quantize_model(model, out_cfg, calib_data=batches if cfg.activation.calibrated else None,
                           progress=False)
    report = compare(model, final, batches, eval_fn=eval_fn, progress=False, timing=timing,
                     title="lowbit mixed precision")
    rows.sort(key=lambda r: (-r["drop"], r["layer"]))
    return MixedPrecisionResult(out_cfg, report, final, SensitivityReport(rows, scorer.name, scorer.base), choice)
