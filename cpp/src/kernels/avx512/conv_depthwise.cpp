// AVX-512 (BW) depthwise convolution kernel: 32 channels per step, the image bytes minus the zero
// point as int16 times the even-/odd-zeroed int16 weights on vpmaddwd (two int32 accumulators).
#include "kernels/conv_depthwise.hpp"

#include <immintrin.h>

#include "reference/conv_depthwise.hpp"

namespace lowbit {
namespace kernels {
namespace avx512 {

namespace {

// One 32-channel block of output pixel ox: taps through row pointers (nullptr: row outside the
// image); `interior`: every kx is inside the image, so no column checks.
template <bool kInterior>
inline void block(const DwConvArgs& a, const uint8_t* const* rowp, int64_t ox, int64_t cb, __mmask32 m, __m512i zp,
                  __m512i* acc_e, __m512i* acc_o) {
  const int64_t c = a.c, cp = a.c_pad, kw = a.kw, w = a.w, dxc = a.dil_w * a.c;
  const int64_t ix0 = ox * a.stride_w - a.pad_w;
  __m512i e = _mm512_setzero_si512(), o = _mm512_setzero_si512();
  for (int64_t ky = 0; ky < a.kh; ++ky) {
    if (rowp[ky] == nullptr) continue;
    const uint8_t* p = rowp[ky] + ix0 * c + cb;
    const int16_t* we = a.w_even + ky * kw * cp + cb;
    const int16_t* wo = a.w_odd + ky * kw * cp + cb;
    for (int64_t kx = 0; kx < kw; ++kx, p += dxc, we += cp, wo += cp) {
      if (!kInterior) {
        const int64_t ix = ix0 + kx * a.dil_w;
        if (ix < 0 || ix >= w) continue;
      }
      const __m512i x = _mm512_sub_epi16(_mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, p)), zp);
      e = _mm512_add_epi32(e, _mm512_madd_epi16(x, _mm512_loadu_si512(we)));
      o = _mm512_add_epi32(o, _mm512_madd_epi16(x, _mm512_loadu_si512(wo)));
    }
  }
  *acc_e = e;
  *acc_o = o;
}

}  // namespace

// vpmaddwd against weights with every other channel zeroed gives exact int32 products (|x - z| <=
// 255, |w| <= 128) in a 32-bit lane per channel pair; two permutes restore channel order. Kernel
// rows are reached through up to 16 row pointers (taller kernels take the reference).
void conv2d_depthwise_f32_s8w_f32(const DwConvArgs& a, int64_t r0, int64_t r1) {
  if (a.kh > 16) {
    ref::conv2d_depthwise_f32_s8w_f32(a, r0, r1);
    return;
  }
  const int64_t c = a.c, h = a.h, w = a.w;
  const __m512i zp = _mm512_set1_epi16(static_cast<int16_t>(a.zero_point));
  const __m512i idx_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i idx_hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512 zero = _mm512_setzero_ps();
  const float* const bias = a.bias;
  const bool relu = a.relu;
  // output columns whose window lies inside the image: [ox_lo, ox_hi)
  const int64_t span = (a.kw - 1) * a.dil_w;
  int64_t ox_lo = (a.pad_w + a.stride_w - 1) / a.stride_w, ox_hi = 0;
  if (w - 1 - span + a.pad_w >= 0) ox_hi = (w - 1 - span + a.pad_w) / a.stride_w + 1;
  ox_lo = ox_lo < a.wo ? ox_lo : a.wo;
  ox_hi = ox_hi < a.wo ? ox_hi : a.wo;
  if (ox_hi < ox_lo) ox_hi = ox_lo;
  const uint8_t* rowp[16];
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / a.ho, oy = r % a.ho;
    for (int64_t ky = 0; ky < a.kh; ++ky) {
      const int64_t iy = oy * a.stride_h - a.pad_h + ky * a.dil_h;
      rowp[ky] = (iy < 0 || iy >= h) ? nullptr : a.img + ((b * h + iy) * w) * c;
    }
    float* const orow = a.out + (r - a.out_r0) * a.wo * c;
    for (int64_t cb = 0; cb < c; cb += 32) {
      const int64_t rem = c - cb;
      const __mmask32 m = rem >= 32 ? ~0u : ((1u << rem) - 1u);
      const __mmask16 m0 = static_cast<__mmask16>(m), m1 = static_cast<__mmask16>(m >> 16);
      const __m512 s0 = _mm512_loadu_ps(a.scale + cb), s1 = _mm512_loadu_ps(a.scale + cb + 16);
      // 3x3 with all three rows inside the image: the 18 weight vectors stay in registers (other
      // kernels load tap 0 nine times: in bounds, unused)
      const bool is3 = a.kh == 3 && a.kw == 3;
      const bool k3 = is3 && rowp[0] != nullptr && rowp[1] != nullptr && rowp[2] != nullptr;
#define LOWBIT_DW_W(t)                                                                 \
  const __m512i we##t = _mm512_loadu_si512(a.w_even + (is3 ? (t) : 0) * a.c_pad + cb); \
  const __m512i wo##t = _mm512_loadu_si512(a.w_odd + (is3 ? (t) : 0) * a.c_pad + cb);
      LOWBIT_DW_W(0)
      LOWBIT_DW_W(1)
      LOWBIT_DW_W(2)
      LOWBIT_DW_W(3)
      LOWBIT_DW_W(4)
      LOWBIT_DW_W(5)
      LOWBIT_DW_W(6)
      LOWBIT_DW_W(7)
      LOWBIT_DW_W(8)
#undef LOWBIT_DW_W
      const int64_t dxc = a.dil_w * c;
      for (int64_t ox = 0; ox < a.wo; ++ox) {
        __m512i acc_e, acc_o;
        if (k3 && ox >= ox_lo && ox < ox_hi) {
          const int64_t off = (ox * a.stride_w - a.pad_w) * c + cb;
          const uint8_t* const p0 = rowp[0] + off;
          const uint8_t* const p1 = rowp[1] + off;
          const uint8_t* const p2 = rowp[2] + off;
          __m512i e = _mm512_setzero_si512(), o = _mm512_setzero_si512();
#define LOWBIT_DW_TAP(p, t)                                                                      \
  {                                                                                              \
    const __m512i x = _mm512_sub_epi16(_mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, p)), zp); \
    e = _mm512_add_epi32(e, _mm512_madd_epi16(x, we##t));                                        \
    o = _mm512_add_epi32(o, _mm512_madd_epi16(x, wo##t));                                        \
  }
          LOWBIT_DW_TAP(p0, 0)
          LOWBIT_DW_TAP(p0 + dxc, 1)
          LOWBIT_DW_TAP(p0 + 2 * dxc, 2)
          LOWBIT_DW_TAP(p1, 3)
          LOWBIT_DW_TAP(p1 + dxc, 4)
          LOWBIT_DW_TAP(p1 + 2 * dxc, 5)
          LOWBIT_DW_TAP(p2, 6)
          LOWBIT_DW_TAP(p2 + dxc, 7)
          LOWBIT_DW_TAP(p2 + 2 * dxc, 8)
#undef LOWBIT_DW_TAP
          acc_e = e;
          acc_o = o;
        } else if (ox >= ox_lo && ox < ox_hi) {
          block<true>(a, rowp, ox, cb, m, zp, &acc_e, &acc_o);
        } else {
          block<false>(a, rowp, ox, cb, m, zp, &acc_e, &acc_o);
        }
        __m512 y0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_permutex2var_epi32(acc_e, idx_lo, acc_o)), s0);
        __m512 y1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_permutex2var_epi32(acc_e, idx_hi, acc_o)), s1);
        if (bias != nullptr) {
          y0 = _mm512_add_ps(y0, _mm512_loadu_ps(bias + cb));
          y1 = _mm512_add_ps(y1, _mm512_loadu_ps(bias + cb + 16));
        }
        if (relu) {  // maxps(0, y) returns y when y is NaN, as std::max(y, 0.0f) does
          y0 = _mm512_max_ps(zero, y0);
          y1 = _mm512_max_ps(zero, y1);
        }
        float* const o = orow + ox * c + cb;
        _mm512_mask_storeu_ps(o, m0, y0);
        _mm512_mask_storeu_ps(o + 16, m1, y1);
      }
    }
  }
}

}  // namespace avx512
}  // namespace kernels
}  // namespace lowbit
