"""PyTorch interop: the lowbit:: torch ops (_torch_ops), whole-model transforms (convert:
quantize_model, prepare_qat, convert, summary) and files (serialization: save, load). Imports torch;
the torch modules themselves live in lowbit.nn.
"""
