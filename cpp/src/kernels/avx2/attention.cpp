// AVX2 float32 attention kernel: the shared xsimd source for xsimd::avx2.
#include "kernels/attention.hpp"

#include "kernels/attention_impl.hpp"

LOWBIT_DEFINE_ATTENTION_KERNELS(avx2, xsimd::avx2)
