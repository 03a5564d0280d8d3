// AVX-512 (F/BW/VL/DQ) format kernels: the shared source for xsimd::avx512bw.
#include "kernels/formats.hpp"

#include "kernels/formats_impl.hpp"

LOWBIT_DEFINE_FORMAT_KERNELS(avx512, xsimd::avx512bw)
