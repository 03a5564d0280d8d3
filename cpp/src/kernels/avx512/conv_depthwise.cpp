// AVX-512 (BW) depthwise convolution kernel: 32 channels per step, the image bytes minus the zero
// point as int16 times the even-/odd-zeroed int16 weights on vpmaddwd (two int32 accumulators).
#include "kernels/conv_depthwise.hpp"

#include <immintrin.h>

namespace lowbit {
namespace kernels {
namespace avx512 {

// vpmaddwd against weights with every other channel zeroed gives exact int32 products (|x - z| <=
// 255, |w| <= 128) in a 32-bit lane per channel pair; two permutes restore channel order.
void conv2d_depthwise_f32_s8w_f32(const DwConvArgs& a, int64_t r0, int64_t r1) {
  const int64_t c = a.c, cp = a.c_pad, h = a.h, w = a.w, kh = a.kh, kw = a.kw;
  const __m512i zp = _mm512_set1_epi16(static_cast<int16_t>(a.zero_point));
  const __m512i idx_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i idx_hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512 zero = _mm512_setzero_ps();
  const float* const bias = a.bias;
  const bool relu = a.relu;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / a.ho, oy = r % a.ho;
    const uint8_t* const img = a.img + b * h * w * c;
    for (int64_t ox = 0; ox < a.wo; ++ox) {
      float* const o = a.out + ((b * a.ho + oy) * a.wo + ox) * c;
      for (int64_t cb = 0; cb < c; cb += 32) {
        const int64_t rem = c - cb;
        const __mmask32 m = rem >= 32 ? ~0u : ((1u << rem) - 1u);
        __m512i acc_e = _mm512_setzero_si512(), acc_o = _mm512_setzero_si512();
        for (int64_t ky = 0; ky < kh; ++ky) {
          const int64_t iy = oy * a.stride_h - a.pad_h + ky * a.dil_h;
          if (iy < 0 || iy >= h) continue;
          const uint8_t* const row = img + iy * w * c + cb;
          for (int64_t kx = 0; kx < kw; ++kx) {
            const int64_t ix = ox * a.stride_w - a.pad_w + kx * a.dil_w;
            if (ix < 0 || ix >= w) continue;
            const __m512i x = _mm512_sub_epi16(_mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, row + ix * c)), zp);
            const int64_t t = (ky * kw + kx) * cp + cb;
            acc_e = _mm512_add_epi32(acc_e, _mm512_madd_epi16(x, _mm512_loadu_si512(a.w_even + t)));
            acc_o = _mm512_add_epi32(acc_o, _mm512_madd_epi16(x, _mm512_loadu_si512(a.w_odd + t)));
          }
        }
        __m512 y0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_permutex2var_epi32(acc_e, idx_lo, acc_o)),
                                  _mm512_loadu_ps(a.scale + cb));
        __m512 y1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_permutex2var_epi32(acc_e, idx_hi, acc_o)),
                                  _mm512_loadu_ps(a.scale + cb + 16));
        if (bias != nullptr) {
          y0 = _mm512_add_ps(y0, _mm512_loadu_ps(bias + cb));
          y1 = _mm512_add_ps(y1, _mm512_loadu_ps(bias + cb + 16));
        }
        if (relu) {  // maxps(0, y) returns y when y is NaN, as std::max(y, 0.0f) does
          y0 = _mm512_max_ps(zero, y0);
          y1 = _mm512_max_ps(zero, y1);
        }
        const __mmask16 m0 = static_cast<__mmask16>(m), m1 = static_cast<__mmask16>(m >> 16);
        _mm512_mask_storeu_ps(o + cb, m0, y0);
        _mm512_mask_storeu_ps(o + cb + 16, m1, y1);
      }
    }
  }
}

}  // namespace avx512
}  // namespace kernels
}  // namespace lowbit
