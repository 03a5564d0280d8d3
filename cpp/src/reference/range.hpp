// Reference layer: the scalar finite-range kernel (lowbit::ref) and its element step: min(0,
// finite x) and max(0, finite x) of a row, for dynamic activation quantization; NaN, +-inf skipped.
#pragma once

#include <cstdint>

namespace lowbit {
namespace ref {
void finite_range_f32(const float* x, int64_t n, float* lo, float* hi);
}

namespace detail {
// One element: non-finite values count as 0 (x - x is 0 exactly when x is finite).
inline void finite_range_one(float v, float* lo, float* hi) {
  v = (v - v) == 0.0f ? v : 0.0f;
  *lo = v < *lo ? v : *lo;
  *hi = v > *hi ? v : *hi;
}
}  // namespace detail
}  // namespace lowbit
