// Dispatch table of the metrics reductions (defined in dispatch/metrics.cpp).
#pragma once

#include "lowbit/dispatch.hpp"
#include "lowbit/metrics.hpp"

namespace lowbit {
namespace dispatch {
extern const OpTable<kernels::ErrorStatsF32Fn> error_stats_f32;
}  // namespace dispatch
}  // namespace lowbit
