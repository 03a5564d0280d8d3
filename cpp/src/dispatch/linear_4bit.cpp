// Dispatch tables for the 4-bit-weight linear kernels (ISA -> kernel).
#include "dispatch/linear_4bit.hpp"

#include "dispatch/tables.hpp"
#include "kernels/linear_4bit.hpp"
#include "reference/linear_4bit.hpp"

namespace lowbit {
namespace dispatch {

LOWBIT_SIMD_TABLE(kernels::Linear4Fn, linear_f32_s4w_f32)
LOWBIT_SIMD_TABLE(kernels::Linear4Fn, linear_f32_nf4w_f32)
LOWBIT_SIMD_TABLE(kernels::Quant4RowFn, quantize_row_s8_groups)

#if defined(LOWBIT_HAVE_AVX512VNNI)
#define LOWBIT_L4_AVX512VNNI(fn) {Isa::kAvx512Vnni, kernels::avx512vnni::fn},
#else
#define LOWBIT_L4_AVX512VNNI(fn)
#endif
#if defined(LOWBIT_HAVE_AVXVNNI)
#define LOWBIT_L4_AVXVNNI(fn) {Isa::kAvxVnni, kernels::avxvnni::fn},
#else
#define LOWBIT_L4_AVXVNNI(fn)
#endif
#if defined(LOWBIT_HAVE_AMX)
#define LOWBIT_L4_AMX(fn) {Isa::kAmx, kernels::amx::fn},
#else
#define LOWBIT_L4_AMX(fn)
#endif
#define LOWBIT_L4_INT8_TABLE(fn)        \
  const OpTable<kernels::Linear4Fn> fn( \
      #fn, {{Isa::kScalar, ref::fn},    \
            LOWBIT_KERNEL_AVX2(fn) LOWBIT_L4_AVXVNNI(fn) LOWBIT_L4_AVX512VNNI(fn) LOWBIT_L4_AMX(fn)});

LOWBIT_L4_INT8_TABLE(linear_s8_s4w_f32)
LOWBIT_L4_INT8_TABLE(linear_s8_nf4w_f32)

}  // namespace dispatch
}  // namespace lowbit
