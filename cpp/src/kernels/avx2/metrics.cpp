// AVX2 (+FMA) error-statistics kernel: the shared xsimd source instantiated for xsimd::avx2.
#include "kernels/metrics.hpp"

#include "kernels/metrics_impl.hpp"

LOWBIT_DEFINE_METRICS_KERNELS(avx2, xsimd::avx2)
