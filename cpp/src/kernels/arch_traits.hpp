// Per-ISA byte/half-float conversions that xsimd 8.1 lacks (narrowing int32 -> 8-bit, widening
// 8-bit -> int32, F16C, streaming stores). Included only by kernel translation units; each
// specialization compiles only under its own ISA flags. Internal linkage: no cross-ISA merging.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <xsimd/xsimd.hpp>

namespace lowbit {
namespace kernels {
namespace {

template <class Arch>
struct ArchTraits;

#if defined(__AVX2__) && defined(__F16C__)
template <>
struct ArchTraits<xsimd::avx2> {
  using ib = xsimd::batch<int32_t, xsimd::avx2>;
  using fb = xsimd::batch<float, xsimd::avx2>;
  // Lanes already clamped to a byte range: keep the low byte of each (valid for s8 and u8).
  static void store_bytes(const ib& v, void* p) {
    const __m256i shuf = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1,
                                          -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256i x = _mm256_shuffle_epi8(v, shuf);
    x = _mm256_permutevar8x32_epi32(x, _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(x));
  }
  static ib load_s8(const int8_t* p) {
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  }
  static ib load_u8(const uint8_t* p) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  }
  static fb load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static void stream(float* p, const fb& v) { _mm256_stream_ps(p, v); }
};
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
template <>
struct ArchTraits<xsimd::avx512bw> {
  using ib = xsimd::batch<int32_t, xsimd::avx512bw>;
  using fb = xsimd::batch<float, xsimd::avx512bw>;
  static void store_bytes(const ib& v, void* p) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(v));
  }
  static ib load_s8(const int8_t* p) {
    return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static ib load_u8(const uint8_t* p) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static fb load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static void stream(float* p, const fb& v) { _mm512_stream_ps(p, v); }
};
#endif

}  // namespace
}  // namespace kernels
}  // namespace lowbit
