// Dispatch tables for the int8 GEMM task kernels (ISA -> kernel).
#include "dispatch/matmul.hpp"

#include "kernels/matmul.hpp"
#include "reference/matmul.hpp"

namespace lowbit {
namespace dispatch {

#if defined(LOWBIT_HAVE_AVX2)
#define LOWBIT_MM_AVX2 {Isa::kAvx2, kernels::avx2::gemm_u8s8_task},
#else
#define LOWBIT_MM_AVX2
#endif
#if defined(LOWBIT_HAVE_AVXVNNI)
#define LOWBIT_MM_AVXVNNI {Isa::kAvxVnni, kernels::avxvnni::gemm_u8s8_task},
#else
#define LOWBIT_MM_AVXVNNI
#endif
#if defined(LOWBIT_HAVE_AVX512VNNI)
#define LOWBIT_MM_AVX512VNNI {Isa::kAvx512Vnni, kernels::avx512vnni::gemm_u8s8_task},
#else
#define LOWBIT_MM_AVX512VNNI
#endif
#if defined(LOWBIT_HAVE_AMX)
#define LOWBIT_MM_AMX {Isa::kAmx, kernels::amx::gemm_u8s8_task},
#else
#define LOWBIT_MM_AMX
#endif
#define LOWBIT_MM_TABLE(name)              \
  const OpTable<kernels::GemmTaskFn> name( \
      #name,                               \
      {{Isa::kScalar, ref::gemm_u8s8_task}, LOWBIT_MM_AVX2 LOWBIT_MM_AVXVNNI LOWBIT_MM_AVX512VNNI LOWBIT_MM_AMX});

LOWBIT_MM_TABLE(matmul_s8s8_s32)
LOWBIT_MM_TABLE(matmul_u8s8_s32)
LOWBIT_MM_TABLE(linear_f32_s8w_f32)
LOWBIT_MM_TABLE(linear_f32_s8w_s8)

}  // namespace dispatch
}  // namespace lowbit
