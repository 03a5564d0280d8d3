// Dispatch tables for the format kernels (ISA -> kernel). convert_f32_bf16 has an avx512vnni entry
// that uses vcvtneps2bf16 when CPUID reports AVX512_BF16 (Cooper Lake, Sapphire Rapids, Zen 4).
#include "dispatch/formats.hpp"

#include "dispatch/tables.hpp"
#include "kernels/formats.hpp"
#include "reference/formats.hpp"

namespace lowbit {
namespace dispatch {
namespace {
#if defined(LOWBIT_HAVE_AVX512VNNI)
bool has_avx512_bf16() {
  const auto& f = cpu_features().flags;
  auto it = f.find("avx512_bf16");
  return it != f.end() && it->second;
}
kernels::ConvertF32Bf16Fn bf16_native_or_emulated() {
  return has_avx512_bf16() ? kernels::avx512bf16::convert_f32_bf16 : kernels::avx512::convert_f32_bf16;
}
#define LOWBIT_KERNEL_BF16_NATIVE {Isa::kAvx512Vnni, bf16_native_or_emulated()},
#else
#define LOWBIT_KERNEL_BF16_NATIVE
#endif
}  // namespace

LOWBIT_SIMD_TABLE(kernels::QuantizeNf4Fn, quantize_f32_nf4)
LOWBIT_SIMD_TABLE(kernels::DequantizeNf4Fn, dequantize_nf4_f32)
LOWBIT_SIMD_TABLE(kernels::ConvertF32F16Fn, convert_f32_f16)
LOWBIT_SIMD_TABLE(kernels::ConvertBf16F32Fn, convert_bf16_f32)
const OpTable<kernels::ConvertF32Bf16Fn> convert_f32_bf16("convert_f32_bf16",
                                                          {{Isa::kScalar, ref::convert_f32_bf16},
                                                           LOWBIT_KERNEL_AVX2(convert_f32_bf16)
                                                               LOWBIT_KERNEL_AVX512(convert_f32_bf16)
                                                                   LOWBIT_KERNEL_BF16_NATIVE});

}  // namespace dispatch
}  // namespace lowbit
