// Dispatch tables of the observer reductions (defined in dispatch/observers.cpp).
#pragma once

#include "lowbit/dispatch.hpp"
#include "lowbit/observers.hpp"

namespace lowbit {
namespace dispatch {
extern const OpTable<kernels::MinMaxF32Fn> minmax_f32;
extern const OpTable<kernels::MinMaxPerChannelF32Fn> minmax_per_channel_f32;
extern const OpTable<kernels::HistogramF32Fn> histogram_f32;
}  // namespace dispatch
}  // namespace lowbit
