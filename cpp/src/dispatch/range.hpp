// Dispatch table of the finite-range kernel (defined in dispatch/range.cpp).
#pragma once

#include "kernels/range.hpp"
#include "lowbit/dispatch.hpp"

namespace lowbit {
namespace dispatch {
extern const OpTable<kernels::FiniteRangeFn> finite_range_f32;
}
}  // namespace lowbit
