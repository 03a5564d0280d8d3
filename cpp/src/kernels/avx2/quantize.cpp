// AVX2 (+FMA, F16C) quantize/dequantize kernels: the shared xsimd source instantiated for xsimd::avx2.
#include "kernels/quantize.hpp"

#include "kernels/quantize_impl.hpp"

LOWBIT_DEFINE_QUANTIZE_KERNELS(avx2, xsimd::avx2)
