// Dispatch table for conv2d_depthwise_f32_s8w_f32 (ISA -> kernel).
#include "dispatch/conv_depthwise.hpp"

#include "dispatch/tables.hpp"
#include "reference/conv_depthwise.hpp"

namespace lowbit {
namespace dispatch {
LOWBIT_SIMD_TABLE(kernels::DwConvFn, conv2d_depthwise_f32_s8w_f32)
}  // namespace dispatch
}  // namespace lowbit
