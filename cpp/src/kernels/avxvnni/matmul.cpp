// AVX-VNNI int8 GEMM task (VEX vpdpbusd on ymm). Builds everywhere; runs only on CPUs with
// AVX-VNNI (not on the AMD Zen 4 development machine, so it is tested only where available).
#define LOWBIT_GEMM256_VNNI 1
#include "kernels/matmul_avx2_impl.hpp"

namespace lowbit {
namespace kernels {
namespace avxvnni {
void gemm_u8s8_task(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  gemm256_task(g, m0, m1, p0, p1);
}
}  // namespace avxvnni
}  // namespace kernels
}  // namespace lowbit
