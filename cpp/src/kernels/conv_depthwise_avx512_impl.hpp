// The pieces the AVX-512 depthwise kernels share (kernels/avx512: float output on vpmaddwd;
// kernels/avx512vnni: uint8 output on vpdpwssd): row pointers, the interior column range, the 32-channel
// tap loop and the 3x3 taps with register-resident weights, each over a Dot policy (int16 x int16
// pairs into int32 lanes). Included only by those kernel translation units, under their own flags.
#pragma once

#include <immintrin.h>

#include "kernels/conv_depthwise.hpp"

namespace lowbit {
namespace kernels {
namespace {

// Dot policies: acc + the pairwise int16 products of x and w, per int32 lane (exact: |x| <= 255 and
// |w| <= 128 in every use).
struct MaddDot {  // AVX-512 BW
  static __m512i acc(__m512i e, __m512i x, __m512i w) { return _mm512_add_epi32(e, _mm512_madd_epi16(x, w)); }
};
#if defined(__AVX512VNNI__)
struct DpwssdDot {  // AVX-512 VNNI
  static __m512i acc(__m512i e, __m512i x, __m512i w) { return _mm512_dpwssd_epi32(e, x, w); }
};
#endif

// Output columns whose window lies inside the image: [*lo, *hi).
inline void dw_interior_columns(const DwConvArgs& a, int64_t* lo, int64_t* hi) {
  const int64_t span = (a.kw - 1) * a.dil_w;
  int64_t ox_lo = (a.pad_w + a.stride_w - 1) / a.stride_w, ox_hi = 0;
  if (a.w - 1 - span + a.pad_w >= 0) ox_hi = (a.w - 1 - span + a.pad_w) / a.stride_w + 1;
  ox_lo = ox_lo < a.wo ? ox_lo : a.wo;
  ox_hi = ox_hi < a.wo ? ox_hi : a.wo;
  *lo = ox_lo;
  *hi = ox_hi < ox_lo ? ox_lo : ox_hi;
}

// The image row of each kernel row for output row r (nullptr: outside the image); a.kh <= 16.
inline void dw_row_pointers(const DwConvArgs& a, int64_t r, const uint8_t** rowp) {
  const int64_t b = r / a.ho, oy = r % a.ho;
  for (int64_t ky = 0; ky < a.kh; ++ky) {
    const int64_t iy = oy * a.stride_h - a.pad_h + ky * a.dil_h;
    rowp[ky] = (iy < 0 || iy >= a.h) ? nullptr : a.img + ((b * a.h + iy) * a.w) * a.c;
  }
}

// Image bytes of 32 channels (mask m) widened to int16, minus the zero point unless kSubZp is false.
template <bool kSubZp>
inline __m512i dw_load16(const uint8_t* p, __mmask32 m, __m512i zp) {
  const __m512i x = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, p));
  return kSubZp ? _mm512_sub_epi16(x, zp) : x;
}

// One 32-channel block of output pixel ox with the zero point subtracted per tap (any kernel size);
// kInterior: every kx is inside the image (no column checks). Accumulators in even / odd lanes.
template <bool kInterior, class Dot>
inline void dw_block(const DwConvArgs& a, const uint8_t* const* rowp, int64_t ox, int64_t cb, __mmask32 m, __m512i zp,
                     __m512i* acc_e, __m512i* acc_o) {
  const int64_t c = a.c, cp = a.c_pad, kw = a.kw, dxc = a.dil_w * a.c;
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
        if (ix < 0 || ix >= a.w) continue;
      }
      const __m512i x = dw_load16<true>(p, m, zp);
      e = Dot::acc(e, x, _mm512_loadu_si512(we));
      o = Dot::acc(o, x, _mm512_loadu_si512(wo));
    }
  }
  *acc_e = e;
  *acc_o = o;
}

// The 18 weight vectors of a 3x3 kernel for channels cb.. (other kernels: tap 0 nine times, in
// bounds and unused), loaded once per channel block so they stay in registers.
struct DwWeights3x3 {
  __m512i e[9], o[9];
  DwWeights3x3(const DwConvArgs& a, int64_t cb, bool is3) {
#pragma GCC unroll 9
    for (int t = 0; t < 9; ++t) {
      e[t] = _mm512_loadu_si512(a.w_even + (is3 ? t : 0) * a.c_pad + cb);
      o[t] = _mm512_loadu_si512(a.w_odd + (is3 ? t : 0) * a.c_pad + cb);
    }
  }
};

// The 9 taps of a 3x3 window inside the image (rows p0, p1, p2 at the window's first column).
template <bool kSubZp, class Dot>
inline void dw_taps3x3(const DwWeights3x3& wt, const uint8_t* p0, const uint8_t* p1, const uint8_t* p2, int64_t dxc,
                       __mmask32 m, __m512i zp, __m512i* acc_e, __m512i* acc_o) {
  const uint8_t* const rows[3] = {p0, p1, p2};
  __m512i e = _mm512_setzero_si512(), o = _mm512_setzero_si512();
#pragma GCC unroll 3
  for (int ky = 0; ky < 3; ++ky) {
#pragma GCC unroll 3
    for (int kx = 0; kx < 3; ++kx) {
      const __m512i x = dw_load16<kSubZp>(rows[ky] + kx * dxc, m, zp);
      e = Dot::acc(e, x, wt.e[ky * 3 + kx]);
      o = Dot::acc(o, x, wt.o[ky * 3 + kx]);
    }
  }
  *acc_e = e;
  *acc_o = o;
}

// Lane permutations putting the even / odd accumulators back in channel order (first and second 16).
inline __m512i dw_channels_lo(__m512i e, __m512i o) {
  return _mm512_permutex2var_epi32(e, _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), o);
}
inline __m512i dw_channels_hi(__m512i e, __m512i o) {
  return _mm512_permutex2var_epi32(e, _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31),
                                   o);
}

}  // namespace
}  // namespace kernels
}  // namespace lowbit
