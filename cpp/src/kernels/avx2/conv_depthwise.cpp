// AVX2 depthwise convolution kernel: 16 channels per step on vpmaddwd as the AVX-512 kernel; the
// last c % 16 channels take the reference's per-output step (same integers, same float steps).
#include "kernels/conv_depthwise.hpp"

#include <immintrin.h>

#include "reference/conv_depthwise.hpp"

namespace lowbit {
namespace kernels {
namespace avx2 {

void conv2d_depthwise_f32_s8w_f32(const DwConvArgs& a, int64_t r0, int64_t r1) {
  const int64_t c = a.c, cp = a.c_pad, h = a.h, w = a.w, kh = a.kh, kw = a.kw;
  const int64_t c16 = c / 16 * 16;
  const __m256i zp = _mm256_set1_epi16(static_cast<int16_t>(a.zero_point));
  const __m256 zero = _mm256_setzero_ps();
  const float* const bias = a.bias;
  const bool relu = a.relu;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / a.ho, oy = r % a.ho;
    const uint8_t* const img = a.img + b * h * w * c;
    for (int64_t ox = 0; ox < a.wo; ++ox) {
      float* const o = a.out + ((r - a.out_r0) * a.wo + ox) * c;
      for (int64_t cb = 0; cb < c16; cb += 16) {
        __m256i acc_e = _mm256_setzero_si256(), acc_o = _mm256_setzero_si256();
        for (int64_t ky = 0; ky < kh; ++ky) {
          const int64_t iy = oy * a.stride_h - a.pad_h + ky * a.dil_h;
          if (iy < 0 || iy >= h) continue;
          const uint8_t* const row = img + iy * w * c + cb;
          for (int64_t kx = 0; kx < kw; ++kx) {
            const int64_t ix = ox * a.stride_w - a.pad_w + kx * a.dil_w;
            if (ix < 0 || ix >= w) continue;
            const __m256i x = _mm256_sub_epi16(
                _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + ix * c))), zp);
            const int64_t t = (ky * kw + kx) * cp + cb;
            acc_e = _mm256_add_epi32(
                acc_e, _mm256_madd_epi16(x, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.w_even + t))));
            acc_o = _mm256_add_epi32(
                acc_o, _mm256_madd_epi16(x, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.w_odd + t))));
          }
        }
        // lane j of acc_e / acc_o is channel 2j / 2j + 1: interleave within 128-bit halves, then swap halves
        const __m256i lo = _mm256_unpacklo_epi32(acc_e, acc_o), hi = _mm256_unpackhi_epi32(acc_e, acc_o);
        __m256 y0 =
            _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_permute2x128_si256(lo, hi, 0x20)), _mm256_loadu_ps(a.scale + cb));
        __m256 y1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_permute2x128_si256(lo, hi, 0x31)),
                                  _mm256_loadu_ps(a.scale + cb + 8));
        if (bias != nullptr) {
          y0 = _mm256_add_ps(y0, _mm256_loadu_ps(bias + cb));
          y1 = _mm256_add_ps(y1, _mm256_loadu_ps(bias + cb + 8));
        }
        if (relu) {  // maxps(0, y) returns y when y is NaN, as std::max(y, 0.0f) does
          y0 = _mm256_max_ps(zero, y0);
          y1 = _mm256_max_ps(zero, y1);
        }
        _mm256_storeu_ps(o + cb, y0);
        _mm256_storeu_ps(o + cb + 8, y1);
      }
      for (int64_t ch = c16; ch < c; ++ch) o[ch] = lowbit::detail::dw_conv_one(a, b, oy, ox, ch);
    }
  }
}

}  // namespace avx2
}  // namespace kernels
}  // namespace lowbit
