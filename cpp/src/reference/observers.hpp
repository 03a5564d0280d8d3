// Declarations of the reference reduction kernels (lowbit::ref) and of each ISA's kernels, plus the
// scalar element helpers that the reference uses everywhere and the SIMD kernels use for tails.
#pragma once

#include <cmath>
#include <cstdint>

#include "lowbit/observers.hpp"

namespace lowbit {
namespace detail {

inline bool finite_f32(float x) { return std::fabs(x) < INFINITY; }  // false for NaN and +-inf

// Histogram slot of x: its bin, `bins` (the non-finite slot) for NaN / +-inf, `bins + 1` for +-0.
inline int64_t histogram_slot(float x, float scale, float base, int64_t bins) {
  if (!finite_f32(x)) return bins;
  if (x == 0.0f) return bins + 1;
  float f = std::floor(x * scale) - base;
  f = f < 0.0f ? 0.0f : f;
  const float top = static_cast<float>(bins - 1);
  f = f > top ? top : f;
  return static_cast<int64_t>(f);
}

}  // namespace detail
}  // namespace lowbit

#define LOWBIT_DECLARE_OBSERVER_KERNELS                                                                     \
  int64_t minmax_f32(const float* x, int64_t n, float* mn, float* mx);                                      \
  int64_t minmax_per_channel_f32(const float* x, int64_t rows, int64_t cols, int64_t row_stride, float* mn, \
                                 float* mx);                                                                \
  void histogram_f32(const float* x, int64_t n, float scale, float base, int64_t bins, int64_t* counts);

namespace lowbit {
namespace ref {
LOWBIT_DECLARE_OBSERVER_KERNELS
}
namespace kernels {
namespace avx2 {
LOWBIT_DECLARE_OBSERVER_KERNELS
}
namespace avx512 {
LOWBIT_DECLARE_OBSERVER_KERNELS
}
}  // namespace kernels
}  // namespace lowbit
