// AVX-512 VNNI depthwise convolution kernel with uint8 output (chained static layers), quantized in
// registers: 3x3 on vpdpbusd (4 bytes per int32 lane: an image column's three or four rows), other
// kernels 32 channels per step on vpdpwssd against the even-/odd-zeroed int16 weights.
#include "kernels/conv_depthwise.hpp"

#include <immintrin.h>

#include <vector>

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

// 4 vectors of 64 bytes (an image column of 4 rows) interleaved to 4 vectors of 16 dwords of 4
// bytes, lane 16 l + 4 j + k in dword l * 4 + k of vector j (vpunpck order, as wcol is stored).
inline void interleave4(__m512i t0, __m512i t1, __m512i t2, __m512i t3, __m512i* v) {
  const __m512i ab_lo = _mm512_unpacklo_epi8(t0, t1), ab_hi = _mm512_unpackhi_epi8(t0, t1);
  const __m512i cd_lo = _mm512_unpacklo_epi8(t2, t3), cd_hi = _mm512_unpackhi_epi8(t2, t3);
  v[0] = _mm512_unpacklo_epi16(ab_lo, cd_lo);
  v[1] = _mm512_unpackhi_epi16(ab_lo, cd_lo);
  v[2] = _mm512_unpacklo_epi16(ab_hi, cd_hi);
  v[3] = _mm512_unpackhi_epi16(ab_hi, cd_hi);
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

// How Requant64 quantizes (conv2d_depthwise_u8_s8w_u8 picks the fastest exact one).
enum class Epi { kFloat, kFloatNanFree, kInt16, kInt16Full };

// The output parameters of one 64-channel block (vpunpck order) and its requantization: acc (the
// sums of image bytes times taps, minus zero_point * sum(taps): the accumulators start there) to 64
// bytes in channel order.
struct Requant64 {
  __m512 s[4], b[4], inv, lo, hi;
  __m512i zw[4], ozp, ozp16, qlo16, qhi16;
  bool relu;
  Requant64(const DwConvArgs& a, int64_t pos) {
    for (int j = 0; j < 4; ++j) {
      s[j] = _mm512_loadu_ps(a.scale4 + pos + 16 * j);
      b[j] = a.bias4 != nullptr ? _mm512_loadu_ps(a.bias4 + pos + 16 * j) : _mm512_setzero_ps();
      zw[j] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(a.zp_wsum4 + pos + 16 * j));
    }
    inv = _mm512_set1_ps(a.out_inv);
    lo = _mm512_set1_ps(static_cast<float>(a.out_qmin - a.out_zero_point));
    hi = _mm512_set1_ps(static_cast<float>(a.out_qmax - a.out_zero_point));
    ozp = _mm512_set1_epi32(a.out_zero_point);
    ozp16 = _mm512_set1_epi16(static_cast<int16_t>(a.out_zero_point));
    qlo16 = _mm512_set1_epi16(static_cast<int16_t>(a.q_lo));
    qhi16 = _mm512_set1_epi16(static_cast<int16_t>(a.q_hi));
    relu = a.relu;
  }
  // kInt16 / kInt16Full (a.fast): t = y * inv rounds in int32 without overflow; the zero point is
  // added and the clamp applied on saturated int16, the same q as the float clamp (bounds are
  // integers, rounding is monotone) and ReLU is the bound max(qmin, zero point) (inv > 0); with
  // bounds 0 and 255 (kInt16Full) the final pack's saturation is the clamp. Otherwise
  // quantize16's steps (kFloatNanFree: no NaN possible).
  template <Epi kEpi>
  __m512i quantize(const __m512i* acc) const {
    if (kEpi == Epi::kInt16 || kEpi == Epi::kInt16Full) {
      __m512i q[4];
      for (int j = 0; j < 4; ++j) {
        const __m512 y = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc[j]), s[j]), b[j]);
        q[j] = _mm512_cvt_roundps_epi32(_mm512_mul_ps(y, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      }
      __m512i w0 = _mm512_adds_epi16(_mm512_packs_epi32(q[0], q[1]), ozp16);
      __m512i w1 = _mm512_adds_epi16(_mm512_packs_epi32(q[2], q[3]), ozp16);
      if (kEpi == Epi::kInt16) {
        w0 = _mm512_min_epi16(_mm512_max_epi16(w0, qlo16), qhi16);
        w1 = _mm512_min_epi16(_mm512_max_epi16(w1, qlo16), qhi16);
      }
      return _mm512_packus_epi16(w0, w1);  // per 128-bit lane: back to channel order
    }
    __m512i q[4];
    for (int j = 0; j < 4; ++j)
      q[j] = quantize16<kEpi == Epi::kFloatNanFree>(acc[j], s[j], b[j], relu, inv, lo, hi, ozp);
    return _mm512_packus_epi16(_mm512_packus_epi32(q[0], q[1]), _mm512_packus_epi32(q[2], q[3]));
  }
};

// Where image column x of row `row` (nullptr: outside the image) holds channels cb..: the 64 bytes of
// zero points zpb outside the image (they add (zp - zp) * w = 0 after the correction).
inline const uint8_t* column(const DwConvArgs& a, const uint8_t* row, int64_t x, int64_t cb, const uint8_t* zpb) {
  return (row == nullptr || x < 0 || x >= a.w) ? zpb : row + x * a.c + cb;
}

constexpr int64_t kChunk = 32;  // output pixels per batch of interleaved columns (L1-resident)

// Image column x, kernel row ky, channels cb.. (mask m) of R lane groups (64 / R bytes each, lane
// group g from its own rows rowp[g]) as one vector.
template <int R>
inline __m512i gather_rows(const DwConvArgs& a, const uint8_t* const (*rowp)[16], int ky, int64_t x, int64_t cb,
                           __mmask64 m, const uint8_t* zpb) {
  if constexpr (R == 1) {
    return _mm512_maskz_loadu_epi8(m, column(a, rowp[0][ky], x, cb, zpb));
  } else if constexpr (R == 2) {
    const __mmask32 m32 = static_cast<__mmask32>(m);
    const __m256i lo = _mm256_maskz_loadu_epi8(m32, column(a, rowp[0][ky], x, cb, zpb));
    const __m256i hi = _mm256_maskz_loadu_epi8(m32, column(a, rowp[1][ky], x, cb, zpb));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
  } else {
    const __mmask16 m16 = static_cast<__mmask16>(m);
    __m512i t = _mm512_castsi128_si512(_mm_maskz_loadu_epi8(m16, column(a, rowp[0][ky], x, cb, zpb)));
    t = _mm512_inserti32x4(t, _mm_maskz_loadu_epi8(m16, column(a, rowp[1][ky], x, cb, zpb)), 1);
    t = _mm512_inserti32x4(t, _mm_maskz_loadu_epi8(m16, column(a, rowp[2][ky], x, cb, zpb)), 2);
    return _mm512_inserti32x4(t, _mm_maskz_loadu_epi8(m16, column(a, rowp[3][ky], x, cb, zpb)), 3);
  }
}

// The R lane groups of b (mask m each) to dst[g] + o (nullptr: not stored); kStream (R == 2, whole
// aligned 32-byte pixels): non-temporal stores.
template <int R, bool kStream>
inline void scatter_rows(uint8_t* const* dst, int64_t o, __mmask64 m, __m512i b) {
  if constexpr (R == 1) {
    if (dst[0] != nullptr) _mm512_mask_storeu_epi8(dst[0] + o, m, b);
  } else if constexpr (R == 2) {
    const __m256i half[2] = {_mm512_castsi512_si256(b), _mm512_extracti64x4_epi64(b, 1)};
    for (int g = 0; g < 2; ++g) {
      if (dst[g] == nullptr) continue;
      if (kStream) {
        _mm256_stream_si256(reinterpret_cast<__m256i*>(dst[g] + o), half[g]);
      } else {
        _mm256_mask_storeu_epi8(dst[g] + o, static_cast<__mmask32>(m), half[g]);
      }
    }
  } else {
    const __m128i quarter[4] = {_mm512_castsi512_si128(b), _mm512_extracti32x4_epi32(b, 1),
                                _mm512_extracti32x4_epi32(b, 2), _mm512_extracti32x4_epi32(b, 3)};
    for (int g = 0; g < 4; ++g)
      if (dst[g] != nullptr) _mm_mask_storeu_epi8(dst[g] + o, static_cast<__mmask16>(m), quarter[g]);
  }
}

// Body: output rows [r0, r1), 64 bytes of channels from cb, 3x3 on vpdpbusd. Each image column the
// rows read is interleaved once into q, four image rows per dword: an output row's three kernel rows
// and the next image row, which with kPair (stride and dilation 1 along h) makes the next output
// row's window too (rows shifted by one; a zero byte otherwise). An output then takes 4 x 3 dot
// products against wcol (taps (0..2, kx) in bytes 0..2) and with kPair 4 x 3 more for the next
// row against the same taps in bytes 1..3. R > 1 (the channels [cb, c) are at most 64 / R): R
// output rows (pairs) share the vector, each in 64 / R bytes (rows past r1 read zero points and are
// not stored).
template <int R, bool kPair, Epi kEpi>
void body_rows(const DwConvArgs& a, int64_t r0, int64_t r1, int64_t cb, const uint8_t* zpb, uint8_t* q) {
  constexpr int64_t L = 64 / R;
  const int64_t tw = a.c - cb < L ? a.c - cb : L;
  const __mmask64 m = tw >= 64 ? ~0ull : (1ull << tw) - 1ull;
  const int8_t* const wc = a.wcol + (cb / 64) * 768;
  __m512i w[12], w2[kPair ? 12 : 1];
  for (int i = 0; i < 12; ++i) w[i] = _mm512_loadu_si512(wc + 64 * i);
  if (kPair)
    for (int i = 0; i < 12; ++i) w2[i] = _mm512_slli_epi32(w[i], 8);  // taps in bytes 1..3
  const Requant64 rq(a, cb);
  const int64_t sw = a.stride_w, step = a.dil_w * 256;
  // 32 channels in all and an output larger than the caches: non-temporal pixel stores
  const bool stream = R == 2 && a.c == 32 && a.stream_out && reinterpret_cast<uintptr_t>(a.out_u8) % 32 == 0;
  for (int64_t r = r0; r < r1;) {
    const uint8_t* rowp[R][16];  // lane group g: kernel rows of its first output row, then rowp[g][3]
    uint8_t* orow[2][R];         // lane group g's output rows orow[0][g], orow[1][g] (nullptr: none)
    for (int g = 0; g < R; ++g) {
      orow[0][g] = orow[1][g] = nullptr;
      rowp[g][0] = rowp[g][1] = rowp[g][2] = rowp[g][3] = nullptr;
      if (r >= r1) continue;
      dw_row_pointers(a, r, rowp[g]);
      orow[0][g] = a.out_u8 + (r - a.out_r0) * a.wo * a.c + cb;
      ++r;
      if (kPair && r < r1 && r % a.ho != 0) {  // the next output row, same image
        const uint8_t* next[16];
        dw_row_pointers(a, r, next);
        rowp[g][3] = next[2];
        orow[1][g] = a.out_u8 + (r - a.out_r0) * a.wo * a.c + cb;
        ++r;
      }
    }
    for (int64_t ox0 = 0; ox0 < a.wo; ox0 += kChunk) {
      const int64_t ox1 = ox0 + kChunk < a.wo ? ox0 + kChunk : a.wo;
      const int64_t xa = ox0 * sw - a.pad_w, xb = (ox1 - 1) * sw - a.pad_w + 2 * a.dil_w + 1;
      for (int64_t x = xa; x < xb; ++x) {
        __m512i v[4];
        for (int ky = 0; ky < (kPair ? 4 : 3); ++ky) v[ky] = gather_rows<R>(a, rowp, ky, x, cb, m, zpb);
        if (!kPair) v[3] = _mm512_setzero_si512();
        interleave4(v[0], v[1], v[2], v[3], v);
        uint8_t* const d = q + (x - xa) * 256;
        for (int j = 0; j < 4; ++j) _mm512_storeu_si512(d + 64 * j, v[j]);
      }
      for (int64_t ox = ox0; ox < ox1; ++ox) {
        const uint8_t* const p = q + (ox - ox0) * sw * 256;
        __m512i acc[4] = {rq.zw[0], rq.zw[1], rq.zw[2], rq.zw[3]};
        __m512i acc2[4] = {rq.zw[0], rq.zw[1], rq.zw[2], rq.zw[3]};
#pragma GCC unroll 3
        for (int kx = 0; kx < 3; ++kx)
#pragma GCC unroll 4
          for (int j = 0; j < 4; ++j) {
            const __m512i x = _mm512_loadu_si512(p + kx * step + 64 * j);
            acc[j] = _mm512_dpbusd_epi32(acc[j], x, w[kx * 4 + j]);
            if (kPair) acc2[j] = _mm512_dpbusd_epi32(acc2[j], x, w2[kx * 4 + j]);
          }
        for (int h = 0; h < (kPair ? 2 : 1); ++h) {
          const __m512i b = rq.quantize<kEpi>(h == 0 ? acc : acc2);
          if (stream) {
            scatter_rows<R, true>(orow[h], ox * a.c, m, b);
          } else {
            scatter_rows<R, false>(orow[h], ox * a.c, m, b);
          }
        }
      }
    }
  }
}

// The 3x3 kernel over output rows [r0, r1), in blocks of rows: each channel block over the rows
// (its weights and parameters loaded once), the tail (a.tail_rows output rows per vector) last.
template <bool kPair, Epi kEpi>
void rows3x3(const DwConvArgs& a, int64_t r0, int64_t r1) {
  alignas(64) uint8_t zpb[64];
  for (uint8_t& v : zpb) v = static_cast<uint8_t>(a.zero_point);
  std::vector<uint8_t> q(static_cast<size_t>(((kChunk - 1) * a.stride_w + 2 * a.dil_w + 1) * 256));
  // blocks of rows small enough to stay in cache across the channel blocks, each block's setup
  // spread over at least ~128 outputs
  const int64_t rows_per = ((128 + a.wo - 1) / a.wo + 7) / 8 * 8;
  for (int64_t rb = r0; rb < r1; rb += rows_per) {
    const int64_t re = rb + rows_per < r1 ? rb + rows_per : r1;
    for (int64_t cb = 0; cb < a.body_c; cb += 64) body_rows<1, kPair, kEpi>(a, rb, re, cb, zpb, q.data());
    if (a.tail_rows == 2) body_rows<2, kPair, kEpi>(a, rb, re, a.body_c, zpb, q.data());
    if (a.tail_rows == 4) body_rows<4, kPair, kEpi>(a, rb, re, a.body_c, zpb, q.data());
  }
  if (a.stream_out) _mm_sfence();  // the non-temporal stores before the caller joins
}

}  // namespace

// 3x3 kernels with prepared weights (a.wcol): rows3x3 (vpdpbusd, zero points as image bytes,
// corrected once per output). Others: 32 channels per step on vpdpwssd, windows inside the image
// without the per-tap zero-point subtraction (corrected once per output), the rest per tap; kernel
// rows through up to 16 row pointers (taller: the reference).
void conv2d_depthwise_u8_s8w_u8(const DwConvArgs& a, int64_t r0, int64_t r1) {
  if (a.kh == 3 && a.kw == 3 && a.wcol != nullptr) {
    // pairs of output rows share their interleaved columns where they read adjacent image rows
    const bool pair = a.stride_h == 1 && a.dil_h == 1;
    if (a.fast && a.q_lo == 0 && a.q_hi == 255) {
      pair ? rows3x3<true, Epi::kInt16Full>(a, r0, r1) : rows3x3<false, Epi::kInt16Full>(a, r0, r1);
    } else if (a.fast) {
      pair ? rows3x3<true, Epi::kInt16>(a, r0, r1) : rows3x3<false, Epi::kInt16>(a, r0, r1);
    } else if (a.nan_free) {
      pair ? rows3x3<true, Epi::kFloatNanFree>(a, r0, r1) : rows3x3<false, Epi::kFloatNanFree>(a, r0, r1);
    } else {
      pair ? rows3x3<true, Epi::kFloat>(a, r0, r1) : rows3x3<false, Epi::kFloat>(a, r0, r1);
    }
    return;
  }
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
