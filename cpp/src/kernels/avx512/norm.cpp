// AVX512 LayerNorm kernel: the shared xsimd source for xsimd::avx512bw.
#include "kernels/norm.hpp"

#include "kernels/norm_impl.hpp"

LOWBIT_DEFINE_NORM_KERNELS(avx512, xsimd::avx512bw)
