"""Side-by-side error of quantization formats: bits per weight vs MSE / SQNR (issue 7).

Public API layer, built only from :func:`lowbit.quantize` and :func:`lowbit.choose_qparams`.
pandas and matplotlib are imported lazily, only by :meth:`FormatComparison.to_pandas` and
:meth:`FormatComparison.plot`.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional, Union

import numpy as np

from ..core._array import as_float_array, is_torch_tensor
from ..core.quantize import choose_qparams, quantize

__all__ = ["DEFAULT_FORMATS", "FormatComparison", "compare_formats", "format_label"]

# What compare_formats compares when no list is given: affine ints at their usual weight
# granularities and every format of lowbit.formats.
DEFAULT_FORMATS: tuple = (
    "fp16",
    "bf16",
    "int8",
    {"dtype": "int4", "group_size": 64},
    "nf4",
    {"dtype": "nf4", "double_quant": True},
    {"dtype": "log2", "bits": 8},
    "log2",
    "ternary",
    "binary",
)

FormatSpec = Union[str, dict]


def format_label(spec: FormatSpec) -> str:
    """A short name for a format spec: ``"nf4"``, ``"int4 group_size=64"``, ``"nf4 double_quant"``.

    Example:
        >>> lowbit.format_label({"dtype": "log2", "bits": 8})
        'log2 bits=8'
    """
    if isinstance(spec, str):
        return spec
    opts = [k if v is True else f"{k}={v}" for k, v in spec.items() if k not in ("dtype", "label")]
    return spec.get("label") or " ".join([spec["dtype"]] + opts)


def _spec(spec: Any) -> dict:
    if isinstance(spec, str):
        return {"dtype": spec}
    if isinstance(spec, dict) and isinstance(spec.get("dtype"), str):
        return dict(spec)
    raise TypeError(f"formats: each entry is a dtype name or a dict with a 'dtype' key, got {spec!r}")


def _quantize_weight(w: np.ndarray, spec: dict) -> Any:
    """Quantizes one weight with ``spec``. Affine ints get symmetric absmax parameters: per
    output channel (axis 0) for 2-D+ weights, per group with ``group_size``, else per tensor."""
    opts = {k: v for k, v in spec.items() if k not in ("dtype", "label")}
    dtype = spec["dtype"]
    if dtype not in ("int8", "uint8", "int4", "uint4"):
        return quantize(w, opts.pop("scale", None), dtype=dtype, **opts)
    gs = opts.pop("group_size", None)
    if opts:
        raise ValueError(f"formats: unknown option(s) {sorted(opts)} for {dtype}")
    absw = np.where(np.isnan(w), np.float32(0), np.abs(w))
    if gs is not None:
        n_groups = -(-w.shape[-1] // gs) if w.ndim else 1
        pad = np.zeros(w.shape[:-1] + (n_groups * gs,), np.float32)
        pad[..., : w.shape[-1]] = absw
        m = pad.reshape(w.shape[:-1] + (n_groups, gs)).max(axis=-1)
        s, z = choose_qparams(-m, m, dtype=dtype, symmetric=True)
        return quantize(w, s, z, dtype=dtype, group_size=gs)
    if w.ndim >= 2:
        m = absw.max(axis=tuple(range(1, w.ndim)))
        s, z = choose_qparams(-m, m, dtype=dtype, symmetric=True)
        return quantize(w, s, z, dtype=dtype, axis=0)
    m = float(absw.max()) if w.size else 1.0
    s, z = choose_qparams(-m, m, dtype=dtype, symmetric=True)
    return quantize(w, s, z, dtype=dtype)


def _tensors(x: Any) -> list[tuple[str, np.ndarray]]:
    """(name, float32 array) pairs: one array, a dict of arrays, or a torch module's Linear weights."""
    if isinstance(x, dict):
        items = list(x.items())
    elif hasattr(x, "named_modules") and not is_torch_tensor(x):
        items = [
            (f"{name}.weight", m.weight)
            for name, m in x.named_modules()
            if type(m).__name__ == "Linear" and getattr(m, "weight", None) is not None
        ]
        if not items:
            raise ValueError("x_or_model: the module has no Linear layers")
    else:
        items = [("x", x)]
    out = []
    for name, v in items:
        if is_torch_tensor(v):
            v = v.detach()
        out.append((str(name), np.asarray(as_float_array(v, f"x_or_model[{name!r}]"), np.float32)))
    return out


def _sqnr_db(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _first_tensor(y: Any) -> Any:
    if isinstance(y, dict):
        y = next(iter(y.values()))
    elif isinstance(y, (tuple, list)):
        y = y[0]
    elif hasattr(y, "last_hidden_state"):
        y = y.last_hidden_state
    return y


def _model_outputs(model: Any, specs: list, inputs: Any) -> dict:
    """format label -> (cosine, relative error) of the model output with that format's weights."""
    import torch

    args = inputs if isinstance(inputs, tuple) else (inputs,)
    linears = [m for _, m in model.named_modules() if type(m).__name__ == "Linear"]
    saved = [m.weight.detach().clone() for m in linears]
    out = {}
    with torch.inference_mode():
        ref = _first_tensor(model(*args)).detach().double().flatten()
        try:
            for spec in specs:
                for m, w in zip(linears, saved):
                    q = _quantize_weight(w.float().numpy(), spec)
                    m.weight.copy_(torch.from_numpy(q.dequantize()).to(m.weight.dtype))
                y = _first_tensor(model(*args)).detach().double().flatten()
                cos = float(torch.dot(y, ref) / (y.norm() * ref.norm()).clamp_min(1e-300))
                rel = float((y - ref).norm() / ref.norm().clamp_min(1e-300))
                out[format_label(spec)] = (cos, rel)
        finally:
            for m, w in zip(linears, saved):
                m.weight.copy_(w)
    return out


class FormatComparison(list):
    """Rows (dicts) of :func:`compare_formats`, one per (tensor, format), plus summaries.

    Each row: ``tensor``, ``format``, ``dtype``, ``numel``, ``nbytes``, ``bits_per_weight``,
    ``mse``, ``sqnr_db`` (``10 log10(sum x^2 / sum (x - deq)^2)``), ``max_abs_err``, ``sse`` (sum
    of squared errors) and ``sum_sq`` (sum of x^2); NaN weights are left out of the sums.
    """

    def __init__(self, rows: Iterable[dict] = ()):
        super().__init__(rows)
        self.outputs: dict = {}  # format label -> (output cosine, output relative error), with inputs=

    def summary(self) -> list[dict]:
        """One row per format over all tensors (totals: bits = 8 * sum nbytes / sum numel,
        mse = sum squared error / sum numel, SQNR of the totals), in the order compared; plus
        ``output_cosine`` / ``output_rel_err`` when the comparison ran a model on inputs."""
        out: dict[str, dict] = {}
        for r in self:
            s = out.setdefault(r["format"], {"format": r["format"], "dtype": r["dtype"], "numel": 0, "nbytes": 0,
                                             "sse": 0.0, "sum_sq": 0.0, "max_abs_err": 0.0})
            s["numel"] += r["numel"]
            s["nbytes"] += r["nbytes"]
            s["sse"] += r["sse"]
            s["sum_sq"] += r["sum_sq"]
            s["max_abs_err"] = max(s["max_abs_err"], r["max_abs_err"])
        rows = []
        for s in out.values():
            n = s["numel"]
            rows.append({
                "format": s["format"], "dtype": s["dtype"], "numel": n, "nbytes": s["nbytes"],
                "bits_per_weight": 8.0 * s["nbytes"] / n if n else math.nan,
                "mse": s["sse"] / n if n else math.nan, "sqnr_db": _sqnr_db(s["sum_sq"], s["sse"]),
                "max_abs_err": s["max_abs_err"], "sse": s["sse"], "sum_sq": s["sum_sq"],
            })
            if s["format"] in self.outputs:
                rows[-1]["output_cosine"], rows[-1]["output_rel_err"] = self.outputs[s["format"]]
        return rows

    def to_pandas(self, summary: bool = False) -> Any:
        """A pandas DataFrame of the rows (or of :meth:`summary`); imports pandas lazily."""
        import pandas as pd

        return pd.DataFrame(self.summary() if summary else list(self))

    def table(self) -> str:
        """The summary as a Markdown table."""
        head = ["format", "bits/weight", "MSE", "SQNR dB", "max |err|"] + (["output cos"] if self.outputs else [])
        body = [[r["format"], f"{r['bits_per_weight']:.3f}", f"{r['mse']:.3g}", f"{r['sqnr_db']:.2f}",
                 f"{r['max_abs_err']:.3g}"] + ([f"{r['output_cosine']:.5f}"] if self.outputs else [])
                for r in self.summary()]
        width = [max(len(str(c)) for c in col) for col in zip(head, *body)]
        line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, width)) + " |"  # noqa: E731
        return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in width) + "|"] + [line(b) for b in body])

    def plot(self, ax: Any = None, metric: str = "sqnr_db") -> Any:
        """Scatter of bits per weight vs ``metric`` ("sqnr_db" or "mse") per format, labelled;
        imports matplotlib lazily. Returns the Axes."""
        if metric not in ("sqnr_db", "mse"):
            raise ValueError(f"metric: expected 'sqnr_db' or 'mse', got {metric!r}")
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(6, 4))
        for r in self.summary():
            ax.scatter(r["bits_per_weight"], r[metric])
            ax.annotate(r["format"], (r["bits_per_weight"], r[metric]), textcoords="offset points", xytext=(4, 3),
                        fontsize=8)
        ax.set_xlabel("bits per weight (scales included)")
        ax.set_ylabel("SQNR (dB)" if metric == "sqnr_db" else "MSE")
        if metric == "mse":
            ax.set_yscale("log")
        ax.set_title("quantization error vs size")
        ax.grid(True, alpha=0.3)
        return ax

    def __repr__(self) -> str:
        return f"FormatComparison({len(self)} rows)\n{self.table()}"


def compare_formats(
    x_or_model: Any, formats: Optional[Iterable[FormatSpec]] = None, *, inputs: Any = None
) -> FormatComparison:
    """Quantizes weights with each format and measures size and error side by side.

    Args:
        x_or_model: an array / CPU torch tensor, a dict ``name -> array`` (e.g. a safetensors
            state dict), or a torch module (its ``nn.Linear`` weights are compared).
        inputs: with a torch module only: a tensor or tuple of tensors to run the model on. Each
            format's dequantized weights then replace every Linear weight in turn (restored
            afterwards) and :meth:`FormatComparison.summary` gains ``output_cosine`` (cosine
            similarity of the flattened output to the float model's) and ``output_rel_err``
            (``|y_q - y| / |y|``). The first tensor of a tuple/dict output is compared.
        formats: dtype names or dicts ``{"dtype": ..., **options}`` (options of
            :func:`lowbit.quantize`, e.g. ``{"dtype": "nf4", "double_quant": True}``); an optional
            ``"label"`` names the row. Affine integer dtypes get symmetric absmax parameters: per
            output channel (axis 0), or per group with ``group_size``. Default :data:`DEFAULT_FORMATS`.

    Returns:
        A :class:`FormatComparison`: a list of row dicts with ``summary()``, ``table()``,
        ``to_pandas()`` and ``plot()``.

    Example:
        >>> w = np.random.default_rng(0).standard_normal((64, 128)).astype(np.float32)
        >>> rows = lowbit.compare_formats(w, ["int8", "nf4", "binary"])
        >>> [r["format"] for r in rows], [round(r["bits_per_weight"], 2) for r in rows]
        (['int8', 'nf4', 'binary'], [8.5, 4.5, 1.25])
        >>> rows[0]["sqnr_db"] > rows[1]["sqnr_db"] > rows[2]["sqnr_db"]
        True
    """
    specs = [_spec(f) for f in (DEFAULT_FORMATS if formats is None else formats)]
    if not specs:
        raise ValueError("formats: empty list")
    is_model = hasattr(x_or_model, "named_modules") and not is_torch_tensor(x_or_model)
    if inputs is not None and not is_model:
        raise ValueError("inputs: only used with a torch module")
    result = FormatComparison()
    if inputs is not None:
        result.outputs = _model_outputs(x_or_model, specs, inputs)
    for name, w in _tensors(x_or_model):
        w64 = w.astype(np.float64)
        sig = float(np.nansum(w64 * w64))
        for spec in specs:
            q = _quantize_weight(w, spec)
            d = q.dequantize().astype(np.float64)
            err = np.where(np.isnan(w64), 0.0, d - w64)
            se = float(np.sum(err * err))
            n = int(w.size)
            result.append({
                "tensor": name, "format": format_label(spec), "dtype": spec["dtype"], "numel": n,
                "nbytes": int(q.nbytes), "bits_per_weight": 8.0 * q.nbytes / n if n else math.nan,
                "mse": se / n if n else math.nan, "sqnr_db": _sqnr_db(sig, se),
                "max_abs_err": float(np.max(np.abs(err))) if n else 0.0, "sse": se, "sum_sq": sig,
            })
    return result
