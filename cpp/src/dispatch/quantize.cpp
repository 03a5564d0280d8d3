// Dispatch tables for the quantize/dequantize row kernels (ISA -> kernel).
#include "dispatch/quantize.hpp"

#include "reference/quantize.hpp"

namespace lowbit {
namespace dispatch {

#if defined(LOWBIT_HAVE_AVX2)
#define LOWBIT_AVX2(fn) {Isa::kAvx2, kernels::avx2::fn},
#else
#define LOWBIT_AVX2(fn)
#endif
#if defined(LOWBIT_HAVE_AVX512)
#define LOWBIT_AVX512(fn) {Isa::kAvx512, kernels::avx512::fn},
#else
#define LOWBIT_AVX512(fn)
#endif
#define LOWBIT_TABLE(type, fn) \
  const OpTable<type> fn(#fn, {{Isa::kScalar, ref::fn}, LOWBIT_AVX2(fn) LOWBIT_AVX512(fn)});

LOWBIT_TABLE(kernels::QuantizeS8Fn, quantize_f32_s8)
LOWBIT_TABLE(kernels::QuantizeU8Fn, quantize_f32_u8)
LOWBIT_TABLE(kernels::DequantizeS8Fn, dequantize_s8_f32)
LOWBIT_TABLE(kernels::DequantizeU8Fn, dequantize_u8_f32)
LOWBIT_TABLE(kernels::FakeQuantizeFn, fake_quantize_f32_f32)
LOWBIT_TABLE(kernels::ConvertF16F32Fn, convert_f16_f32)
LOWBIT_TABLE(kernels::PackS4Fn, pack_s8_s4)
LOWBIT_TABLE(kernels::UnpackS4Fn, unpack_s4_s8)
LOWBIT_TABLE(kernels::UnpackS4Fn, unpack_u4_s8)

}  // namespace dispatch
}  // namespace lowbit
