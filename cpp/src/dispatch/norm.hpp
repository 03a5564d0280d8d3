// Dispatch table of LayerNorm (defined in dispatch/norm.cpp).
#pragma once

#include "lowbit/dispatch.hpp"
#include "lowbit/norm.hpp"

namespace lowbit {
namespace dispatch {
extern const OpTable<kernels::LayerNormF32Fn> layer_norm_f32;
}  // namespace dispatch
}  // namespace lowbit
