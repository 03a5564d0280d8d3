// AVX-512 float-activation 4-bit-weight linear kernels (vpermps decode), from the shared source.
#include "kernels/linear4_impl.hpp"
#include "reference/linear4.hpp"

LOWBIT_DEFINE_LINEAR4_FLOAT_KERNELS(avx512, Avx512Float)
