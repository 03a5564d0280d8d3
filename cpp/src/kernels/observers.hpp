// Kernels layer: the per-ISA entry points of the observer reductions (kernels/<isa>/observers.cpp);
// contracts in lowbit/observers.hpp.
#pragma once

#include "lowbit/observers.hpp"

#define LOWBIT_DECLARE_OBSERVER_KERNELS                                                                             \
  int64_t minmax_f32(const float* x, int64_t n, float* mn, float* mx);                                              \
  int64_t minmax_per_channel_f32(const float* x, int64_t rows, int64_t cols, int64_t row_stride, float* mn,         \
                                 float* mx);                                                                        \
  void histogram_f32(const float* x, int64_t n, float scale, float base, int64_t bins, uint32_t* counts, float* mn, \
                     float* mx);

namespace lowbit {
namespace kernels {
namespace avx2 {
LOWBIT_DECLARE_OBSERVER_KERNELS
}
namespace avx512 {
LOWBIT_DECLARE_OBSERVER_KERNELS
}
}  // namespace kernels
}  // namespace lowbit
