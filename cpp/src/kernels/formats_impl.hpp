// Format kernels (NF4 encode/decode, fp16/bf16 conversion), written once over xsimd plus a few
// per-ISA intrinsics (FormatTraits) and compiled once per ISA (kernels/<isa>/formats.cpp).
// Contracts: lowbit/formats.hpp. Scalar tails call reference/formats_scalar.hpp.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <xsimd/xsimd.hpp>

#include "kernels/arch_traits.hpp"
#include "lowbit/formats.hpp"
#include "reference/formats_scalar.hpp"
#include "reference/scalar.hpp"

namespace lowbit {
namespace kernels {
namespace {

template <class Arch>
struct FormatTraits;

#if defined(__AVX2__) && defined(__F16C__)
template <>
struct FormatTraits<xsimd::avx2> {
  using fb = xsimd::batch<float, xsimd::avx2>;
  static constexpr bool kNf4Search = false;  // 8-lane permutes make the 16-entry search dearer
  static __m256i nf4_codes(const fb&) { return _mm256_setzero_si256(); }
  // 8 NF4 levels for 4 packed bytes (low nibble first); the 16-entry table is two 8-lane permutes.
  static fb nf4_levels(const uint8_t* p) {
    int32_t w;
    std::memcpy(&w, p, 4);
    __m128i b = _mm_cvtsi32_si128(w);
    __m128i lo = _mm_and_si128(b, _mm_set1_epi8(0x0f));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0f));
    __m256i idx = _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
    __m256 t0 = _mm256_permutevar8x32_ps(_mm256_loadu_ps(kNf4Levels), idx);
    __m256 t1 = _mm256_permutevar8x32_ps(_mm256_loadu_ps(kNf4Levels + 8), idx);
    return _mm256_blendv_ps(t0, t1, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
  }
  static void store_f16(const fb& v, uint16_t* p) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  // Integer round-to-nearest-even on the float bits; NaN lanes get the quiet NaN of the input.
  static void store_bf16(const fb& v, uint16_t* p) {
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    __m256i qnan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8(r, qnan, nan);
    __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), packed);
  }
  static fb load_bf16(const uint16_t* p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
};
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
template <>
struct FormatTraits<xsimd::avx512bw> {
  using fb = xsimd::batch<float, xsimd::avx512bw>;
  static constexpr bool kNf4Search = true;
  // code = #{t : y > t} by binary search over the 15 thresholds held in one register (four
  // vpermps + compares instead of fifteen compares); NaN -> 7.
  static __m512i nf4_codes(const fb& y) {
    alignas(64) static const float k[16] = {
        kNf4Thresholds[0],  kNf4Thresholds[1],  kNf4Thresholds[2],  kNf4Thresholds[3],
        kNf4Thresholds[4],  kNf4Thresholds[5],  kNf4Thresholds[6],  kNf4Thresholds[7],
        kNf4Thresholds[8],  kNf4Thresholds[9],  kNf4Thresholds[10], kNf4Thresholds[11],
        kNf4Thresholds[12], kNf4Thresholds[13], kNf4Thresholds[14], 0.0f};
    const __m512 tab = _mm512_load_ps(k);
    __m512i idx = _mm512_setzero_si512();
    for (int step = 8; step > 0; step >>= 1) {
      const __m512 t = _mm512_permutexvar_ps(_mm512_add_epi32(idx, _mm512_set1_epi32(step - 1)), tab);
      idx = _mm512_mask_add_epi32(idx, _mm512_cmp_ps_mask(y, t, _CMP_GT_OQ), idx, _mm512_set1_epi32(step));
    }
    return _mm512_mask_mov_epi32(idx, _mm512_cmp_ps_mask(y, y, _CMP_UNORD_Q), _mm512_set1_epi32(7));
  }
  // 16 NF4 levels for 8 packed bytes: one vpermps over the whole table.
  static fb nf4_levels(const uint8_t* p) {
    __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    __m128i lo = _mm_and_si128(b, _mm_set1_epi8(0x0f));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0f));
    __m512i idx = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
    return _mm512_permutexvar_ps(idx, _mm512_loadu_ps(kNf4Levels));
  }
  static void store_f16(const fb& v, uint16_t* p) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  static __m512i bf16_rne(__m512 v) {
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    __m512i qnan = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), r, qnan);
  }
  static void store_bf16(const fb& v, uint16_t* p) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(bf16_rne(v)));
  }
  static fb load_bf16(const uint16_t* p) {
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
  }
};
#endif

template <class Arch>
struct FormatImpl {
  using fb = xsimd::batch<float, Arch>;
  using ib = xsimd::batch<int32_t, Arch>;
  using Traits = FormatTraits<Arch>;
  static constexpr int64_t W = static_cast<int64_t>(fb::size);
  static constexpr int64_t kStage = 256;  // codes staged as bytes before nibble packing

  static float block_absmax(const float* x, int64_t n) {
    int64_t i = 0;
    float m = 0.0f;
    if (n >= W) {
      fb acc(0.0f);
      for (; i + W <= n; i += W) {
        fb a = xsimd::abs(fb::load_unaligned(x + i));
        acc = xsimd::select(a > acc, a, acc);  // NaN never wins, as in the reference
      }
      alignas(64) float lanes[16];
      acc.store_aligned(lanes);
      for (int64_t k = 0; k < W; ++k) m = detail::absmax_update(m, lanes[k]);
    }
    for (; i < n; ++i) m = detail::absmax_update(m, x[i]);
    return m;
  }

  // code = #{t : y > t}, counted in float lanes; NaN -> 7.
  static ib nf4_codes(const fb& xv, const fb& inv) {
    fb y = xv * inv;
    if (Traits::kNf4Search) return Traits::nf4_codes(y);
    const fb one(1.0f), zero(0.0f);
    fb c0(0.0f), c1(0.0f), c2(0.0f);
    for (int t = 0; t < 15; t += 3) {
      c0 = c0 + xsimd::select(y > fb(kNf4Thresholds[t]), one, zero);
      c1 = c1 + xsimd::select(y > fb(kNf4Thresholds[t + 1]), one, zero);
      c2 = c2 + xsimd::select(y > fb(kNf4Thresholds[t + 2]), one, zero);
    }
    fb c = xsimd::select(xsimd::isnan(y), fb(7.0f), c0 + c1 + c2);
    return xsimd::nearbyint_as_int(c);
  }

  static void quantize_nf4(const float* x, int64_t n, int64_t block, float* absmax, uint8_t* q) {
    alignas(64) int8_t stage[kStage];
    for (int64_t b = 0, k = 0; b < n; b += block, ++k) {
      const int64_t e = b + block < n ? b + block : n;
      const float m = block_absmax(x + b, e - b);
      absmax[k] = m;
      const float inv_s = detail::nf4_inv(m);
      const fb inv(inv_s);
      for (int64_t c = b; c < e; c += kStage) {
        const int64_t ce = c + kStage < e ? c + kStage : e;
        int64_t i = c;
        for (; i + W <= ce; i += W)
          ArchTraits<Arch>::store_bytes(nf4_codes(fb::load_unaligned(x + i), inv), stage + (i - c));
        for (; i < ce; ++i) stage[i - c] = static_cast<int8_t>(detail::nf4_code(x[i], inv_s));
        const int64_t len = ce - c;
        if (len & 1) stage[len] = 0;
        detail::pack_nibbles(stage, (len + 1) / 2, q + c / 2);
      }
    }
  }

  static void dequantize_nf4(const uint8_t* q, int64_t n, int64_t block, const float* absmax, float* out) {
    for (int64_t b = 0, k = 0; b < n; b += block, ++k) {
      const int64_t e = b + block < n ? b + block : n;
      const fb s(absmax[k]);
      int64_t i = b;
      for (; i + W <= e; i += W) (Traits::nf4_levels(q + i / 2) * s).store_unaligned(out + i);
      for (; i < e; ++i) {
        uint8_t c = (i & 1) ? static_cast<uint8_t>(q[i / 2] >> 4) : static_cast<uint8_t>(q[i / 2] & 15);
        out[i] = detail::nf4_value(c, absmax[k]);
      }
    }
  }

  static void convert_f32_f16(const float* x, int64_t n, uint16_t* out) {
    int64_t i = 0;
    for (; i + W <= n; i += W) Traits::store_f16(fb::load_unaligned(x + i), out + i);
    for (; i < n; ++i) out[i] = detail::f32_to_f16(x[i]);
  }

  static void convert_f32_bf16(const float* x, int64_t n, uint16_t* out) {
    int64_t i = 0;
    for (; i + W <= n; i += W) Traits::store_bf16(fb::load_unaligned(x + i), out + i);
    for (; i < n; ++i) out[i] = detail::f32_to_bf16(x[i]);
  }

  static void convert_bf16_f32(const uint16_t* x, int64_t n, float* out) {
    int64_t i = 0;
    for (; i + W <= n; i += W) Traits::load_bf16(x + i).store_unaligned(out + i);
    for (; i < n; ++i) out[i] = detail::bf16_to_f32(x[i]);
  }
};

}  // namespace
}  // namespace kernels
}  // namespace lowbit

// Defines the lowbit::kernels::<ns> format entry points for Arch in the including translation unit.
#define LOWBIT_DEFINE_FORMAT_KERNELS(ns, Arch)                                                            \
  namespace lowbit {                                                                                      \
  namespace kernels {                                                                                     \
  namespace ns {                                                                                          \
  using FImpl = FormatImpl<Arch>;                                                                         \
  void quantize_f32_nf4(const float* x, int64_t n, int64_t block, float* absmax, uint8_t* q) {            \
    FImpl::quantize_nf4(x, n, block, absmax, q);                                                          \
  }                                                                                                       \
  void dequantize_nf4_f32(const uint8_t* q, int64_t n, int64_t block, const float* absmax, float* out) {  \
    FImpl::dequantize_nf4(q, n, block, absmax, out);                                                      \
  }                                                                                                       \
  void convert_f32_f16(const float* x, int64_t n, uint16_t* out) { FImpl::convert_f32_f16(x, n, out); }   \
  void convert_f32_bf16(const float* x, int64_t n, uint16_t* out) { FImpl::convert_f32_bf16(x, n, out); } \
  void convert_bf16_f32(const uint16_t* x, int64_t n, float* out) { FImpl::convert_bf16_f32(x, n, out); } \
  }                                                                                                       \
  }                                                                                                       \
  }
