// AVX2 (+FMA, F16C) format kernels: the shared source for xsimd::avx2.
#include "kernels/formats.hpp"

#include "kernels/formats_impl.hpp"

LOWBIT_DEFINE_FORMAT_KERNELS(avx2, xsimd::avx2)
