// Reference layer: the scalar reduction kernels (lowbit::ref) and the element helpers that the
// reference uses everywhere and the SIMD kernels (kernels/observers.hpp) use for tails.
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
  // x * scale is exact unless it underflows; then only its sign matters, and a negative product
  // that rounded to -0 must still floor to -1.
  float y = x * scale;
  if (x < 0.0f) y -= 1e-45f;
  float f = std::floor(y) - base;
  f = f < 0.0f ? 0.0f : f;
  const float top = static_cast<float>(bins - 1);
  f = f > top ? top : f;
  return static_cast<int64_t>(f);
}

}  // namespace detail
}  // namespace lowbit

namespace lowbit {
namespace ref {
int64_t minmax_f32(const float* x, int64_t n, float* mn, float* mx);
int64_t minmax_per_channel_f32(const float* x, int64_t rows, int64_t cols, int64_t row_stride, float* mn, float* mx);
void histogram_f32(const float* x, int64_t n, float scale, float base, int64_t bins, uint32_t* counts, float* mn,
                   float* mx);
}  // namespace ref
}  // namespace lowbit
