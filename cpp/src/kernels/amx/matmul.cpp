// AMX int8 GEMM task (tdpbusd), the source in kernels/matmul_amx_impl.hpp with real tiles.
//
// Tested on AMX hardware where the test machine has it, and everywhere through a scalar tile
// emulation of the same source (_core._matmul_amx_twin). As a guard against a broken tile state
// (PERF.md: GCC 12 could drop the configuration stores), the first call in the process checks this
// kernel against the scalar reference on a fixed problem and routes every call to the AVX-512 VNNI
// kernel if they differ.
#include "reference/matmul.hpp"

#include <vector>

#include "kernels/amx/amx_tiles.hpp"
#include "kernels/matmul_amx_impl.hpp"

namespace lowbit {
namespace kernels {
namespace amx {
namespace {

// 1: AMX agrees with the reference on a fixed problem, 0: it does not (use AVX-512 VNNI).
bool self_check() {
  const int64_t m = 40, k = 200, n = 40;
  const int64_t kg = k_groups(k), lda = packed_act_stride(k), panels = n_panels(n);
  std::vector<uint8_t> a(static_cast<size_t>(m * lda), 0);
  std::vector<int8_t> packed(static_cast<size_t>(packed_weight_bytes(k, n)), 0);
  std::vector<int32_t> colsum(static_cast<size_t>(panels * kPanelCols), 0), row_offset(static_cast<size_t>(m), 128);
  uint32_t x = 12345;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t t = 0; t < k; ++t) a[i * lda + t] = static_cast<uint8_t>((x = x * 1664525u + 1013904223u) >> 24);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t t = 0; t < k; ++t) {
      const int8_t v = static_cast<int8_t>((x = x * 1664525u + 1013904223u) >> 24);
      packed[((j / kPanelCols) * kg + t / 4) * kPanelCols * kKGroup + (j % kPanelCols) * kKGroup + (t & 3)] = v;
      colsum[j] += v;
    }
  std::vector<int32_t> got(static_cast<size_t>(m * n)), want(static_cast<size_t>(m * n));
  GemmArgs g;
  g.a = a.data();
  g.lda = lda;
  g.m = m;
  g.k_groups = kg;
  g.b = packed.data();
  g.n = n;
  g.row_offset = row_offset.data();
  g.colsum = colsum.data();
  g.ldo = n;
  g.out = got.data();
  amx_task<AmxTiles>(g, 0, m, 0, panels);
  g.out = want.data();
  ref::gemm_u8s8_task(g, 0, m, 0, panels);
  return got == want;
}

}  // namespace

void gemm_u8s8_task(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  static const bool ok = self_check();
  if (ok)
    amx_task<AmxTiles>(g, m0, m1, p0, p1);
  else
    avx512vnni::gemm_u8s8_task(g, m0, m1, p0, p1);
}

}  // namespace amx
}  // namespace kernels
}  // namespace lowbit
