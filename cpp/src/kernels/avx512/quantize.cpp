// AVX-512 (F/BW/VL/DQ) quantize/dequantize kernels: the shared xsimd source for xsimd::avx512bw.
#include "kernels/quantize.hpp"

#include "kernels/quantize_impl.hpp"

LOWBIT_DEFINE_QUANTIZE_KERNELS(avx512, xsimd::avx512bw)
