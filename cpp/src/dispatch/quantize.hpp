// Dispatch tables of the quantize family (defined in dispatch/quantize.cpp).
#pragma once

#include "lowbit/dispatch.hpp"
#include "lowbit/quantize.hpp"

namespace lowbit {
namespace dispatch {
extern const OpTable<kernels::QuantizeS8Fn> quantize_f32_s8;
extern const OpTable<kernels::QuantizeU8Fn> quantize_f32_u8;
extern const OpTable<kernels::DequantizeS8Fn> dequantize_s8_f32;
extern const OpTable<kernels::DequantizeU8Fn> dequantize_u8_f32;
extern const OpTable<kernels::FakeQuantizeFn> fake_quantize_f32_f32;
extern const OpTable<kernels::ConvertF16F32Fn> convert_f16_f32;
extern const OpTable<kernels::PackS4Fn> pack_s8_s4;
extern const OpTable<kernels::UnpackS4Fn> unpack_s4_s8;
extern const OpTable<kernels::UnpackS4Fn> unpack_u4_s8;
}  // namespace dispatch
}  // namespace lowbit
