// AVX2 int8 GEMM task (exact: int16 widening + vpmaddwd, no saturating vpmaddubsw).
#include "kernels/matmul_avx2_impl.hpp"

namespace lowbit {
namespace kernels {
namespace avx2 {
void gemm_u8s8_task(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  gemm256_task(g, m0, m1, p0, p1);
}
}  // namespace avx2
}  // namespace kernels
}  // namespace lowbit
