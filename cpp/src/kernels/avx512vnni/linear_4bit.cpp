// AVX-512 VNNI int8-activation x int4-weight linear kernel (vpdpbusd on the weight nibbles), from
// the shared source.
#include "kernels/linear_4bit.hpp"

#include "kernels/linear_4bit_impl.hpp"

LOWBIT_DEFINE_LINEAR4_INT8_KERNELS(avx512vnni, Avx512VnniInt8)
