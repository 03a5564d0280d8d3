// AVX-512 VNNI depthwise convolution kernel with uint8 output (chained static layers): 32 channels
// per step, taps on vpdpwssd against the even-/odd-zeroed int16 weights, quantized in registers.
#include "kernels/conv_depthwise.hpp"

#include <immintrin.h>

#include "kernels/conv_depthwise_avx512_impl.hpp"
#include "reference/conv_depthwise.hpp"

namespace lowbit {
namespace kernels {
namespace avx512vnni {

namespace {

// y = float(acc) * scale (+ bias) (ReLU), then quantize_one(y, inv, zp, qmin, qmax): the float steps
// of the reference in its order, NaN -> 0 before the clamp, round half to even; 16 bytes stored.
inline void store_u8(__m512i acc, __m512 s, const float* bias, bool relu, __m512 inv, __m512 lo, __m512 hi, __m512i zp,
                     __mmask16 m, uint8_t* dst) {
  __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), s);
  if (bias != nullptr) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m, bias));
  if (relu) y = _mm512_max_ps(_mm512_setzero_ps(), y);  // maxps(0, NaN) = NaN, as std::max(y, 0.0f)
  __m512 t = _mm512_mul_ps(y, inv);
  t = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(t, t, _CMP_ORD_Q), t);  // NaN -> 0
  t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);
  const __m512i q = _mm512_add_epi32(_mm512_cvt_roundps_epi32(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), zp);
  _mm_mask_storeu_epi8(dst, m, _mm512_cvtepi32_epi8(q));
}

// Bytes of 4 taps (64 channels each) interleaved to 4 vectors of 16 channels x 4 taps, channel
// 16 l + 4 j + k in dword l * 4 + k of vector j (vpunpck order, as w4 is stored).
inline void dot4(__m512i t0, __m512i t1, __m512i t2, __m512i t3, const int8_t* w, __m512i* acc) {
  const __m512i ab_lo = _mm512_unpacklo_epi8(t0, t1), ab_hi = _mm512_unpackhi_epi8(t0, t1);
  const __m512i cd_lo = _mm512_unpacklo_epi8(t2, t3), cd_hi = _mm512_unpackhi_epi8(t2, t3);
  acc[0] = _mm512_dpbusd_epi32(acc[0], _mm512_unpacklo_epi16(ab_lo, cd_lo), _mm512_loadu_si512(w));
  acc[1] = _mm512_dpbusd_epi32(acc[1], _mm512_unpackhi_epi16(ab_lo, cd_lo), _mm512_loadu_si512(w + 64));
  acc[2] = _mm512_dpbusd_epi32(acc[2], _mm512_unpacklo_epi16(ab_hi, cd_hi), _mm512_loadu_si512(w + 128));
  acc[3] = _mm512_dpbusd_epi32(acc[3], _mm512_unpackhi_epi16(ab_hi, cd_hi), _mm512_loadu_si512(w + 192));
}

// The uint8 epilogue of 16 channels in registers (store_u8's steps) without the store: q in [qmin, qmax].
template <bool kNanFree>
inline __m512i quantize16(__m512i acc, __m512 s, __m512 bias, bool relu, __m512 inv, __m512 lo, __m512 hi, __m512i zp) {
  __m512 y = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), s), bias);
  if (relu) y = _mm512_max_ps(_mm512_setzero_ps(), y);
  __m512 t = _mm512_mul_ps(y, inv);
  if (!kNanFree) t = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(t, t, _CMP_ORD_Q), t);
  t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);
  return _mm512_add_epi32(_mm512_cvt_roundps_epi32(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), zp);
}

// 3x3 outputs [ox0, ox1) of one row, 64 channels from cb (mask m of them) on vpdpbusd: taps
// (0, 1, 2, 3), (4, 5, 6, 7), (8) as three 4-tap groups; the zero point once per output. kChecked:
// taps outside the image (a missing row: nullptr; columns outside [0, w)) read bytes equal to the
// zero point, which add (zp - zp) * w = 0 after the correction; otherwise every window is inside.
template <bool kNanFree, bool kChecked>
void row_dot4(const DwConvArgs& a, const uint8_t* const* rowp, int64_t ox0, int64_t ox1, int64_t cb, __mmask64 m,
              uint8_t* orow) {
  const int64_t c = a.c, dxc = a.dil_w * c;
  const int8_t* const w = a.w4 + (cb / 64) * 3 * 256;
  __m512 s[4], bv[4];
  __m512i zw[4];
  for (int j = 0; j < 4; ++j) {
    s[j] = _mm512_loadu_ps(a.scale4 + cb + 16 * j);
    bv[j] = a.bias4 != nullptr ? _mm512_loadu_ps(a.bias4 + cb + 16 * j) : _mm512_setzero_ps();
    zw[j] = _mm512_loadu_si512(a.zp_wsum4 + cb + 16 * j);
  }
  const __m512 inv = _mm512_set1_ps(a.out_inv);
  const __m512 lo = _mm512_set1_ps(static_cast<float>(a.out_qmin - a.out_zero_point));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(a.out_qmax - a.out_zero_point));
  const __m512i ozp = _mm512_set1_epi32(a.out_zero_point);
  const __m512i zero = _mm512_setzero_si512();
  const __m512i izp = _mm512_set1_epi8(static_cast<char>(a.zero_point));
  const bool relu = a.relu;
  const int64_t step = a.pair32 ? 2 : 1;
  for (int64_t ox = ox0; ox < ox1; ox += step) {
    const int64_t ix0 = ox * a.stride_w - a.pad_w;
    __m512i x[9];
    for (int ky = 0; ky < 3; ++ky)
      for (int kx = 0; kx < 3; ++kx) {
        const int64_t ix = ix0 + kx * a.dil_w;
        if (kChecked && (rowp[ky] == nullptr || ix < 0 || ix >= a.w)) {
          x[ky * 3 + kx] = izp;
        } else {
          x[ky * 3 + kx] = _mm512_maskz_loadu_epi8(m, rowp[ky] + ix0 * c + cb + kx * dxc);
        }
      }
    __m512i acc[4] = {zero, zero, zero, zero};
    dot4(x[0], x[1], x[2], x[3], w, acc);
    dot4(x[4], x[5], x[6], x[7], w + 256, acc);
    dot4(x[8], zero, zero, zero, w + 512, acc);
    __m512i q[4];
    for (int j = 0; j < 4; ++j)
      q[j] = quantize16<kNanFree>(_mm512_sub_epi32(acc[j], zw[j]), s[j], bv[j], relu, inv, lo, hi, ozp);
    // packus per 128-bit lane turns the vpunpck order back into channel order (values are in [0, 255])
    const __m512i b = _mm512_packus_epi16(_mm512_packus_epi32(q[0], q[1]), _mm512_packus_epi32(q[2], q[3]));
    _mm512_mask_storeu_epi8(orow + ox * c + cb, m, b);
  }
}

}  // namespace

// 3x3 windows inside the image skip the per-tap zero-point subtraction: the image bytes (0..255) go
// straight into vpdpwssd and zero_point * sum(taps) is subtracted once per output (exact in int32);
// other windows take the per-tap form. Kernel rows through up to 16 row pointers (taller: the
// reference).
void conv2d_depthwise_u8_s8w_u8(const DwConvArgs& a, int64_t r0, int64_t r1) {
  if (a.kh > 16) {
    ref::conv2d_depthwise_u8_s8w_u8(a, r0, r1);
    return;
  }
  const int64_t c = a.c;
  const __m512i zp = _mm512_set1_epi16(static_cast<int16_t>(a.zero_point));
  const __m512 inv = _mm512_set1_ps(a.out_inv);
  const __m512 lo = _mm512_set1_ps(static_cast<float>(a.out_qmin - a.out_zero_point));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(a.out_qmax - a.out_zero_point));
  const __m512i ozp = _mm512_set1_epi32(a.out_zero_point);
  const float* const bias = a.bias;
  const bool relu = a.relu;
  int64_t ox_lo, ox_hi;
  dw_interior_columns(a, &ox_lo, &ox_hi);
  const bool is3 = a.kh == 3 && a.kw == 3;
  const uint8_t* rowp[16];
  for (int64_t r = r0; r < r1; ++r) {
    dw_row_pointers(a, r, rowp);
    uint8_t* const orow = a.out_u8 + (r - a.out_r0) * a.wo * c;
    const bool k3 = is3 && rowp[0] != nullptr && rowp[1] != nullptr && rowp[2] != nullptr;
    // vpdpbusd: with more than 32 channels every output of the row (borders with zero-point taps);
    // with pair32 the interior pairs [ox_lo, ox_done) of rows inside the image
    const bool all4 = is3 && a.w4 != nullptr && !a.pair32;
    const int64_t ox_done = a.pair32 ? ox_lo + (ox_hi - ox_lo) / 2 * 2 : ox_hi;
    const bool dot4_row = k3 && a.w4 != nullptr && ox_lo < ox_done;
    if (all4) {
      for (int64_t cb = 0; cb < c; cb += 64) {
        const int64_t rem = c - cb;
        const __mmask64 m = rem >= 64 ? ~0ull : ((1ull << rem) - 1ull);
        if (a.nan_free) {
          if (k3) {
            row_dot4<true, true>(a, rowp, 0, ox_lo, cb, m, orow);
            row_dot4<true, false>(a, rowp, ox_lo, ox_hi, cb, m, orow);
            row_dot4<true, true>(a, rowp, ox_hi, a.wo, cb, m, orow);
          } else {
            row_dot4<true, true>(a, rowp, 0, a.wo, cb, m, orow);
          }
        } else {
          row_dot4<false, true>(a, rowp, 0, a.wo, cb, m, orow);
        }
      }
      continue;
    }
    if (dot4_row) {
      for (int64_t cb = 0; cb < c; cb += 64) {
        const __mmask64 m = ~0ull;  // pair32: two pixels of 32 channels
        if (a.nan_free) {
          row_dot4<true, false>(a, rowp, ox_lo, ox_done, cb, m, orow);
        } else {
          row_dot4<false, false>(a, rowp, ox_lo, ox_done, cb, m, orow);
        }
      }
    }
    for (int64_t cb = 0; cb < c; cb += 32) {
      const int64_t rem = c - cb;
      const __mmask32 m = rem >= 32 ? ~0u : ((1u << rem) - 1u);
      const __mmask16 m0 = static_cast<__mmask16>(m), m1 = static_cast<__mmask16>(m >> 16);
      const __m512 s0 = _mm512_loadu_ps(a.scale + cb), s1 = _mm512_loadu_ps(a.scale + cb + 16);
      const __m512i zw0 = _mm512_loadu_si512(a.zp_wsum + cb), zw1 = _mm512_loadu_si512(a.zp_wsum + cb + 16);
      const float* const bias0 = bias != nullptr ? bias + cb : nullptr;
      const float* const bias1 = bias != nullptr ? bias + cb + 16 : nullptr;
      const DwWeights3x3 wt(a, cb, is3);
      const int64_t dxc = a.dil_w * c;
      for (int64_t ox = 0; ox < a.wo; ++ox) {
        if (dot4_row && ox == ox_lo) ox = ox_done;  // done above
        if (ox >= a.wo) break;
        __m512i v0, v1;
        if (k3 && ox >= ox_lo && ox < ox_hi) {
          const int64_t off = (ox * a.stride_w - a.pad_w) * c + cb;
          __m512i e, o;
          dw_taps3x3<false, DpwssdDot>(wt, rowp[0] + off, rowp[1] + off, rowp[2] + off, dxc, m, zp, &e, &o);
          v0 = _mm512_sub_epi32(dw_channels_lo(e, o), zw0);
          v1 = _mm512_sub_epi32(dw_channels_hi(e, o), zw1);
        } else {
          __m512i e, o;
          if (ox >= ox_lo && ox < ox_hi) {
            dw_block<true, DpwssdDot>(a, rowp, ox, cb, m, zp, &e, &o);
          } else {
            dw_block<false, DpwssdDot>(a, rowp, ox, cb, m, zp, &e, &o);
          }
          v0 = dw_channels_lo(e, o);
          v1 = dw_channels_hi(e, o);
        }
        uint8_t* const dst = orow + ox * c + cb;
        store_u8(v0, s0, bias0, relu, inv, lo, hi, ozp, m0, dst);
        store_u8(v1, s1, bias1, relu, inv, lo, hi, ozp, m1, dst + 16);
      }
    }
  }
}

}  // namespace avx512vnni
}  // namespace kernels
}  // namespace lowbit
