// AVX-VNNI int8-activation x 4-bit-weight linear kernels (VEX vpdpbusd on ymm), from the shared
// source. Builds everywhere; runs only on CPUs with AVX-VNNI (not on the Zen 4 development machine:
// its EVEX twin, kernels/avx512vnni/linear_4bit_avxvnni_twin.cpp, is what the tests run there).
#include "kernels/linear_4bit.hpp"

#include "kernels/linear_4bit_impl.hpp"

LOWBIT_DEFINE_LINEAR4_INT8_KERNELS(avxvnni, AvxVnniInt8)
