// AVX2 blocked Walsh-Hadamard rotation: the shared xsimd source for xsimd::avx2.
#include "kernels/rotation.hpp"

#include "kernels/rotation_impl.hpp"

LOWBIT_DEFINE_ROTATION_KERNELS(avx2, xsimd::avx2)
