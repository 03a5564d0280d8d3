// Declarations of the reference 4-bit-weight linear kernels (lowbit::ref) and of each ISA's.
#pragma once

#include "lowbit/linear4.hpp"

#define LOWBIT_DECLARE_LINEAR4_KERNELS                                   \
  void linear_f32_s4w_f32(const Linear4Args& a, int64_t n0, int64_t n1); \
  void linear_f32_nf4w_f32(const Linear4Args& a, int64_t n0, int64_t n1);

namespace lowbit {
namespace ref {
LOWBIT_DECLARE_LINEAR4_KERNELS
}
namespace kernels {
namespace avx2 {
LOWBIT_DECLARE_LINEAR4_KERNELS
}
namespace avx512 {
LOWBIT_DECLARE_LINEAR4_KERNELS
}
}  // namespace kernels
}  // namespace lowbit
