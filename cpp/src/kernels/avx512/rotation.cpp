// AVX512 blocked Walsh-Hadamard rotation: the shared xsimd source for xsimd::avx512bw.
#include "kernels/rotation.hpp"

#include "kernels/rotation_impl.hpp"

LOWBIT_DEFINE_ROTATION_KERNELS(avx512, xsimd::avx512bw)
