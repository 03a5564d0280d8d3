// 256-bit int8 GEMM task shared by AVX2 (exact without VNNI: bytes widened to int16, vpmaddwd
// pair sums, so nothing saturates; vpmaddubsw would saturate in int16) and AVX-VNNI (VEX
// vpdpbusd). Included only by kernels/avx2/matmul.cpp and kernels/avxvnni/matmul.cpp.
#pragma once

#include <immintrin.h>

#include <cstring>

#include "kernels/matmul.hpp"
#include "kernels/matmul_epilogue.hpp"

namespace lowbit {
namespace kernels {
namespace {

constexpr int64_t kPanelBytes256 = kPanelCols * kKGroup;

inline int32_t load_a4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

#if !defined(LOWBIT_GEMM256_VNNI)
// AVX2: per row and panel, four accumulators of 4 columns x (k0+k1, k2+k3) int32 halves; the
// halves are added at the end. B bytes are sign-extended, A bytes zero-extended, to int16.
inline __m256i widen_b(const int8_t* p) {
  return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256i bcast_a16(const uint8_t* p) { return _mm256_cvtepu8_epi16(_mm_set1_epi32(load_a4(p))); }
// (cols 0-3 halves, cols 4-7 halves) -> cols 0-7 sums.
inline __m256i fold(__m256i lo, __m256i hi) { return _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo, hi), 0xD8); }

template <int MR>
void micro256(const GemmArgs& g, int64_t i0, int64_t p) {
  const int8_t* b = g.b + p * g.k_groups * kPanelBytes256;
  const uint8_t* a = g.a + i0 * g.lda;
  const int64_t lda = g.lda;
  const __m256i z = _mm256_setzero_si256();
  __m256i c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z;
  for (int64_t t = 0; t < g.k_groups; ++t) {
    const int8_t* bt = b + t * kPanelBytes256;
    const __m256i b0 = widen_b(bt), b1 = widen_b(bt + 16), b2 = widen_b(bt + 32), b3 = widen_b(bt + 48);
    const __m256i a0 = bcast_a16(a + t * 4);
    c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(b0, a0));
    c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(b1, a0));
    c02 = _mm256_add_epi32(c02, _mm256_madd_epi16(b2, a0));
    c03 = _mm256_add_epi32(c03, _mm256_madd_epi16(b3, a0));
    if (MR > 1) {
      const __m256i a1 = bcast_a16(a + lda + t * 4);
      c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(b0, a1));
      c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(b1, a1));
      c12 = _mm256_add_epi32(c12, _mm256_madd_epi16(b2, a1));
      c13 = _mm256_add_epi32(c13, _mm256_madd_epi16(b3, a1));
    }
  }
  const int64_t j0 = p * kPanelCols;
  epilogue<Ymm8>(g, fold(c00, c01), i0, j0);
  epilogue<Ymm8>(g, fold(c02, c03), i0, j0 + 8);
  if (MR > 1) {
    epilogue<Ymm8>(g, fold(c10, c11), i0 + 1, j0);
    epilogue<Ymm8>(g, fold(c12, c13), i0 + 1, j0 + 8);
  }
}
constexpr int kMr256 = 2;
#else
// AVX-VNNI (VEX vpdpbusd). The EVEX twin (AVX512-VNNI + VL, same semantics) builds the same code
// for a test-only instantiation that runs on AVX-512 VNNI machines.
#if defined(LOWBIT_GEMM256_EVEX)
#define LOWBIT_DPBUSD256 _mm256_dpbusd_epi32
#else
#define LOWBIT_DPBUSD256 _mm256_dpbusd_avx_epi32
#endif
// AVX-VNNI: 4 rows x 1 panel (two ymm of 8 columns per row), accumulators are final sums.
template <int MR>
void micro256(const GemmArgs& g, int64_t i0, int64_t p) {
  const int8_t* b = g.b + p * g.k_groups * kPanelBytes256;
  const uint8_t* a = g.a + i0 * g.lda;
  const int64_t lda = g.lda;
  const __m256i z = _mm256_setzero_si256();
  __m256i c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z;
  for (int64_t t = 0; t < g.k_groups; ++t) {
    const int8_t* bt = b + t * kPanelBytes256;
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bt));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bt + 32));
#define LOWBIT_ROW(r)                                                   \
  if (MR > r) {                                                         \
    const __m256i av = _mm256_set1_epi32(load_a4(a + r * lda + t * 4)); \
    c##r##0 = LOWBIT_DPBUSD256(c##r##0, av, b0);                        \
    c##r##1 = LOWBIT_DPBUSD256(c##r##1, av, b1);                        \
  }
    LOWBIT_ROW(0)
    LOWBIT_ROW(1)
    LOWBIT_ROW(2)
    LOWBIT_ROW(3)
#undef LOWBIT_ROW
  }
  // Panels are 16 columns: columns 8-15 of row r are in c_r1.
  const int64_t j0 = p * kPanelCols;
  epilogue<Ymm8>(g, c00, i0, j0);
  epilogue<Ymm8>(g, c01, i0, j0 + 8);
  if (MR > 1) {
    epilogue<Ymm8>(g, c10, i0 + 1, j0);
    epilogue<Ymm8>(g, c11, i0 + 1, j0 + 8);
  }
  if (MR > 2) {
    epilogue<Ymm8>(g, c20, i0 + 2, j0);
    epilogue<Ymm8>(g, c21, i0 + 2, j0 + 8);
  }
  if (MR > 3) {
    epilogue<Ymm8>(g, c30, i0 + 3, j0);
    epilogue<Ymm8>(g, c31, i0 + 3, j0 + 8);
  }
}
constexpr int kMr256 = 4;
#endif

void gemm256_task(const GemmArgs& g, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  for (int64_t p = p0; p < p1; ++p) {
    int64_t i = m0;
    for (; i + kMr256 <= m1; i += kMr256) micro256<kMr256>(g, i, p);
    switch (m1 - i) {
      case 1:
        micro256<1>(g, i, p);
        break;
      case 2:
        micro256<2>(g, i, p);
        break;
      case 3:
        micro256<3>(g, i, p);
        break;
      default:
        break;
    }
  }
}

}  // namespace
}  // namespace kernels
}  // namespace lowbit
