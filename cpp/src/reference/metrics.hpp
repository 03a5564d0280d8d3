// Reference layer: the scalar error-statistics kernel (lowbit::ref) and its element step, which
// the reference uses everywhere and the SIMD kernels (kernels/metrics.hpp) use for tails.
#pragma once

#include <cmath>
#include <cstdint>

#include "lowbit/metrics.hpp"

namespace lowbit {
namespace detail {

// One element of the error statistics; differences are taken in double (exact for most pairs).
inline void error_stats_step(float xf, float yf, ErrorStats* acc) {
  const double x = xf, y = yf;
  const double d = x - y;
  acc->sum_sq_diff += d * d;
  acc->sum_sq_x += x * x;
  acc->sum_sq_y += y * y;
  acc->dot_xy += x * y;
  const double a = std::fabs(d);
  acc->max_abs_diff = a > acc->max_abs_diff ? a : acc->max_abs_diff;  // NaN ignored (the op handles it)
}

}  // namespace detail
}  // namespace lowbit

namespace lowbit {
namespace ref {
void error_stats_f32(const float* x, const float* y, int64_t n, ErrorStats* acc);
}
}  // namespace lowbit
