// Kernels layer: the per-ISA entry points of the blocked Walsh-Hadamard rotation
// (kernels/<isa>/rotation.cpp); contract in lowbit/rotation.hpp.
#pragma once

#include "lowbit/rotation.hpp"

#define LOWBIT_DECLARE_ROTATION_KERNELS                                                                              \
  void hadamard_f32(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t k, const float* signs, \
                    int64_t block);

namespace lowbit {
namespace kernels {
namespace avx2 {
LOWBIT_DECLARE_ROTATION_KERNELS
}
namespace avx512 {
LOWBIT_DECLARE_ROTATION_KERNELS
}
}  // namespace kernels
}  // namespace lowbit
