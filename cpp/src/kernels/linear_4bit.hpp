// Kernels layer: the per-ISA 4-bit-weight linear kernels (kernels/<isa>/linear_4bit.cpp) and the
// test-only twins; contracts in lowbit/linear_4bit.hpp.
#pragma once

#include <cstdint>

#include "lowbit/linear_4bit.hpp"

#define LOWBIT_DECLARE_LINEAR4_FLOAT_KERNELS                                                                   \
  void linear_f32_s4w_f32(const Linear4Args& a, int64_t p0, int64_t p1);                                       \
  void linear_f32_nf4w_f32(const Linear4Args& a, int64_t p0, int64_t p1);                                      \
  void quantize_row_s8_groups(const float* x, int64_t k, int64_t kp, int64_t group, int8_t* xq, float* xscale, \
                              int32_t* xsum8);
#define LOWBIT_DECLARE_LINEAR4_INT8_KERNELS                             \
  void linear_s8_s4w_f32(const Linear4Args& a, int64_t p0, int64_t p1); \
  void linear_s8_nf4w_f32(const Linear4Args& a, int64_t p0, int64_t p1);

namespace lowbit {
namespace kernels {
namespace avx2 {
LOWBIT_DECLARE_LINEAR4_FLOAT_KERNELS
LOWBIT_DECLARE_LINEAR4_INT8_KERNELS
}  // namespace avx2
namespace avx512 {
LOWBIT_DECLARE_LINEAR4_FLOAT_KERNELS
}
namespace avxvnni {
LOWBIT_DECLARE_LINEAR4_INT8_KERNELS
}
namespace amx {
LOWBIT_DECLARE_LINEAR4_INT8_KERNELS
}
namespace avx512vnni {
LOWBIT_DECLARE_LINEAR4_INT8_KERNELS
// Test-only EVEX twins of the AVX-VNNI kernels.
void linear_s8_s4w_f32_avxvnni_twin(const Linear4Args& a, int64_t p0, int64_t p1);
void linear_s8_nf4w_f32_avxvnni_twin(const Linear4Args& a, int64_t p0, int64_t p1);
// Test-only twins of the AMX kernels on emulated tiles.
void linear_s8_s4w_f32_amx_twin(const Linear4Args& a, int64_t p0, int64_t p1);
void linear_s8_nf4w_f32_amx_twin(const Linear4Args& a, int64_t p0, int64_t p1);
}  // namespace avx512vnni
}  // namespace kernels
}  // namespace lowbit
