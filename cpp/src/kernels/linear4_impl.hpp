// float32 x 4-bit-weight GEMV kernels (int4 / NF4), written once over xsimd plus per-ISA decode
// intrinsics (Linear4Traits) and compiled once per ISA (kernels/<isa>/linear4.cpp).
// Contract and packed layout: lowbit/linear4.hpp.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <xsimd/xsimd.hpp>

#include "lowbit/formats.hpp"
#include "lowbit/linear4.hpp"

namespace lowbit {
namespace kernels {
namespace {

template <class Arch>
struct Linear4Traits;

#if defined(__AVX2__) && defined(__FMA__)
template <>
struct Linear4Traits<xsimd::avx2> {
  using fb = xsimd::batch<float, xsimd::avx2>;
  // 8 packed bytes -> their low nibbles (k = j..j+7) and high nibbles (k = j+16..j+23), as int32.
  static __m256i bytes(const uint8_t* p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))); }
  // Two's complement nibbles sign-extended by shifting them to the top and back.
  static fb s4_lo(__m256i v) { return _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(v, 28), 28)); }
  static fb s4_hi(__m256i v) { return _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(v, 24), 28)); }
  struct Table {
    __m256 t0, t1;
  };
  static Table table() { return {_mm256_loadu_ps(kNf4Levels), _mm256_loadu_ps(kNf4Levels + 8)}; }
  static fb lookup(const Table& t, __m256i idx) {
    __m256 a = _mm256_permutevar8x32_ps(t.t0, idx);  // uses the low 3 index bits
    __m256 b = _mm256_permutevar8x32_ps(t.t1, idx);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
  }
  static fb nf4_lo(const Table& t, __m256i v) { return lookup(t, v); }
  static fb nf4_hi(const Table& t, __m256i v) { return lookup(t, _mm256_srli_epi32(v, 4)); }
  // xsimd 8.1's fma on this arch is a multiply and an add (two roundings under -ffp-contract=off).
  static fb fma(const fb& a, const fb& b, const fb& c) { return _mm256_fmadd_ps(a, b, c); }
  static float sum(const fb& v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
template <>
struct Linear4Traits<xsimd::avx512bw> {
  using fb = xsimd::batch<float, xsimd::avx512bw>;
  static __m512i bytes(const uint8_t* p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  // int4 also decodes through a 16-entry table: one vpermps instead of two shifts and a convert.
  static fb s4_lo(__m512i v) { return _mm512_permutexvar_ps(v, s4_table()); }
  static fb s4_hi(__m512i v) { return _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), s4_table()); }
  static __m512 s4_table() { return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1); }
  struct Table {
    __m512 t;
  };
  static Table table() { return {_mm512_loadu_ps(kNf4Levels)}; }
  // vpermps reads only the low 4 index bits: the high nibble needs a shift, the low one nothing.
  static fb nf4_lo(const Table& t, __m512i v) { return _mm512_permutexvar_ps(v, t.t); }
  static fb nf4_hi(const Table& t, __m512i v) { return _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t.t); }
  // xsimd 8.1's fma on avx512bw is a multiply and an add (two roundings under -ffp-contract=off).
  static fb fma(const fb& a, const fb& b, const fb& c) { return _mm512_fmadd_ps(a, b, c); }
  static float sum(const fb& v) { return _mm512_reduce_add_ps(v); }
};
#endif

template <class Arch, bool kNf4>
struct Linear4Impl {
  using fb = xsimd::batch<float, Arch>;
  using T = Linear4Traits<Arch>;
  static constexpr int64_t W = static_cast<int64_t>(fb::size);
  // Output columns per pass: two share every activation load where the register file (32 zmm)
  // holds 2 * MB * NB partial sums + MB * NB accumulators; AVX2's 16 ymm do not.
  static constexpr int kNb = W == 16 ? 2 : 1;

  // One pass of MB activation rows (1..4) x NB output columns (1..2). Each (row, column) pair has
  // two accumulation chains per group (low / high nibbles, so even M = 1 has independent FMAs in
  // flight), folded into its accumulator with the group's scale.
  template <int MB, int NB>
  static void tile(const Linear4Args& a, int64_t m0, int64_t n) {
    const typename T::Table tab = T::table();
    const int64_t groups = a.k / a.group;
    const float* x0 = a.x + m0 * a.ldx;
    const float* x1 = x0 + (MB > 1 ? a.ldx : 0);
    const float* x2 = x0 + (MB > 2 ? 2 * a.ldx : 0);
    const float* x3 = x0 + (MB > 3 ? 3 * a.ldx : 0);
    const uint8_t* r0 = a.w + n * (a.k / 2);
    const uint8_t* r1 = r0 + (NB > 1 ? a.k / 2 : 0);
    const float* s0 = a.scales + n * groups;
    const float* s1 = s0 + (NB > 1 ? groups : 0);
    const fb z(0.0f);
    fb a00 = z, a10 = z, a20 = z, a30 = z, a01 = z, a11 = z, a21 = z, a31 = z;
    for (int64_t g = 0; g < groups; ++g) {
      fb l00 = z, h00 = z, l10 = z, h10 = z, l20 = z, h20 = z, l30 = z, h30 = z;
      fb l01 = z, h01 = z, l11 = z, h11 = z, l21 = z, h21 = z, l31 = z, h31 = z;
      const int64_t kb = g * a.group;
      for (int64_t kk = kb; kk < kb + a.group; kk += 32) {
        for (int64_t b = 0; b < 16; b += W) {
          fb lo0, hi0, lo1, hi1;
          decode(tab, r0 + kk / 2 + b, lo0, hi0);
          if (NB > 1) decode(tab, r1 + kk / 2 + b, lo1, hi1);
          const int64_t kl = kk + b, kh = kk + 16 + b;
#define LOWBIT_L4_ROW(m, xm)                                        \
  {                                                                 \
    const fb xl = fb::load_unaligned(xm + kl);                      \
    const fb xh = fb::load_unaligned(xm + kh);                      \
    l##m##0 = T::fma(xl, lo0, l##m##0);                         \
    h##m##0 = T::fma(xh, hi0, h##m##0);                         \
    if (NB > 1) {                                                   \
      l##m##1 = T::fma(xl, lo1, l##m##1);                       \
      h##m##1 = T::fma(xh, hi1, h##m##1);                       \
    }                                                               \
  }
          LOWBIT_L4_ROW(0, x0)
          if (MB > 1) LOWBIT_L4_ROW(1, x1)
          if (MB > 2) LOWBIT_L4_ROW(2, x2)
          if (MB > 3) LOWBIT_L4_ROW(3, x3)
#undef LOWBIT_L4_ROW
        }
      }
      const fb sc0(s0[g]);
      a00 = T::fma(l00 + h00, sc0, a00);
      if (MB > 1) a10 = T::fma(l10 + h10, sc0, a10);
      if (MB > 2) a20 = T::fma(l20 + h20, sc0, a20);
      if (MB > 3) a30 = T::fma(l30 + h30, sc0, a30);
      if (NB > 1) {
        const fb sc1(s1[g]);
        a01 = T::fma(l01 + h01, sc1, a01);
        if (MB > 1) a11 = T::fma(l11 + h11, sc1, a11);
        if (MB > 2) a21 = T::fma(l21 + h21, sc1, a21);
        if (MB > 3) a31 = T::fma(l31 + h31, sc1, a31);
      }
    }
    store(a, m0, n, a00, a10, a20, a30, MB);
    if (NB > 1) store(a, m0, n + 1, a01, a11, a21, a31, MB);
  }

  static void decode(const typename T::Table& tab, const uint8_t* p, fb& lo, fb& hi) {
    const auto v = T::bytes(p);
    if (kNf4) {
      lo = T::nf4_lo(tab, v);
      hi = T::nf4_hi(tab, v);
    } else {
      lo = T::s4_lo(v);
      hi = T::s4_hi(v);
    }
  }

  static void store(const Linear4Args& a, int64_t m0, int64_t n, const fb& c0, const fb& c1, const fb& c2,
                    const fb& c3, int mb) {
    const float bias = a.bias ? a.bias[n] : 0.0f;
    float* y = a.y + m0 * a.ldy + n;
    y[0] = T::sum(c0) + bias;
    if (mb > 1) y[a.ldy] = T::sum(c1) + bias;
    if (mb > 2) y[2 * a.ldy] = T::sum(c2) + bias;
    if (mb > 3) y[3 * a.ldy] = T::sum(c3) + bias;
  }

  template <int MB>
  static void columns(const Linear4Args& a, int64_t m0, int64_t n0, int64_t n1) {
    int64_t n = n0;
    for (; n + kNb <= n1; n += kNb) tile<MB, kNb>(a, m0, n);
    for (; n < n1; ++n) tile<MB, 1>(a, m0, n);
  }

  // Rows in blocks of 4 (each block streams the weight columns once; they stay in L1/L2 between
  // blocks of one task).
  static void run(const Linear4Args& a, int64_t n0, int64_t n1) {
    int64_t m = 0;
    for (; m + 4 <= a.m; m += 4) columns<4>(a, m, n0, n1);
    switch (a.m - m) {
      case 3:
        columns<3>(a, m, n0, n1);
        break;
      case 2:
        columns<2>(a, m, n0, n1);
        break;
      case 1:
        columns<1>(a, m, n0, n1);
        break;
      default:
        break;
    }
  }
};

}  // namespace
}  // namespace kernels
}  // namespace lowbit

// Defines the lowbit::kernels::<ns> 4-bit linear entry points for Arch in the including unit.
#define LOWBIT_DEFINE_LINEAR4_KERNELS(ns, Arch)                                 \
  namespace lowbit {                                                            \
  namespace kernels {                                                           \
  namespace ns {                                                                \
  void linear_f32_s4w_f32(const Linear4Args& a, int64_t n0, int64_t n1) {       \
    Linear4Impl<Arch, false>::run(a, n0, n1);                                   \
  }                                                                             \
  void linear_f32_nf4w_f32(const Linear4Args& a, int64_t n0, int64_t n1) {      \
    Linear4Impl<Arch, true>::run(a, n0, n1);                                    \
  }                                                                             \
  }                                                                             \
  }                                                                             \
  }
