// Kernels layer: the per-ISA int8 GEMM task kernels (kernels/<isa>/matmul.cpp) and the test-only
// twins; each is a kernels::GemmTaskFn with the contract of lowbit/matmul.hpp.
#pragma once

#include <cstdint>

#include "lowbit/matmul.hpp"

#define LOWBIT_DECLARE_MATMUL_KERNELS \
  void gemm_u8s8_task(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1);

namespace lowbit {
namespace kernels {
namespace avx2 {
LOWBIT_DECLARE_MATMUL_KERNELS
}
namespace avxvnni {
LOWBIT_DECLARE_MATMUL_KERNELS
}
namespace avx512vnni {
LOWBIT_DECLARE_MATMUL_KERNELS
// The AVX-VNNI task built with EVEX instructions (kernels/avx512vnni/matmul_ymm.cpp): tests only.
void gemm_u8s8_task_avxvnni_twin(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1);
// The AMX task with emulated tiles (kernels/avx512vnni/matmul_amx_twin.cpp): tests only.
void gemm_u8s8_task_amx_twin(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1);
}  // namespace avx512vnni
namespace amx {  // self-checks at first use (kernels/amx/matmul.cpp)
LOWBIT_DECLARE_MATMUL_KERNELS
}
}  // namespace kernels
}  // namespace lowbit
