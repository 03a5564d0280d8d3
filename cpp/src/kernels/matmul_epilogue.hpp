// The int8 GEMM epilogue (lowbit/matmul.hpp) written once over a small vector traits struct:
// Zmm16 (AVX-512: VNNI and AMX tasks) and Ymm8 (AVX2 / AVX-VNNI tasks). Kernels layer; included
// only by kernel translation units, each traits struct compiled only under its own ISA flags.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "lowbit/matmul.hpp"

namespace lowbit {
namespace kernels {
namespace {

#if defined(__AVX512F__) && defined(__AVX512BW__)
// 16 columns per vector; partial panels use masked stores.
struct Zmm16 {
  static constexpr int64_t kLanes = 16;
  using vi = __m512i;
  using vf = __m512;
  using tail = __mmask16;
  static tail tail_of(int64_t rem) {
    return rem >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << rem) - 1u);
  }
  static vi load_i(const int32_t* p) { return _mm512_loadu_si512(p); }
  static vi set1_i(int32_t v) { return _mm512_set1_epi32(v); }
  static vi sub_i(vi a, vi b) { return _mm512_sub_epi32(a, b); }
  static vi add_i(vi a, vi b) { return _mm512_add_epi32(a, b); }
  static vi mullo_i(vi a, vi b) { return _mm512_mullo_epi32(a, b); }
  static vf load(const float* p) { return _mm512_loadu_ps(p); }
  static vf set1(float v) { return _mm512_set1_ps(v); }
  static vf zero() { return _mm512_setzero_ps(); }
  static vf mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
  static vf add(vf a, vf b) { return _mm512_add_ps(a, b); }
  static vf max(vf a, vf b) { return _mm512_max_ps(a, b); }
  static vf min(vf a, vf b) { return _mm512_min_ps(a, b); }
  static vf to_float(vi v) { return _mm512_cvtepi32_ps(v); }
  static vi to_int_nearest(vf v) { return _mm512_cvtps_epi32(v); }
  static vf nan_to_zero(vf v) { return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v); }
  static void store_i32(int32_t* p, vi v, tail t, int64_t) { _mm512_mask_storeu_epi32(p, t, v); }
  static void store_f32(float* p, vf v, tail t, int64_t) { _mm512_mask_storeu_ps(p, t, v); }
  static void stream_f32(float* p, vf v, tail t, int64_t rem) {
    if (rem >= 16 && reinterpret_cast<uintptr_t>(p) % 64 == 0) {
      _mm512_stream_ps(p, v);
    } else {
      _mm512_mask_storeu_ps(p, t, v);
    }
  }
  static void store_s8(int8_t* p, vi v, tail t, int64_t) { _mm512_mask_cvtepi32_storeu_epi8(p, t, v); }
};
#endif

#if defined(__AVX2__)
// 8 columns per vector (half a panel, so the second half may lie past N); partial vectors go
// through a stack buffer.
struct Ymm8 {
  static constexpr int64_t kLanes = 8;
  using vi = __m256i;
  using vf = __m256;
  using tail = int;  // unused: the stores take the column count
  static tail tail_of(int64_t) { return 0; }
  static vi load_i(const int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static vi set1_i(int32_t v) { return _mm256_set1_epi32(v); }
  static vi sub_i(vi a, vi b) { return _mm256_sub_epi32(a, b); }
  static vi add_i(vi a, vi b) { return _mm256_add_epi32(a, b); }
  static vi mullo_i(vi a, vi b) { return _mm256_mullo_epi32(a, b); }
  static vf load(const float* p) { return _mm256_loadu_ps(p); }
  static vf set1(float v) { return _mm256_set1_ps(v); }
  static vf zero() { return _mm256_setzero_ps(); }
  static vf mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
  static vf add(vf a, vf b) { return _mm256_add_ps(a, b); }
  static vf max(vf a, vf b) { return _mm256_max_ps(a, b); }
  static vf min(vf a, vf b) { return _mm256_min_ps(a, b); }
  static vf to_float(vi v) { return _mm256_cvtepi32_ps(v); }
  static vi to_int_nearest(vf v) { return _mm256_cvtps_epi32(v); }
  static vf nan_to_zero(vf v) { return _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q)); }
  static void store_i32(int32_t* p, vi v, tail, int64_t rem) {
    if (rem >= 8) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
    } else {
      alignas(32) int32_t b[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(b), v);
      std::memcpy(p, b, static_cast<size_t>(rem) * 4);
    }
  }
  static void store_f32(float* p, vf v, tail, int64_t rem) {
    if (rem >= 8) {
      _mm256_storeu_ps(p, v);
    } else {
      alignas(32) float b[8];
      _mm256_store_ps(b, v);
      std::memcpy(p, b, static_cast<size_t>(rem) * 4);
    }
  }
  static void stream_f32(float* p, vf v, tail t, int64_t rem) { store_f32(p, v, t, rem); }
  static void store_s8(int8_t* p, vi v, tail, int64_t rem) {
    alignas(32) int32_t b[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(b), v);
    const int64_t cnt = rem >= 8 ? 8 : rem;
    for (int64_t j = 0; j < cnt; ++j) p[j] = static_cast<int8_t>(b[j]);
  }
};
#endif

// Epilogue (lowbit/matmul.hpp) for the V::kLanes columns j0.. of row i; acc holds the raw int32
// accumulators. The float steps run in the order of the reference's epilogue_one, each rounded.
template <class V>
inline void epilogue(const GemmArgs& g, typename V::vi acc, int64_t i, int64_t j0) {
  const int64_t rem = g.n - j0;
  if (V::kLanes < kPanelCols && rem <= 0) return;  // the upper half of the last panel
  const typename V::tail t = V::tail_of(rem);
  const typename V::vi v = V::sub_i(acc, V::mullo_i(V::set1_i(g.row_offset[i]), V::load_i(g.colsum + j0)));
  if (g.kind == EpilogueKind::kInt32) {
    V::store_i32(static_cast<int32_t*>(g.out) + i * g.ldo + j0, v, t, rem);
    return;
  }
  const typename V::vf s = V::mul(V::set1(g.row_scale[i]), V::load(g.col_scale + j0));
  typename V::vf y = V::mul(V::to_float(v), s);
  if (g.bias != nullptr) y = V::add(y, V::load(g.bias + j0));
  // maxps(0, y) returns y when y is NaN, as std::max(y, 0.0f) does.
  if (g.relu) y = V::max(V::zero(), y);
  if (g.kind == EpilogueKind::kFloat) {
    if (g.stream_out) {
      V::stream_f32(static_cast<float*>(g.out) + i * g.ldo + j0, y, t, rem);
    } else {
      V::store_f32(static_cast<float*>(g.out) + i * g.ldo + j0, y, t, rem);
    }
    return;
  }
  typename V::vf q = V::mul(y, V::set1(g.out_inv_scale));
  q = V::nan_to_zero(q);
  q = V::max(q, V::set1(static_cast<float>(-128 - g.out_zero_point)));
  q = V::min(q, V::set1(static_cast<float>(127 - g.out_zero_point)));
  V::store_s8(static_cast<int8_t*>(g.out) + i * g.ldo + j0, V::add_i(V::to_int_nearest(q), V::set1_i(g.out_zero_point)),
              t, rem);
}

}  // namespace
}  // namespace kernels
}  // namespace lowbit
