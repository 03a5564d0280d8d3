// Dispatch tables for the quantize/dequantize row kernels (ISA -> kernel).
#include "dispatch/quantize.hpp"

#include "dispatch/tables.hpp"
#include "kernels/quantize.hpp"
#include "reference/quantize.hpp"

namespace lowbit {
namespace dispatch {

LOWBIT_SIMD_TABLE(kernels::QuantizeS8Fn, quantize_f32_s8)
LOWBIT_SIMD_TABLE(kernels::QuantizeU8Fn, quantize_f32_u8)
LOWBIT_SIMD_TABLE(kernels::DequantizeS8Fn, dequantize_s8_f32)
LOWBIT_SIMD_TABLE(kernels::DequantizeU8Fn, dequantize_u8_f32)
LOWBIT_SIMD_TABLE(kernels::FakeQuantizeFn, fake_quantize_f32_f32)
LOWBIT_SIMD_TABLE(kernels::ConvertF16F32Fn, convert_f16_f32)
LOWBIT_SIMD_TABLE(kernels::PackS4Fn, pack_s8_s4)
LOWBIT_SIMD_TABLE(kernels::UnpackS4Fn, unpack_s4_s8)
LOWBIT_SIMD_TABLE(kernels::UnpackS4Fn, unpack_u4_s8)

}  // namespace dispatch
}  // namespace lowbit
