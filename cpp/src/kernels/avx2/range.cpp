// AVX2 finite-range kernel (dynamic activation quantization): the shared xsimd source.
#include "kernels/range_impl.hpp"

LOWBIT_DEFINE_RANGE_KERNELS(avx2, xsimd::avx2)
