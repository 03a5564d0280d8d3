// AVX2 (+FMA) 4-bit-weight linear kernels: float activations (permute decode) and int8
// activations (vpmaddubsw), from the shared source.
#include "kernels/linear_4bit.hpp"

#include "kernels/linear_4bit_impl.hpp"

LOWBIT_DEFINE_LINEAR4_FLOAT_KERNELS(avx2, Avx2Float)
LOWBIT_DEFINE_LINEAR4_INT8_KERNELS(avx2, Avx2Int8)
