// AVX-512 (F, BW, VL, DQ) error-statistics kernel: the shared xsimd source for xsimd::avx512bw.
#include "kernels/metrics.hpp"

#include "kernels/metrics_impl.hpp"

LOWBIT_DEFINE_METRICS_KERNELS(avx512, xsimd::avx512bw)
