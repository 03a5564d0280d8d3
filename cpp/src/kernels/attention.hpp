// Kernels layer: the per-ISA entry points of the float32 attention (kernels/<isa>/attention.cpp);
// contract in lowbit/attention.hpp.
#pragma once

#include "lowbit/attention.hpp"

#define LOWBIT_DECLARE_ATTENTION_KERNELS \
  void attention_f32(const AttentionArgs& a, int64_t bh, int64_t i0, int64_t i1, float* scratch);

namespace lowbit {
namespace kernels {
namespace avx2 {
LOWBIT_DECLARE_ATTENTION_KERNELS
}
namespace avx512 {
LOWBIT_DECLARE_ATTENTION_KERNELS
}
}  // namespace kernels
}  // namespace lowbit
