// The int8 GEMM epilogue on one zmm of 16 int32 accumulators (lowbit/matmul.hpp), shared by the
// AVX-512 VNNI and AMX task kernels. Included only by kernel translation units built with AVX-512.
#pragma once

#include <immintrin.h>

#include "lowbit/matmul.hpp"

namespace lowbit {
namespace kernels {
namespace {

// Epilogue (lowbit/matmul.hpp) for the 16 columns of panel p in row i.
inline void epilogue(const GemmArgs& g, __m512i acc, int64_t i, int64_t p) {
  const int64_t j0 = p * kPanelCols;
  const int64_t rem = g.n - j0;
  const __mmask16 mask = rem >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << rem) - 1u);
  const __m512i cs = _mm512_loadu_si512(g.colsum + j0);
  const __m512i v = _mm512_sub_epi32(acc, _mm512_mullo_epi32(_mm512_set1_epi32(g.row_offset[i]), cs));
  if (g.kind == EpilogueKind::kInt32) {
    _mm512_mask_storeu_epi32(static_cast<int32_t*>(g.out) + i * g.ldo + j0, mask, v);
    return;
  }
  const __m512 s = _mm512_mul_ps(_mm512_set1_ps(g.row_scale[i]), _mm512_loadu_ps(g.col_scale + j0));
  __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(v), s);
  if (g.bias != nullptr) y = _mm512_add_ps(y, _mm512_loadu_ps(g.bias + j0));
  // maxps(0, y) returns y when y is NaN, as std::max(y, 0.0f) does.
  if (g.relu) y = _mm512_max_ps(_mm512_setzero_ps(), y);
  if (g.kind == EpilogueKind::kFloat) {
    _mm512_mask_storeu_ps(static_cast<float*>(g.out) + i * g.ldo + j0, mask, y);
    return;
  }
  __m512 t = _mm512_mul_ps(y, _mm512_set1_ps(g.out_inv_scale));
  t = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(t, t, _CMP_ORD_Q), t);  // NaN -> 0
  t = _mm512_max_ps(t, _mm512_set1_ps(static_cast<float>(-128 - g.out_zero_point)));
  t = _mm512_min_ps(t, _mm512_set1_ps(static_cast<float>(127 - g.out_zero_point)));
  const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(t), _mm512_set1_epi32(g.out_zero_point));
  _mm512_mask_cvtepi32_storeu_epi8(static_cast<int8_t*>(g.out) + i * g.ldo + j0, mask, q);
}

}  // namespace
}  // namespace kernels
}  // namespace lowbit
