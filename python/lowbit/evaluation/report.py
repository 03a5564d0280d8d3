"""compare(): per-layer and whole-model error, size and speed of a quantized model against its
float original, as a QuantReport that prints, renders in Jupyter, plots and exports to pandas.

Public torch layer built from lowbit.metrics (error statistics in C++) and lowbit.convert.
pandas, matplotlib and tqdm are imported only by the methods that need them.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..core.calibration import _progress
from ..core.metrics import _ErrorStats, kl_divergence, model_nbytes, sqnr, top1_agreement
from ..interop.convert import _REASONS_ATTR, run_batch
from ..interop.equalize import InputScaled
from ..nn import QATConv2d, QATLinear
from ..nn._common import is_conv1d, linear_shape, main_output
from ..nn.chain import unchained
from ..nn.linear import _QuantBase
from .timing import MIB, Speedup, Timer, Timing, format_bytes, format_seconds

__all__ = ["LayerReport", "QuantReport", "compare"]


def _main_output(out: Any) -> torch.Tensor:
    return main_output(out, "compare")


@dataclass
class LayerReport:
    """One quantized layer compared with its float original on the same inputs.

    ``output_sqnr`` / ``output_cosine`` feed the float model's input of this layer to both the
    float and the quantized layer (the layer's own error); ``accumulated_sqnr`` compares the
    layer's output inside the fully quantized model with the float model's (error so far).
    Latencies are medians of interleaved float/quantized repeats on the layer's real input from
    the first batch (:class:`lowbit.Timer`; calls under ``min_sample_s`` timed in batches);
    ``timing_float`` / ``timing_quant`` hold the samples, ``speedup_range`` the quartile range.

    ``weight`` is the layer's weight format ("int8", "int4", "nf4", "fp16", ...), ``bits`` the bits
    per stored weight code (scales not included), ``granularity`` "per_channel", "per_tensor",
    "per_group" / "per_block" (with ``group_size``) or "elementwise" (fp16/bf16); ``bytes_after``
    counts the weights as stored (4-bit codes at half a byte).

    ``algorithm`` is how the weights were rounded ("rtn", "gptq", "mse", "awq", ...);
    ``algorithm_loss_rtn`` / ``algorithm_loss`` are that algorithm's own error criterion for
    round-to-nearest and for its result (GPTQ/AWQ: output error on the calibration inputs; MSE
    clipping: weight error; AutoRound: the output error of the layer's whole block), NaN for
    round-to-nearest.
    """

    name: str
    type: str
    bits: int
    granularity: str
    activation: str | None
    weight_sqnr: float
    output_sqnr: float
    output_cosine: float
    max_abs_error: float
    accumulated_sqnr: float
    bytes_before: int
    bytes_after: int
    latency_float_s: float
    latency_quant_s: float
    input_shape: tuple = ()
    weight: str = ""
    group_size: int | None = None
    timing_float: Timing | None = field(default=None, repr=False)
    timing_quant: Timing | None = field(default=None, repr=False)
    timing_suspect: bool = False  # speedup beyond Timer.max_ratio: a stalled side, not a kernel ratio
    algorithm: str = "rtn"
    algorithm_loss_rtn: float = math.nan
    algorithm_loss: float = math.nan

    @property
    def algorithm_gain(self) -> float:
        """``algorithm_loss / algorithm_loss_rtn`` (< 1: the algorithm cut its error), NaN for RTN."""
        before, after = self.algorithm_loss_rtn, self.algorithm_loss
        return after / before if before > 0 and math.isfinite(after) else math.nan

    @property
    def speedup(self) -> float:
        """Float latency / quantized latency (> 1: the quantized layer is faster), from medians."""
        return self.latency_float_s / self.latency_quant_s if self.latency_quant_s > 0 else math.nan

    @property
    def speedup_range(self) -> tuple[float, float]:
        """(low, high) of the speedup from the quartiles of both timings (NaN without timing)."""
        return _range(self.timing_float, self.timing_quant)

    @property
    def compression(self) -> float:
        return self.bytes_before / self.bytes_after if self.bytes_after else math.nan

    def __repr__(self) -> str:
        fmt = self.weight or f"int{self.bits}"
        return (f"LayerReport({self.name!r}, {self.type} {fmt} {_gran(self.granularity, self.group_size)} "
                f"{_act(self.activation)}: "
                f"out SQNR {_db(self.output_sqnr)}, weight SQNR {_db(self.weight_sqnr)}, "
                f"{self.compression:.2f}x smaller, {self.speedup:.2f}x faster)")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a flat dict; timings as their spread and loops (``*_spread``, ``*_loops``)
        plus ``speedup``, ``speedup_low``, ``speedup_high`` and ``compression``."""
        d = asdict(self)
        for side in ("float", "quant"):
            t = d.pop(f"timing_{side}") and getattr(self, f"timing_{side}")
            d[f"latency_{side}_spread"] = t.spread if t else math.nan
            d[f"latency_{side}_loops"] = t.loops if t else 0
        d["speedup"] = self.speedup
        d["speedup_low"], d["speedup_high"] = self.speedup_range
        d["compression"] = self.compression
        return d


@dataclass
class QuantReport:
    """What quantization did to a model: per-layer rows (:class:`LayerReport`) and whole-model
    numbers. Made by :func:`lowbit.compare`.

    In Jupyter the report renders as a table with the worst layers highlighted; ``print(report)``
    gives the same as text. ``to_dataframe()`` needs pandas, ``plot()`` matplotlib.

    Attributes:
        layers: one LayerReport per quantized layer, in model order.
        float_layers: layers kept in float32 -> the reason (from quantize_model).
        output_sqnr / output_cosine: final output of the quantized vs the float model.
        output_kl / top1_agreement: for (N, classes) outputs (logits), else None.
        metric_name / metric_float / metric_quant: ``eval_fn`` on both models (None without it).
        bytes_float / bytes_quant: :func:`lowbit.metrics.model_nbytes` of both models.
        latency_float_s / latency_quant_s: whole model on the first batch, medians of interleaved
            repeats (``timing_float`` / ``timing_quant`` hold the samples).
        n_batches: batches of ``data`` compared.
        timing_note: the TimingWarning text when timings were noisy (also printed), else None.
    """

    layers: list[LayerReport]
    float_layers: dict[str, str] = field(default_factory=dict)
    output_sqnr: float = math.nan
    output_cosine: float = math.nan
    output_kl: float | None = None
    top1_agreement: float | None = None
    metric_name: str | None = None
    metric_float: float | None = None
    metric_quant: float | None = None
    bytes_float: int = 0
    bytes_quant: int = 0
    latency_float_s: float = math.nan
    latency_quant_s: float = math.nan
    n_batches: int = 0
    title: str = "lowbit QuantReport"
    timing_float: Timing | None = field(default=None, repr=False)
    timing_quant: Timing | None = field(default=None, repr=False)
    timing_note: str | None = None

    # -- derived ---------------------------------------------------------------------------

    @property
    def compression(self) -> float:
        return self.bytes_float / self.bytes_quant if self.bytes_quant else math.nan

    @property
    def speedup(self) -> float:
        """Whole-model float / quantized latency, from medians."""
        return self.latency_float_s / self.latency_quant_s if self.latency_quant_s > 0 else math.nan

    @property
    def speedup_range(self) -> tuple[float, float]:
        """(low, high) of the whole-model speedup from the quartiles of both timings."""
        return _range(self.timing_float, self.timing_quant)

    @property
    def metric_drop(self) -> float | None:
        """metric_float - metric_quant (positive: the quantized model scores lower)."""
        if self.metric_float is None or self.metric_quant is None:
            return None
        return self.metric_float - self.metric_quant

    def worst(self, n: int = 5) -> list[LayerReport]:
        """The ``n`` layers with the lowest output SQNR (their own error), worst first."""
        return sorted(self.layers, key=lambda r: (_nan_last(r.output_sqnr), r.name))[: max(0, n)]

    def _worst_names(self) -> set[str]:
        k = min(3, max(1, len(self.layers) // 4)) if self.layers else 0
        return {r.name for r in self.worst(k)}

    # -- exports ---------------------------------------------------------------------------

    def to_dataframe(self) -> Any:
        """One row per quantized layer (all LayerReport fields plus speedup and compression),
        indexed by layer name. Needs pandas."""
        import pandas as pd

        return pd.DataFrame([r.to_dict() for r in self.layers]).set_index("name")

    def model_summary(self) -> dict[str, Any]:
        """The whole-model numbers as a plain dict."""
        return {
            "output_sqnr": self.output_sqnr,
            "output_cosine": self.output_cosine,
            "output_kl": self.output_kl,
            "top1_agreement": self.top1_agreement,
            "metric_name": self.metric_name,
            "metric_float": self.metric_float,
            "metric_quant": self.metric_quant,
            "bytes_float": self.bytes_float,
            "bytes_quant": self.bytes_quant,
            "compression": self.compression,
            "latency_float_s": self.latency_float_s,
            "latency_quant_s": self.latency_quant_s,
            "latency_float_spread": self.timing_float.spread if self.timing_float else math.nan,
            "latency_quant_spread": self.timing_quant.spread if self.timing_quant else math.nan,
            "speedup": self.speedup,
            "speedup_low": self.speedup_range[0],
            "speedup_high": self.speedup_range[1],
        }

    def _model_lines(self) -> list[str]:
        lines = []
        out = f"output SQNR {_db(self.output_sqnr)} | cosine {self.output_cosine:.5f}"
        if self.output_kl is not None:
            out += f" | KL {self.output_kl:.2e}"
        if self.top1_agreement is not None:
            out += f" | top-1 agreement {100 * self.top1_agreement:.1f}%"
        lines.append(out)
        if self.metric_name is not None:
            lines.append(f"{self.metric_name}: float {self.metric_float:.4g} -> quantized {self.metric_quant:.4g} "
                         f"(drop {self.metric_drop:+.4g})")
        lines.append(f"size {format_bytes(self.bytes_float)} -> {format_bytes(self.bytes_quant)} "
                     f"({self.compression:.2f}x smaller) | latency {_lat(self.timing_float, self.latency_float_s)} -> "
                     f"{_lat(self.timing_quant, self.latency_quant_s)} ({_ratio(self.speedup, self.speedup_range)})")
        if self.timing_float is not None:
            t = self.timing_float
            lines.append(f"latency: median ± half IQR of {len(t.samples)} interleaved float/quantized repeats; "
                         "speedup from medians (quartile range); layer calls under 1 ms timed in batches")
        if self.timing_note:
            lines.append(f"WARNING {self.timing_note}")
        return lines

    _COLUMNS = ("layer", "type", "bits", "act", "weight SQNR", "out SQNR", "cosine", "accum SQNR",
                "MiB float->quant", "ms float", "ms quant", "speedup (range)", "rounding (err vs rtn)")

    def _cells(self, r: LayerReport) -> tuple[str, ...]:
        return (r.name, r.type, f"{r.bits} {_gran(r.granularity, r.group_size)}", _act(r.activation), _db(r.weight_sqnr),
                _db(r.output_sqnr), f"{r.output_cosine:.5f}", _db(r.accumulated_sqnr),
                f"{_mib(r.bytes_before)}->{_mib(r.bytes_after)}", _ms_cell(r.timing_float, r.latency_float_s),
                _ms_cell(r.timing_quant, r.latency_quant_s),
                _ratio(r.speedup, r.speedup_range) + (" !" if r.timing_suspect else ""), _algo_cell(r))

    def summary(self) -> str:
        """The report as plain text: whole-model lines, then one row per layer (worst marked *)."""
        worst = self._worst_names()
        rows = [self._COLUMNS] + [self._cells(r) for r in self.layers]
        widths = [max(len(row[i]) for row in rows) + (1 if i == 0 else 0) for i in range(len(self._COLUMNS))]
        lines = [(f"{self.title}: {len(self.layers)} quantized layers, {len(self.float_layers)} kept float, "
                 f"{self.n_batches} batch{'es' if self.n_batches != 1 else ''}")]
        lines += ["  " + s for s in self._model_lines()]
        for k, row in enumerate(rows):
            mark = "*" if k > 0 and self.layers[k - 1].name in worst else " "
            cells = [(row[0] + mark if k else row[0] + " ").ljust(widths[0])]
            cells += [c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(row[1:], widths[1:]), 1)]
            lines.append("  ".join(cells).rstrip())
        if any(r.timing_suspect for r in self.layers):
            lines.append("! implausible speedup: one side stalled (see the WARNING above), not a kernel ratio")
        if worst:
            lines.append("* worst layers (lowest output SQNR): "
                         + ", ".join(f"{r.name} ({_db(r.output_sqnr)})" for r in self.worst(len(worst))))
        for why, names in self._float_by_reason().items():
            shown = ", ".join(names[:3]) + (f", ... ({len(names)} layers)" if len(names) > 3 else "")
            lines.append(f"kept float: {shown}: {why}")
        return "\n".join(lines)

    def _float_by_reason(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for name, why in self.float_layers.items():
            groups.setdefault(why, []).append(name)
        return groups

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return (f"QuantReport({len(self.layers)} layers, output SQNR {_db(self.output_sqnr)}, "
                f"{self.compression:.2f}x smaller, {self.speedup:.2f}x faster)")

    def _repr_html_(self) -> str:
        worst = self._worst_names()
        esc = html.escape
        head = "".join(f"<th style='text-align:{'left' if i < 2 else 'right'}'>{esc(c)}</th>"
                       for i, c in enumerate(self._COLUMNS))
        body = []
        for r in self.layers:
            cells = self._cells(r)
            tds = []
            for i, c in enumerate(cells):
                style = f"text-align:{'left' if i < 2 else 'right'}"
                if i == 5:
                    style += f";color:{_sqnr_color(r.output_sqnr)};font-weight:bold"
                if i == 11 and r.speedup < 1:
                    style += ";color:#b35900"
                tds.append(f"<td style='{style}'>{esc(c)}</td>")
            bg = " style='background:#fde2e2;color:#000'" if r.name in worst else ""
            body.append(f"<tr{bg}>{''.join(tds)}</tr>")
        model = "<br>".join(f"<b style='color:#b35900'>{esc(s)}</b>" if s.startswith("WARNING") else esc(s)
                            for s in self._model_lines())
        foot = ""
        if worst:
            foot += ("<p style='margin:4px 0'><span style='background:#fde2e2'>&nbsp;highlighted&nbsp;</span> "
                     "worst layers by output SQNR</p>")
        if self.float_layers:
            items = "".join(f"<li><code>{esc(n)}</code>: {esc(w)}</li>" for n, w in self.float_layers.items())
            foot += f"<details><summary>{len(self.float_layers)} layers kept float</summary><ul>{items}</ul></details>"
        return (f"<div><b>{esc(self.title)}</b>: {len(self.layers)} quantized layers, "
                f"{self.n_batches} batch{'es' if self.n_batches != 1 else ''}<br><span style='font-family:monospace'>{model}</span>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{foot}</div>")

    def plot(self, path: str | None = None) -> Any:
        """Per-layer output SQNR bars (worst in red) with the speedup of each layer on a second
        axis, and the whole-model size / metric / latency, float vs quantized. Needs matplotlib.

        Args:
            path: also save the figure there (format from the suffix, e.g. ``.png``).

        Returns:
            The matplotlib Figure.
        """
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(max(8.0, 0.45 * len(self.layers) + 3), 7.5), layout="constrained")
        grid = fig.add_gridspec(2, 3, height_ratios=[1.6, 1])
        ax = fig.add_subplot(grid[0, :])
        names = [r.name for r in self.layers]
        vals = [r.output_sqnr if math.isfinite(r.output_sqnr) else 0.0 for r in self.layers]
        worst = self._worst_names()
        colors = ["#d62728" if n in worst else "#1f77b4" for n in names]
        xs = range(len(names))
        ax.bar(xs, vals, color=colors, label="output SQNR (dB)")
        ax.set_ylabel("output SQNR (dB), higher is better")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
        ax.set_title(f"{self.title}: per-layer error (red: worst) and speedup")
        ax2 = ax.twinx()
        speed = [r.speedup for r in self.layers]
        ranges = [r.speedup_range for r in self.layers]
        below = [max(0.0, v - lo) if math.isfinite(lo) else 0.0 for v, (lo, _) in zip(speed, ranges)]
        above = [max(0.0, hi - v) if math.isfinite(hi) else 0.0 for v, (_, hi) in zip(speed, ranges)]
        ax2.errorbar(list(xs), speed, yerr=[below, above], fmt="o-", color="#2ca02c", capsize=3,
                     label="speedup (x), quartile range")
        ax2.axhline(1.0, color="#2ca02c", lw=0.8, ls="--")
        ax2.set_ylabel("speedup vs float (x)")
        ax2.set_ylim(bottom=0)
        handles = [ax.get_legend_handles_labels(), ax2.get_legend_handles_labels()]
        ax.legend(handles[0][0] + handles[1][0], handles[0][1] + handles[1][1], loc="lower left", fontsize=8)
        panels = [("size (MiB)", self.bytes_float / MIB, self.bytes_quant / MIB),
                  (self.metric_name or "output cosine", self.metric_float if self.metric_name else 1.0,
                   self.metric_quant if self.metric_name else self.output_cosine),
                  ("latency (ms)", 1e3 * self.latency_float_s, 1e3 * self.latency_quant_s)]
        for k, (label, f, q) in enumerate(panels):
            a = fig.add_subplot(grid[1, k])
            a.bar(["float32", "lowbit"], [f, q], color=["#7f7f7f", "#1f77b4"])
            if label == "latency (ms)" and self.timing_float is not None and self.timing_quant is not None:
                quart = [[1e3 * x for x in t.quartiles] for t in (self.timing_float, self.timing_quant)]
                a.errorbar([0, 1], [f, q], yerr=[[max(0.0, v - lo) for v, (lo, _) in zip((f, q), quart)],
                                                 [max(0.0, hi - v) for v, (_, hi) in zip((f, q), quart)]],
                           fmt="none", ecolor="black", capsize=4)
            a.set_title(label)
            for i, v in enumerate((f, q)):
                a.annotate(f"{v:.4g}", (i, v), ha="center", va="bottom", fontsize=8)
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig


def _nan_last(v: float) -> float:
    return math.inf if math.isnan(v) else v


def _db(v: float) -> str:
    return "inf dB" if v == math.inf else f"{v:.1f} dB"


def _mib(b: int) -> str:
    """A size in MiB without the label (the column header says MiB): the digits of format_bytes."""
    return format_bytes(b).removesuffix(" MiB")


def _lat(t: Timing | None, seconds: float) -> str:
    return str(t) if t is not None else format_seconds(seconds)


def _ms_cell(t: Timing | None, seconds: float) -> str:
    if t is None:
        return f"{1e3 * seconds:.3f}"
    return f"{1e3 * t.median:.3f} ±{100 * t.spread:.0f}%"


def _range(a: Timing | None, b: Timing | None) -> tuple[float, float]:
    if a is None or b is None:
        return math.nan, math.nan
    s = Speedup(a, b)
    return s.low, s.high


def _ratio(r: float, rng: tuple[float, float]) -> str:
    if not math.isfinite(rng[0]):
        return f"{r:.2f}x"
    return f"{r:.2f}x ({rng[0]:.2f}-{rng[1]:.2f})"


def _gran(g: str, group_size: int | None = None) -> str:
    if g in ("per_group", "per_block"):
        return f"g{group_size}"
    return {"per_channel": "ch", "per_tensor": "tensor", "elementwise": "fp"}.get(g, g)


def _act(a: str | None) -> str:
    return {"dynamic": "dyn", "dynamic_per_tensor": "dyn/t", "static": "static", "float": "w-only",
            None: "w-only"}.get(a, str(a))


def _sqnr_color(v: float) -> str:
    if not v >= 20:
        return "#c00000"
    return "#b35900" if v < 30 else "#2e7d32"


def _as_batches(data: Any) -> Iterable:
    if isinstance(data, (torch.Tensor, Mapping)):
        return [data]
    if not isinstance(data, Iterable):
        raise TypeError(f"data: expected a batch or an iterable of batches, got {type(data).__name__}")
    return data


def _scaled_input(q: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input the quantized layer takes where the float layer takes ``x``: ``x / s`` after AWQ /
    SmoothQuant (per-input-channel scales folded into the previous op or an InputScaled wrapper)."""
    s = getattr(q, "input_channel_scale", None)
    return x if s is None else x / s.to(x.dtype)


def _float_output(q: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """The quantized layer's output in the float layer's units: ``y / o`` when the next layer's
    AWQ / SmoothQuant scales were folded into this one (its outputs multiplied by ``o``)."""
    o = getattr(q, "output_channel_scale", None)
    return y if o is None else y / o.to(y.dtype)


def _algo_cell(r: LayerReport) -> str:
    gain = r.algorithm_gain
    return r.algorithm + (f" ({100 * (gain - 1):+.0f}%)" if math.isfinite(gain) else "")


# (loss before, loss after) keys of each algorithm's stats
_ALGO_LOSSES = (("loss_rtn", "loss_gptq"), ("loss_rtn", "loss"), ("weight_mse_rtn", "weight_mse"))


def _algorithm_fields(q: nn.Module) -> dict[str, Any]:
    algo = getattr(q, "algorithm", None)
    if algo is None:
        return {}
    stats = getattr(q, "algorithm_stats", None) or {}
    out: dict[str, Any] = {"algorithm": str(getattr(algo, "name", algo))}
    for before, after in _ALGO_LOSSES:
        if before in stats and after in stats:
            out["algorithm_loss_rtn"], out["algorithm_loss"] = float(stats[before]), float(stats[after])
            break
    return out


@torch.no_grad()
def compare(
    float_model: nn.Module,
    quant_model: nn.Module,
    data: Any,
    *,
    eval_fn: Callable[[nn.Module], float] | None = None,
    progress: bool = True,
    timing: bool | Timer = True,
    title: str = "lowbit QuantReport",
) -> QuantReport:
    """Runs both models on ``data`` and reports, per quantized layer and for the whole model,
    the error, size and speed of ``quant_model`` against ``float_model``.

    Per layer (every lowbit QuantLinear / QuantConv2d of ``quant_model``, matched by name to the
    layer it replaced in ``float_model``): type, bits, granularity, activation mode; weight SQNR;
    output SQNR, cosine and max error when the float model's input of that layer is fed to both
    the float and the quantized layer; the SQNR accumulated up to that layer in the quantized
    model; bytes before/after; float and quantized latency on the first batch's real input and
    the speedup (median ± spread, range); the rounding algorithm (GPTQ, AWQ, MSE scales, ...) with
    its error criterion before (round-to-nearest) and after. Whole model: output SQNR / cosine (and KL / top-1 agreement for (N, classes)
    outputs), ``eval_fn`` on both models, size and latency.

    Both models run in eval mode under ``torch.no_grad()``; their training flags are restored.

    Args:
        float_model: the original float model.
        quant_model: its quantized version (e.g. from :func:`lowbit.quantize_model`).
        data: a batch or an iterable of batches, as for ``quantize_model(calib_data=...)``:
            tensors, dicts (``model(**batch)``) or ``(inputs, labels)`` tuples.
        eval_fn: optional ``eval_fn(model) -> float`` (e.g. test accuracy), run on both models.
        progress: show a tqdm progress bar over the batches (when tqdm is installed).
        timing: measure latencies with a default :class:`lowbit.Timer` (True), with the given
            Timer (repeats, budget, clock), or not at all (False: faster, error-only report;
            latencies NaN). Float and quantized runs are interleaved, per layer and for the whole
            model; when any spread is above ``Timer.max_spread`` the report says so
            (``timing_note``) and one :class:`lowbit.TimingWarning` is emitted (if ``Timer.warn``).
        title: shown at the top of the report and the plot.

    Returns:
        A :class:`QuantReport`.

    Raises:
        TypeError: a model is not an nn.Module, or data is not batches.
        ValueError: ``quant_model`` has no lowbit quantized layer (and is no quantize_model
            result that kept every layer float), a quantized layer has no
            float counterpart of the same name, or ``data`` is empty.

    Example:
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> m = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
        >>> q = lowbit.quantize_model(m, progress=False)
        >>> r = lowbit.compare(m, q, torch.randn(8, 16), progress=False, timing=False)
        >>> [layer.name for layer in r.layers], r.output_sqnr > 30
        (['0', '2'], True)
    """
    for arg, m in (("float_model", float_model), ("quant_model", quant_model)):
        if not isinstance(m, nn.Module):
            raise TypeError(f"{arg}: expected a torch.nn.Module, got {type(m).__name__}")
    from ..nn.decompose import decomposed_like

    with decomposed_like(float_model, quant_model) as fm:  # matched per decomposed layer (lowbit.nn.decompose)
        return _compare(fm, quant_model, data, eval_fn=eval_fn, progress=progress, timing=timing,
                        title=title)


def _compare(float_model: nn.Module, quant_model: nn.Module, data: Any, *, eval_fn: Any, progress: bool,
             timing: Any, title: str) -> QuantReport:
    pairs: list[tuple[str, _QuantBase, nn.Module]] = []
    for name, q in quant_model.named_modules():
        if isinstance(q, _QuantBase):
            parent, _, child = name.rpartition(".")
            if child == "layer" and isinstance(quant_model.get_submodule(parent), InputScaled):
                fname = parent  # AWQ / SmoothQuant moved the layer behind an explicit input scale
            else:
                fname = name
            try:
                f = float_model.get_submodule(fname)
            except AttributeError:
                raise ValueError(f"float_model: has no layer '{fname}' to compare with the quantized one") from None
            pairs.append((name, q, f))
    if not pairs and any(isinstance(m, (QATLinear, QATConv2d)) for m in quant_model.modules()):
        raise ValueError("quant_model: has QAT layers but no quantized ones; call lowbit.convert(model) first")
    if not pairs and not hasattr(quant_model, _REASONS_ATTR):  # all-float quantize_model results are fine
        raise ValueError("quant_model: has no lowbit quantized layer (use lowbit.quantize_model or lowbit.convert)")

    own = {n: _ErrorStats() for n, _, _ in pairs}
    accum = {n: _ErrorStats() for n, _, _ in pairs}
    first_input: dict[str, torch.Tensor] = {}
    float_out: dict[str, torch.Tensor] = {}
    model_stats = _ErrorStats()
    kl_sum, top1_sum, rows = 0.0, 0.0, 0
    first_batch: Any = None
    n_batches = 0

    def float_hook(name: str, q: _QuantBase):
        def hook(mod: nn.Module, args: tuple, out: Any) -> None:
            x = args[0]
            own[name].add(out, _float_output(q, q(_scaled_input(q, x))))
            float_out[name] = out
            first_input.setdefault(name, x)
        return hook

    def quant_hook(name: str):
        def hook(mod: nn.Module, args: tuple, out: Any) -> None:
            ref = float_out.get(name)
            if ref is not None and ref.shape == out.shape:
                accum[name].add(ref, _float_output(mod, out))
        return hook

    flags = {m: m.training for model in (float_model, quant_model) for m in model.modules()}
    handles = [f.register_forward_hook(float_hook(n, q)) for n, q, f in pairs]
    handles += [q.register_forward_hook(quant_hook(n)) for n, q, _ in pairs]
    float_model.eval()
    quant_model.eval()
    try:
        for batch in _progress(_as_batches(data), progress, desc="compare"):
            if first_batch is None:
                first_batch = batch
            float_out.clear()
            with unchained():  # the hooks read float layer outputs (chained layers would pass bytes on)
                of = _main_output(run_batch(float_model, batch))
                oq = _main_output(run_batch(quant_model, batch))
            model_stats.add(of, oq)
            if of.dim() == 2 and of.shape[1] > 1:
                k = of.shape[0]
                kl_sum += kl_divergence(of, oq) * k
                top1_sum += top1_agreement(of, oq) * k
                rows += k
            n_batches += 1
    finally:
        for h in handles:
            h.remove()
    if n_batches == 0:
        for m, t in flags.items():
            m.training = t
        raise ValueError("data: no batches (the iterable is empty)")

    timer = timing if isinstance(timing, Timer) else Timer() if timing else None
    measured: dict[str, Timing] = {}
    try:
        layers = []
        for name, q, f in pairs:
            x = first_input.get(name)
            w = (linear_shape(f)[2] if is_conv1d(f) else f.weight).detach()  # Conv1D: stored (in, out)
            s = getattr(q, "input_channel_scale", None)
            if s is not None:  # AWQ / SmoothQuant: the quantized weight is W diag(s)
                w = w * s.to(w.dtype)
                x = None if x is None else _scaled_input(q, x)
            o = getattr(q, "output_channel_scale", None)
            if o is not None:  # ... and diag(o) W when the scales of the next layer were folded into it
                w = w * o.to(w.dtype).reshape(-1, *([1] * (w.dim() - 1)))
            lat_f = lat_q = math.nan
            t_f = t_q = None
            if timer is not None and x is not None:
                t_f, t_q = timer.time([lambda f=f, x=x: f(x), lambda q=q, x=x: q(x)])
                lat_f, lat_q = t_f.median, t_q.median
                measured[f"{name} float"], measured[f"{name} quant"] = t_f, t_q
            layers.append(LayerReport(
                name=name,
                type=type(q).__name__,
                bits=q.weight_bits,
                granularity=q.weight_granularity,
                activation=q.activation.name,
                weight_sqnr=sqnr(w.reshape(-1), q.dequantized_weight().reshape(-1)),
                output_sqnr=own[name].sqnr if own[name].n else math.nan,
                output_cosine=own[name].cosine if own[name].n else math.nan,
                max_abs_error=own[name].max if own[name].n else math.nan,
                accumulated_sqnr=accum[name].sqnr if accum[name].n else math.nan,
                bytes_before=model_nbytes(f),
                bytes_after=model_nbytes(q),
                latency_float_s=lat_f,
                latency_quant_s=lat_q,
                input_shape=tuple(x.shape) if x is not None else (),
                weight=q.weight_dtype,
                group_size=q.group_size,
                timing_float=t_f,
                timing_quant=t_q,
                **_algorithm_fields(q),
            ))
        lat_fm = lat_qm = math.nan
        tm_f = tm_q = None
        note = None
        if timer is not None:
            tm_f, tm_q = timer.time([lambda: run_batch(float_model, first_batch),
                                     lambda: run_batch(quant_model, first_batch)])
            lat_fm, lat_qm = tm_f.median, tm_q.median
            measured = {"(whole model) float": tm_f, "(whole model) quant": tm_q, **measured}
            ratios = {"(whole model)": Speedup(tm_f, tm_q)}
            ratios.update({r.name: Speedup(r.timing_float, r.timing_quant) for r in layers
                           if r.timing_float is not None and r.timing_quant is not None})
            note = timer.check(measured, f"compare ({title})", stacklevel=4, speedups=ratios)
            for r in layers:
                ratio = ratios[r.name].ratio if r.name in ratios else math.nan
                r.timing_suspect = math.isfinite(ratio) and not 1 / timer.max_ratio <= ratio <= timer.max_ratio
        metric_name = metric_f = metric_q = None
        if eval_fn is not None:
            metric_name = getattr(eval_fn, "__name__", "metric")
            if metric_name == "<lambda>":
                metric_name = "metric"
            metric_f = float(eval_fn(float_model))
            metric_q = float(eval_fn(quant_model))
    finally:
        for m, t in flags.items():
            m.training = t

    return QuantReport(
        layers=layers,
        float_layers=dict(getattr(quant_model, _REASONS_ATTR, {})),
        output_sqnr=model_stats.sqnr,
        output_cosine=model_stats.cosine,
        output_kl=kl_sum / rows if rows else None,
        top1_agreement=top1_sum / rows if rows else None,
        metric_name=metric_name,
        metric_float=metric_f,
        metric_quant=metric_q,
        bytes_float=model_nbytes(float_model),
        bytes_quant=model_nbytes(quant_model),
        latency_float_s=lat_fm,
        latency_quant_s=lat_qm,
        n_batches=n_batches,
        title=title,
        timing_float=tm_f,
        timing_quant=tm_q,
        timing_note=note,
    )
