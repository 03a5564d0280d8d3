// AVX-512 float-activation 4-bit-weight linear kernels (vpermps decode), from the shared source.
#include "kernels/linear_4bit.hpp"

#include "kernels/linear_4bit_impl.hpp"

LOWBIT_DEFINE_LINEAR4_FLOAT_KERNELS(avx512, Avx512Float)
