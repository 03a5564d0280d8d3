// Reference int8 GEMM (lowbit::ref): the plain triple loop that defines matmul_s8s8_s32 /
// matmul_u8s8_s32, and the scalar task over packed data that the scalar ISA dispatches to.
#include "reference/matmul.hpp"

namespace lowbit {
namespace ref {
namespace {

template <class A>
void matmul_any(const A* a, int64_t m, int64_t k, int64_t sam, int64_t sak, const int8_t* b, int64_t n, int64_t sbk,
                int64_t sbn, int32_t* c) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      uint32_t acc = 0;  // unsigned: wrap-around is defined behaviour
      for (int64_t t = 0; t < k; ++t)
        acc += static_cast<uint32_t>(static_cast<int32_t>(a[i * sam + t * sak]) *
                                     static_cast<int32_t>(b[t * sbk + j * sbn]));
      c[i * n + j] = static_cast<int32_t>(acc);
    }
  }
}

}  // namespace

void matmul_s8s8_s32(const int8_t* a, int64_t m, int64_t k, int64_t sam, int64_t sak, const int8_t* b, int64_t n,
                     int64_t sbk, int64_t sbn, int32_t* c) {
  matmul_any(a, m, k, sam, sak, b, n, sbk, sbn, c);
}

void matmul_u8s8_s32(const uint8_t* a, int64_t m, int64_t k, int64_t sam, int64_t sak, const int8_t* b, int64_t n,
                     int64_t sbk, int64_t sbn, int32_t* c) {
  matmul_any(a, m, k, sam, sak, b, n, sbk, sbn, c);
}

void gemm_u8s8_task(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const int64_t kp = g.k_groups * kKGroup;
  for (int64_t p = p0; p < p1; ++p) {
    const int8_t* panel = g.b + p * g.k_groups * kPanelCols * kKGroup;
    const int64_t jn = std::min<int64_t>(kPanelCols, g.n - p * kPanelCols);
    for (int64_t i = m0; i < m1; ++i) {
      const uint8_t* ar = g.a + i * g.lda;
      for (int64_t j = 0; j < jn; ++j) {
        uint32_t acc = 0;
        for (int64_t t = 0; t < kp; ++t)
          acc += static_cast<uint32_t>(static_cast<int32_t>(ar[t]) *
                                       static_cast<int32_t>(panel[((t / 4) * kPanelCols + j) * 4 + (t & 3)]));
        detail::epilogue_one(g, i, p * kPanelCols + j, static_cast<int32_t>(acc));
      }
    }
  }
}

}  // namespace ref
}  // namespace lowbit
