// AVX-512 VNNI int8 GEMM task (vpdpbusd on zmm): 8 rows x 3 panels (48 columns) register tile,
// 24 named accumulators, epilogue fused per register tile. Compiled with AVX-512 VNNI flags only.
#include "kernels/matmul.hpp"

#include <immintrin.h>

#include <cstring>

#include "kernels/matmul_epilogue.hpp"

namespace lowbit {
namespace kernels {
namespace avx512vnni {
namespace {

constexpr int64_t kPanelBytes = kPanelCols * kKGroup;  // one k group of one panel = one zmm

inline __m512i bcast_a(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// MR rows (<= 8) x NP panels (<= 3). Unused accumulators are dead code for the compiler.
template <int MR, int NP>
void micro(const GemmArgs& g, int64_t i0, int64_t p0) {
  const int64_t ps = g.k_groups * kPanelBytes;
  const int8_t* b = g.b + p0 * ps;
  const uint8_t* a = g.a + i0 * g.lda;
  const int64_t lda = g.lda;
  const __m512i z = _mm512_setzero_si512();
  __m512i c00 = z, c01 = z, c02 = z, c10 = z, c11 = z, c12 = z, c20 = z, c21 = z, c22 = z, c30 = z, c31 = z, c32 = z;
  __m512i c40 = z, c41 = z, c42 = z, c50 = z, c51 = z, c52 = z, c60 = z, c61 = z, c62 = z, c70 = z, c71 = z, c72 = z;
  const int64_t kg = g.k_groups;
  for (int64_t t = 0; t < kg; ++t) {
    const __m512i b0 = _mm512_loadu_si512(b + t * kPanelBytes);
    const __m512i b1 = NP > 1 ? _mm512_loadu_si512(b + ps + t * kPanelBytes) : z;
    const __m512i b2 = NP > 2 ? _mm512_loadu_si512(b + 2 * ps + t * kPanelBytes) : z;
#define LOWBIT_ROW(r)                                           \
  if (MR > r) {                                                 \
    const __m512i av = bcast_a(a + r * lda + t * 4);            \
    c##r##0 = _mm512_dpbusd_epi32(c##r##0, av, b0);             \
    if (NP > 1) c##r##1 = _mm512_dpbusd_epi32(c##r##1, av, b1); \
    if (NP > 2) c##r##2 = _mm512_dpbusd_epi32(c##r##2, av, b2); \
  }
    LOWBIT_ROW(0)
    LOWBIT_ROW(1)
    LOWBIT_ROW(2)
    LOWBIT_ROW(3)
    LOWBIT_ROW(4)
    LOWBIT_ROW(5)
    LOWBIT_ROW(6)
    LOWBIT_ROW(7)
#undef LOWBIT_ROW
  }
  // The epilogue runs from a stored tile: calling it on live accumulators makes GCC 12 spill
  // them inside the k loop (every zmm is call-clobbered).
  alignas(64) int32_t tile[8][48];
#define LOWBIT_STORE(r)                                    \
  if (MR > r) {                                            \
    _mm512_store_si512(tile[r], c##r##0);                  \
    if (NP > 1) _mm512_store_si512(tile[r] + 16, c##r##1); \
    if (NP > 2) _mm512_store_si512(tile[r] + 32, c##r##2); \
  }
  LOWBIT_STORE(0)
  LOWBIT_STORE(1)
  LOWBIT_STORE(2)
  LOWBIT_STORE(3)
  LOWBIT_STORE(4)
  LOWBIT_STORE(5)
  LOWBIT_STORE(6)
  LOWBIT_STORE(7)
#undef LOWBIT_STORE
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < NP; ++q) epilogue<Zmm16>(g, _mm512_load_si512(tile[r] + 16 * q), i0 + r, (p0 + q) * kPanelCols);
}

template <int NP>
void rows(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p) {
  int64_t i = m0;
  for (; i + 8 <= m1; i += 8) micro<8, NP>(g, i, p);
  switch (m1 - i) {
    case 1:
      micro<1, NP>(g, i, p);
      break;
    case 2:
      micro<2, NP>(g, i, p);
      break;
    case 3:
      micro<3, NP>(g, i, p);
      break;
    case 4:
      micro<4, NP>(g, i, p);
      break;
    case 5:
      micro<5, NP>(g, i, p);
      break;
    case 6:
      micro<6, NP>(g, i, p);
      break;
    case 7:
      micro<7, NP>(g, i, p);
      break;
    default:
      break;
  }
}

}  // namespace

void gemm_u8s8_task(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  int64_t p = p0;
  for (; p + 3 <= p1; p += 3) rows<3>(g, m0, m1, p);
  if (p1 - p == 2) rows<2>(g, m0, m1, p);
  if (p1 - p == 1) rows<1>(g, m0, m1, p);
}

}  // namespace avx512vnni
}  // namespace kernels
}  // namespace lowbit
