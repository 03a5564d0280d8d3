// Horizontal min / max / sum of a float batch for the kernels (xsimd 8.1 has no reduce_min): log-depth
// shuffles in registers. min / max only for batches without NaN (then every order gives the same value).
#pragma once

#include <immintrin.h>

#include <xsimd/xsimd.hpp>

namespace lowbit {
namespace kernels {
namespace {

inline float hmin(const xsimd::batch<float, xsimd::avx2>& v) {
  __m256 x = v;
  __m128 s = _mm_min_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  s = _mm_min_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_min_ss(s, _mm_movehdup_ps(s)));
}
inline float hmax(const xsimd::batch<float, xsimd::avx2>& v) {
  __m256 x = v;
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}
inline float hsum(const xsimd::batch<float, xsimd::avx2>& v) {
  __m256 x = v;
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#if defined(__AVX512F__)
inline float hsum(const xsimd::batch<float, xsimd::avx512bw>& v) { return _mm512_reduce_add_ps(v); }
inline float hmin(const xsimd::batch<float, xsimd::avx512bw>& v) { return _mm512_reduce_min_ps(v); }
inline float hmax(const xsimd::batch<float, xsimd::avx512bw>& v) { return _mm512_reduce_max_ps(v); }
#endif

// Lanes where a or b is NaN (one compare for two vectors).
inline xsimd::batch_bool<float, xsimd::avx2> unordered(const xsimd::batch<float, xsimd::avx2>& a,
                                                       const xsimd::batch<float, xsimd::avx2>& b) {
  return _mm256_cmp_ps(a, b, _CMP_UNORD_Q);
}
#if defined(__AVX512F__)
inline xsimd::batch_bool<float, xsimd::avx512bw> unordered(const xsimd::batch<float, xsimd::avx512bw>& a,
                                                           const xsimd::batch<float, xsimd::avx512bw>& b) {
  return _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q);
}
#endif

}  // namespace
}  // namespace kernels
}  // namespace lowbit
