// Kernels layer: the per-ISA entry points of the format kernels (kernels/<isa>/formats.cpp, and
// vcvtneps2bf16 in kernels/avx512vnni/formats_bf16.cpp); contracts in lowbit/formats.hpp.
#pragma once

#include "lowbit/formats.hpp"

#define LOWBIT_DECLARE_FORMAT_KERNELS                                                                   \
  void quantize_f32_nf4(const float* x, int64_t n, int64_t block, float* absmax, uint8_t* q);           \
  void dequantize_nf4_f32(const uint8_t* q, int64_t n, int64_t block, const float* absmax, float* out); \
  void convert_f32_f16(const float* x, int64_t n, uint16_t* out);                                       \
  void convert_f32_bf16(const float* x, int64_t n, uint16_t* out);                                      \
  void convert_bf16_f32(const uint16_t* x, int64_t n, float* out);

namespace lowbit {
namespace kernels {
namespace avx2 {
LOWBIT_DECLARE_FORMAT_KERNELS
}
namespace avx512 {
LOWBIT_DECLARE_FORMAT_KERNELS
}
namespace avx512bf16 {
// vcvtneps2bf16 (AVX-512 BF16), built in the avx512vnni unit; only called when CPUID has BF16.
void convert_f32_bf16(const float* x, int64_t n, uint16_t* out);
}  // namespace avx512bf16
}  // namespace kernels
}  // namespace lowbit
