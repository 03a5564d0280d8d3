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
  static float sum(const fb& v) { return _mm512_reduce_add_ps(v); }
};
#endif

template <class Arch, bool kNf4>
struct Linear4Impl {
  using fb = xsimd::batch<float, Arch>;
  using T = Linear4Traits<Arch>;
  static constexpr int64_t W = static_cast<int64_t>(fb::size);

  // MB activation rows (1..4) against output columns [n0, n1). Each row has two accumulation
  // chains (low / high nibbles) per group, folded into acc with the group's scale.
  template <int MB>
  static void rows(const Linear4Args& a, int64_t m0, int64_t n0, int64_t n1) {
    const typename T::Table tab = T::table();
    const int64_t groups = a.k / a.group;
    const float* x0 = a.x + m0 * a.ldx;
    const float* x1 = x0 + (MB > 1 ? a.ldx : 0);
    const float* x2 = x0 + (MB > 2 ? 2 * a.ldx : 0);
    const float* x3 = x0 + (MB > 3 ? 3 * a.ldx : 0);
    for (int64_t n = n0; n < n1; ++n) {
      const uint8_t* row = a.w + n * (a.k / 2);
      const float* sc = a.scales + n * groups;
      fb acc0(0.0f), acc1(0.0f), acc2(0.0f), acc3(0.0f);
      for (int64_t g = 0; g < groups; ++g) {
        fb l0(0.0f), h0(0.0f), l1(0.0f), h1(0.0f), l2(0.0f), h2(0.0f), l3(0.0f), h3(0.0f);
        const int64_t kb = g * a.group;
        for (int64_t kk = kb; kk < kb + a.group; kk += 32) {
          const uint8_t* p = row + kk / 2;
          for (int64_t b = 0; b < 16; b += W) {
            const auto v = T::bytes(p + b);
            fb lo, hi;
            if (kNf4) {
              lo = T::nf4_lo(tab, v);
              hi = T::nf4_hi(tab, v);
            } else {
              lo = T::s4_lo(v);
              hi = T::s4_hi(v);
            }
            const int64_t kl = kk + b, kh = kk + 16 + b;
            l0 = xsimd::fma(fb::load_unaligned(x0 + kl), lo, l0);
            h0 = xsimd::fma(fb::load_unaligned(x0 + kh), hi, h0);
            if (MB > 1) {
              l1 = xsimd::fma(fb::load_unaligned(x1 + kl), lo, l1);
              h1 = xsimd::fma(fb::load_unaligned(x1 + kh), hi, h1);
            }
            if (MB > 2) {
              l2 = xsimd::fma(fb::load_unaligned(x2 + kl), lo, l2);
              h2 = xsimd::fma(fb::load_unaligned(x2 + kh), hi, h2);
            }
            if (MB > 3) {
              l3 = xsimd::fma(fb::load_unaligned(x3 + kl), lo, l3);
              h3 = xsimd::fma(fb::load_unaligned(x3 + kh), hi, h3);
            }
          }
        }
        const fb s(sc[g]);
        acc0 = xsimd::fma(l0 + h0, s, acc0);
        if (MB > 1) acc1 = xsimd::fma(l1 + h1, s, acc1);
        if (MB > 2) acc2 = xsimd::fma(l2 + h2, s, acc2);
        if (MB > 3) acc3 = xsimd::fma(l3 + h3, s, acc3);
      }
      const float bias = a.bias ? a.bias[n] : 0.0f;
      float* y = a.y + m0 * a.ldy + n;
      y[0] = T::sum(acc0) + bias;
      if (MB > 1) y[a.ldy] = T::sum(acc1) + bias;
      if (MB > 2) y[2 * a.ldy] = T::sum(acc2) + bias;
      if (MB > 3) y[3 * a.ldy] = T::sum(acc3) + bias;
    }
  }

  static void run(const Linear4Args& a, int64_t n0, int64_t n1) {
    int64_t m = 0;
    for (; m + 4 <= a.m; m += 4) rows<4>(a, m, n0, n1);
    switch (a.m - m) {
      case 3:
        rows<3>(a, m, n0, n1);
        break;
      case 2:
        rows<2>(a, m, n0, n1);
        break;
      case 1:
        rows<1>(a, m, n0, n1);
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
