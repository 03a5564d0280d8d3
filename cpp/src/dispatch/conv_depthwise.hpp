// Dispatch table of the depthwise convolution kernel (defined in dispatch/conv_depthwise.cpp).
#pragma once

#include "kernels/conv_depthwise.hpp"
#include "lowbit/dispatch.hpp"

namespace lowbit {
namespace dispatch {
extern const OpTable<kernels::DwConvFn> conv2d_depthwise_f32_s8w_f32;
extern const OpTable<kernels::DwConvFn> conv2d_depthwise_u8_s8w_u8;
}  // namespace dispatch
}  // namespace lowbit
