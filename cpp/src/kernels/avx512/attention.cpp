// AVX512 float32 attention kernel: the shared xsimd source for xsimd::avx512bw.
#include "kernels/attention.hpp"

#include "kernels/attention_impl.hpp"

LOWBIT_DEFINE_ATTENTION_KERNELS(avx512, xsimd::avx512bw)
