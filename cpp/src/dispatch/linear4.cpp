// Dispatch tables for the 4-bit-weight linear kernels (ISA -> kernel).
#include "dispatch/linear4.hpp"

#include "dispatch/tables.hpp"
#include "reference/linear4.hpp"

namespace lowbit {
namespace dispatch {

LOWBIT_SIMD_TABLE(kernels::Linear4Fn, linear_f32_s4w_f32)
LOWBIT_SIMD_TABLE(kernels::Linear4Fn, linear_f32_nf4w_f32)
LOWBIT_SIMD_TABLE(kernels::Quant4RowFn, quantize_row_s8_groups)

#if defined(LOWBIT_HAVE_AVX512VNNI)
#define LOWBIT_L4_AVX512VNNI {Isa::kAvx512Vnni, kernels::avx512vnni::linear_s8_s4w_f32},
#else
#define LOWBIT_L4_AVX512VNNI
#endif
const OpTable<kernels::Linear4Fn> linear_s8_s4w_f32(
    "linear_s8_s4w_f32", {{Isa::kScalar, ref::linear_s8_s4w_f32}, LOWBIT_KERNEL_AVX2(linear_s8_s4w_f32) LOWBIT_L4_AVX512VNNI});

}  // namespace dispatch
}  // namespace lowbit
