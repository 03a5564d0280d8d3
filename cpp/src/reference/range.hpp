// Declarations of the finite-range kernels (lowbit::ref and each ISA): min(0, finite x) and
// max(0, finite x) of a row, for dynamic activation quantization. NaN and +-inf are skipped.
#pragma once

#include <cstdint>

#define LOWBIT_DECLARE_RANGE_KERNELS void finite_range_f32(const float* x, int64_t n, float* lo, float* hi);

namespace lowbit {
namespace kernels {
using FiniteRangeFn = void (*)(const float* x, int64_t n, float* lo, float* hi);
}
namespace ref {
LOWBIT_DECLARE_RANGE_KERNELS
}
namespace kernels {
namespace avx2 {
LOWBIT_DECLARE_RANGE_KERNELS
}
namespace avx512 {
LOWBIT_DECLARE_RANGE_KERNELS
}
}  // namespace kernels

namespace detail {
// One element: non-finite values count as 0 (x - x is 0 exactly when x is finite).
inline void finite_range_one(float v, float* lo, float* hi) {
  v = (v - v) == 0.0f ? v : 0.0f;
  *lo = v < *lo ? v : *lo;
  *hi = v > *hi ? v : *hi;
}
}  // namespace detail
}  // namespace lowbit
