// AVX2 (+FMA) float32 x 4-bit-weight GEMV kernels: the shared source for xsimd::avx2.
#include "kernels/linear4_impl.hpp"
#include "reference/linear4.hpp"

LOWBIT_DEFINE_LINEAR4_KERNELS(avx2, xsimd::avx2)
