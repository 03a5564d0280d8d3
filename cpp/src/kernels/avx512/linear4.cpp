// AVX-512 float32 x 4-bit-weight GEMV kernels: the shared source for xsimd::avx512bw.
#include "kernels/linear4_impl.hpp"
#include "reference/linear4.hpp"

LOWBIT_DEFINE_LINEAR4_KERNELS(avx512, xsimd::avx512bw)
