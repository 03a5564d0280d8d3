// Declarations of the reference error-statistics kernel (lowbit::ref) and of each ISA's kernel,
// plus the scalar element step the reference uses everywhere and the SIMD kernels use for tails.
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

#define LOWBIT_DECLARE_METRICS_KERNELS \
  void error_stats_f32(const float* x, const float* y, int64_t n, ErrorStats* acc);

namespace lowbit {
namespace ref {
LOWBIT_DECLARE_METRICS_KERNELS
}
namespace kernels {
namespace avx2 {
LOWBIT_DECLARE_METRICS_KERNELS
}
namespace avx512 {
LOWBIT_DECLARE_METRICS_KERNELS
}
}  // namespace kernels
}  // namespace lowbit
