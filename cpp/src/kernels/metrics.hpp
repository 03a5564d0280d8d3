// Kernels layer: the per-ISA entry points of the metrics reductions (kernels/<isa>/metrics.cpp);
// contract in lowbit/metrics.hpp.
#pragma once

#include "lowbit/metrics.hpp"

#define LOWBIT_DECLARE_METRICS_KERNELS void error_stats_f32(const float* x, const float* y, int64_t n, ErrorStats* acc);

namespace lowbit {
namespace kernels {
namespace avx2 {
LOWBIT_DECLARE_METRICS_KERNELS
}
namespace avx512 {
LOWBIT_DECLARE_METRICS_KERNELS
}
}  // namespace kernels
}  // namespace lowbit
