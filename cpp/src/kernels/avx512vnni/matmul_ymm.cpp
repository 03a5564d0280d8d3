// Test-only twin of the AVX-VNNI GEMM task: the same source (kernels/matmul_avx2_impl.hpp) with
// the EVEX-encoded 256-bit vpdpbusd, so the AVX-VNNI tiling and epilogue are checked on machines
// with AVX-512 VNNI but without AVX-VNNI (reached only through _core._matmul_avxvnni_twin).
#define LOWBIT_GEMM256_VNNI 1
#define LOWBIT_GEMM256_EVEX 1
#include "kernels/matmul_avx2_impl.hpp"

namespace lowbit {
namespace kernels {
namespace avx512vnni {
void gemm_u8s8_task_avxvnni_twin(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  gemm256_task(g, m0, m1, p0, p1);
}
}  // namespace avx512vnni
}  // namespace kernels
}  // namespace lowbit
