// AVX2 LayerNorm kernel: the shared xsimd source for xsimd::avx2.
#include "kernels/norm.hpp"

#include "kernels/norm_impl.hpp"

LOWBIT_DEFINE_NORM_KERNELS(avx2, xsimd::avx2)
