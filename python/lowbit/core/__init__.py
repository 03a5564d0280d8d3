"""The NumPy core: quantize/dequantize, formats, weight and activation schemes, packed weights and
the int8 / 4-bit linear kernels' Python side, observers, calibration, metrics, the NumPy
reference. Never imports torch.
"""
