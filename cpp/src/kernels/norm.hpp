// Kernels layer: the per-ISA entry points of LayerNorm (kernels/<isa>/norm.cpp); contract in
// lowbit/norm.hpp.
#pragma once

#include "lowbit/norm.hpp"

#define LOWBIT_DECLARE_NORM_KERNELS                                                                                    \
  void layer_norm_f32(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t n, const float* gamma, \
                      const float* beta, float eps);

namespace lowbit {
namespace kernels {
namespace avx2 {
LOWBIT_DECLARE_NORM_KERNELS
}
namespace avx512 {
LOWBIT_DECLARE_NORM_KERNELS
}
}  // namespace kernels
}  // namespace lowbit
