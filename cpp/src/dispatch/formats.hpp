// Dispatch tables of the format kernels (defined in dispatch/formats.cpp).
#pragma once

#include "lowbit/dispatch.hpp"
#include "lowbit/formats.hpp"

namespace lowbit {
namespace dispatch {
extern const OpTable<kernels::QuantizeNf4Fn> quantize_f32_nf4;
extern const OpTable<kernels::DequantizeNf4Fn> dequantize_nf4_f32;
extern const OpTable<kernels::ConvertF32F16Fn> convert_f32_f16;
extern const OpTable<kernels::ConvertF32Bf16Fn> convert_f32_bf16;
extern const OpTable<kernels::ConvertBf16F32Fn> convert_bf16_f32;
}  // namespace dispatch
}  // namespace lowbit
