// Dispatch table of the float32 attention (defined in dispatch/attention.cpp).
#pragma once

#include "lowbit/attention.hpp"
#include "lowbit/dispatch.hpp"

namespace lowbit {
namespace dispatch {
extern const OpTable<kernels::AttentionF32Fn> attention_f32;
}  // namespace dispatch
}  // namespace lowbit
