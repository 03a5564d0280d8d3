// Reference (scalar) error-statistics kernel behind lowbit.metrics: the C++ spec the ISA kernels
// match to double rounding (they sum in a different order). Baseline flags only.
#include "reference/metrics.hpp"

namespace lowbit {
namespace ref {

void error_stats_f32(const float* x, const float* y, int64_t n, ErrorStats* acc) {
  for (int64_t i = 0; i < n; ++i) detail::error_stats_step(x[i], y[i], acc);
}

}  // namespace ref
}  // namespace lowbit
