// AVX-512 (BW) depthwise convolution kernel: 32 channels per step, the image bytes minus the zero
// point as int16 times the even-/odd-zeroed int16 weights on vpmaddwd (two int32 accumulators).
#include "kernels/conv_depthwise.hpp"

#include <immintrin.h>

#include "kernels/conv_depthwise_avx512_impl.hpp"
#include "reference/conv_depthwise.hpp"

namespace lowbit {
namespace kernels {
namespace avx512 {

// vpmaddwd against weights with every other channel zeroed gives exact int32 products (|x - z| <=
// 255, |w| <= 128) in a 32-bit lane per channel pair; two permutes restore channel order. Kernel
// rows are reached through up to 16 row pointers (taller kernels take the reference).
void conv2d_depthwise_f32_s8w_f32(const DwConvArgs& a, int64_t r0, int64_t r1) {
  if (a.kh > 16) {
    ref::conv2d_depthwise_f32_s8w_f32(a, r0, r1);
    return;
  }
  const int64_t c = a.c;
  const __m512i zp = _mm512_set1_epi16(static_cast<int16_t>(a.zero_point));
  const __m512 zero = _mm512_setzero_ps();
  const float* const bias = a.bias;
  const bool relu = a.relu;
  const bool is3 = a.kh == 3 && a.kw == 3;
  int64_t ox_lo, ox_hi;
  dw_interior_columns(a, &ox_lo, &ox_hi);
  const uint8_t* rowp[16];
  for (int64_t r = r0; r < r1; ++r) {
    dw_row_pointers(a, r, rowp);
    float* const orow = a.out + (r - a.out_r0) * a.wo * c;
    // 3x3 with all three rows inside the image: the weights stay in registers
    const bool k3 = is3 && rowp[0] != nullptr && rowp[1] != nullptr && rowp[2] != nullptr;
    for (int64_t cb = 0; cb < c; cb += 32) {
      const int64_t rem = c - cb;
      const __mmask32 m = rem >= 32 ? ~0u : ((1u << rem) - 1u);
      const __mmask16 m0 = static_cast<__mmask16>(m), m1 = static_cast<__mmask16>(m >> 16);
      const __m512 s0 = _mm512_loadu_ps(a.scale + cb), s1 = _mm512_loadu_ps(a.scale + cb + 16);
      const DwWeights3x3 wt(a, cb, is3);
      const int64_t dxc = a.dil_w * c;
      for (int64_t ox = 0; ox < a.wo; ++ox) {
        __m512i acc_e, acc_o;
        if (k3 && ox >= ox_lo && ox < ox_hi) {
          const int64_t off = (ox * a.stride_w - a.pad_w) * c + cb;
          dw_taps3x3<true, MaddDot>(wt, rowp[0] + off, rowp[1] + off, rowp[2] + off, dxc, m, zp, &acc_e, &acc_o);
        } else if (ox >= ox_lo && ox < ox_hi) {
          dw_block<true, MaddDot>(a, rowp, ox, cb, m, zp, &acc_e, &acc_o);
        } else {
          dw_block<false, MaddDot>(a, rowp, ox, cb, m, zp, &acc_e, &acc_o);
        }
        __m512 y0 = _mm512_mul_ps(_mm512_cvtepi32_ps(dw_channels_lo(acc_e, acc_o)), s0);
        __m512 y1 = _mm512_mul_ps(_mm512_cvtepi32_ps(dw_channels_hi(acc_e, acc_o)), s1);
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
