// The float32 attention kernel (contract: lowbit/attention.hpp), written once with xsimd and
// compiled once per ISA (kernels/<isa>/attention.cpp).
//
// One task = query rows [i0, i1) of one (batch, head). Its keys are laid out once as K^T * scale
// (d rows of skp floats: a key per lane) and its values as dense rows (sk x dvp), both zero
// padded, so the two products are register-blocked outer products: 8 query rows x 2 vectors of
// keys (or value columns) accumulate in 16 registers, each step one broadcast per row and two
// vector loads. Between them each row's scores get the mask, their max and exp (a Cody-Waite
// reduction and a degree-6 polynomial, scaled by 2^n: ~2 ulp), and the row's 1/sum scales the
// output. Padded key lanes and causally hidden keys are -inf before the max; a row with every key
// hidden is all zeros.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <xsimd/xsimd.hpp>

#include "kernels/hreduce.hpp"
#include "lowbit/attention.hpp"

namespace lowbit {
namespace kernels {
namespace {

// What xsimd 8.1 lacks or does not fuse per ISA: a*b+c as one FMA instruction (its fma is a
// multiply and an add for these architectures), round to nearest integer, p * 2^n for
// integer-valued n >= -126 (exp's scaling step) and the horizontal sum.
template <class Arch>
struct Ops;

#if defined(__AVX2__)
template <>
struct Ops<xsimd::avx2> {
  using B = xsimd::batch<float, xsimd::avx2>;
  static B fma(const B& a, const B& b, const B& c) { return _mm256_fmadd_ps(a, b, c); }
  // lanes < n of p (0 < n < 8), the others 0, reading nothing past them
  static B load_first(const float* p, int64_t n) {
    return _mm256_maskload_ps(
        p, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  }
  // x in lanes < n, fill in the others
  static B keep_first(const B& x, int64_t n, const B& fill) {
    const __m256i keep =
        _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_blendv_ps(fill, x, _mm256_castsi256_ps(keep));
  }
  static B fnma(const B& a, const B& b, const B& c) { return _mm256_fnmadd_ps(a, b, c); }
  static B round(const B& x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static B scale(const B& p, const B& n) {
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return p * B(_mm256_castsi256_ps(e));
  }
  static float hsum(const B& v) { return kernels::hsum(v); }
  // r[i][j] <- r[j][i] for the 8 x 8 block of 8 vectors
  static void transpose(B* r) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; ++i)
      for (int h = 0; h < 2; ++h) {
        u[4 * i + h] = _mm256_shuffle_ps(t[4 * i + h], t[4 * i + h + 2], 0x44);
        u[4 * i + h + 2] = _mm256_shuffle_ps(t[4 * i + h], t[4 * i + h + 2], 0xEE);
      }
    // u[0]: columns 0 of rows 0-3 (lo) ... rows 0-3 in u[0..3], rows 4-7 in u[4..7], order 0, 2, 1, 3
    const int order[4] = {0, 2, 1, 3};
    for (int c = 0; c < 4; ++c) {
      r[c] = _mm256_permute2f128_ps(u[order[c]], u[4 + order[c]], 0x20);
      r[c + 4] = _mm256_permute2f128_ps(u[order[c]], u[4 + order[c]], 0x31);
    }
  }
};
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
template <>
struct Ops<xsimd::avx512bw> {
  using B = xsimd::batch<float, xsimd::avx512bw>;
  static B fma(const B& a, const B& b, const B& c) { return _mm512_fmadd_ps(a, b, c); }
  static B load_first(const float* p, int64_t n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
  }
  static B keep_first(const B& x, int64_t n, const B& fill) {
    return _mm512_mask_blend_ps(static_cast<__mmask16>((1u << n) - 1), fill, x);
  }
  static B fnma(const B& a, const B& b, const B& c) { return _mm512_fnmadd_ps(a, b, c); }
  static B round(const B& x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static B scale(const B& p, const B& n) { return _mm512_scalef_ps(p, n); }
  static float hsum(const B& v) { return kernels::hsum(v); }
  // r[i][j] <- r[j][i] for the 16 x 16 block of 16 vectors
  static void transpose(B* r) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // 4 x 4 blocks inside each 128-bit lane: u[4i + c'] holds column c' (0, 2, 1, 3 order) of rows 4i..4i+3
    for (int i = 0; i < 4; ++i)
      for (int h = 0; h < 2; ++h) {
        u[4 * i + h] = _mm512_shuffle_ps(t[4 * i + h], t[4 * i + h + 2], 0x44);
        u[4 * i + h + 2] = _mm512_shuffle_ps(t[4 * i + h], t[4 * i + h + 2], 0xEE);
      }
    // then the 128-bit lanes: lane l of the result row c comes from rows 4l..4l+3
    for (int i = 0; i < 4; ++i) {
      const int c = i == 1 ? 2 : i == 2 ? 1 : i;  // u index within a group for result column-in-lane i
      const __m512 a = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), b = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
      const __m512 e = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88),
                   f = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
      r[i] = _mm512_shuffle_f32x4(a, e, 0x88);
      r[i + 8] = _mm512_shuffle_f32x4(a, e, 0xDD);
      r[i + 4] = _mm512_shuffle_f32x4(b, f, 0x88);
      r[i + 12] = _mm512_shuffle_f32x4(b, f, 0xDD);
    }
  }
};
#endif

template <class Arch>
struct AttentionImpl {
  using B = xsimd::batch<float, Arch>;
  using O = Ops<Arch>;
  static constexpr int64_t W = static_cast<int64_t>(B::size);
  static constexpr int kRows = 8;            // query rows per block
  static constexpr int64_t kDirectRows = 4;  // up to this many rows per task: K and V used in place

  // exp(x) for x <= 0 or NaN (scores minus their row max); 0 below -87 (float underflow, and -inf).
  static B exp_neg(const B& x) {
    const B n = O::round(x * B(1.44269504088896341f));
    B r = O::fnma(n, B(0.693359375f), x);  // x - n ln2, ln2 in two parts
    r = O::fnma(n, B(-2.12194440e-4f), r);
    B p(1.9875691500e-4f);
    p = O::fma(p, r, B(1.3981999507e-3f));
    p = O::fma(p, r, B(8.3334519073e-3f));
    p = O::fma(p, r, B(4.1665795894e-2f));
    p = O::fma(p, r, B(1.6666665459e-1f));
    p = O::fma(p, r, B(5.0000001201e-1f));
    p = O::fma(p, r * r, r + B(1.0f));
    return xsimd::select(x < B(-87.0f), B(0.0f), O::scale(p, xsimd::max(n, B(-126.0f))));
  }

  // s[t][j] = q_t . kt[.][j] for R rows q (stride ldq), j < lim (a multiple of W).
  template <int R>
  static void scores(const float* q, int64_t ldq, const float* kt, int64_t skp, int64_t lim, int64_t d, float* s) {
    int64_t j = 0;
    for (; j + 2 * W <= lim; j += 2 * W) {
      B a0[R], a1[R];
      for (int t = 0; t < R; ++t) a0[t] = a1[t] = B(0.0f);
      for (int64_t c = 0; c < d; ++c) {
        const B k0 = B::load_aligned(kt + c * skp + j);
        const B k1 = B::load_aligned(kt + c * skp + j + W);
        for (int t = 0; t < R; ++t) {
          const B qv(q[t * ldq + c]);
          a0[t] = O::fma(qv, k0, a0[t]);
          a1[t] = O::fma(qv, k1, a1[t]);
        }
      }
      for (int t = 0; t < R; ++t) {
        a0[t].store_aligned(s + t * skp + j);
        a1[t].store_aligned(s + t * skp + j + W);
      }
    }
    if (j < lim) {  // one vector of keys left
      B a0[R];
      for (int t = 0; t < R; ++t) a0[t] = B(0.0f);
      for (int64_t c = 0; c < d; ++c) {
        const B k0 = B::load_aligned(kt + c * skp + j);
        for (int t = 0; t < R; ++t) a0[t] = O::fma(B(q[t * ldq + c]), k0, a0[t]);
      }
      for (int t = 0; t < R; ++t) a0[t].store_aligned(s + t * skp + j);
    }
  }

  // out_t[0..dv) = inv[t] * sum_j p[t][j] vb[j][.] for R rows (out stride ldo); vb rows of dvp.
  template <int R>
  static void weighted(const float* p, int64_t skp, const float* vb, int64_t dvp, int64_t sk, int64_t dv,
                       const float* inv, float* out, int64_t ldo) {
    for (int64_t c = 0; c < dvp; c += 2 * W) {
      B a0[R], a1[R];
      for (int t = 0; t < R; ++t) a0[t] = a1[t] = B(0.0f);
      for (int64_t j = 0; j < sk; ++j) {
        const B v0 = B::load_aligned(vb + j * dvp + c);
        const B v1 = B::load_aligned(vb + j * dvp + c + W);
        for (int t = 0; t < R; ++t) {
          const B pv(p[t * skp + j]);
          a0[t] = O::fma(pv, v0, a0[t]);
          a1[t] = O::fma(pv, v1, a1[t]);
        }
      }
      for (int t = 0; t < R; ++t) {
        const B f(inv[t]);
        float* o = out + t * ldo + c;
        if (c + 2 * W <= dv) {
          (a0[t] * f).store_unaligned(o);
          (a1[t] * f).store_unaligned(o + W);
        } else {
          alignas(64) float tmp[2 * W];
          (a0[t] * f).store_aligned(tmp);
          (a1[t] * f).store_aligned(tmp + W);
          std::memcpy(o, tmp, static_cast<size_t>(dv - c) * sizeof(float));
        }
      }
    }
  }

  // Row i's scores s[0, lim) (lim: a multiple of W covering the keys row i sees) -> exp(s - max)
  // in place, with the mask row added and hidden keys (causal, or past sk) -inf; returns 1 / sum
  // (0 when every key is hidden: the row is then zeros).
  static float softmax_row(const AttentionArgs& a, float* row, const float* mrow, int64_t i, int64_t lim) {
    const B ninf(-std::numeric_limits<float>::infinity());
    const int64_t seen = a.causal ? std::min(a.sk, i + 1) : a.sk;
    const int64_t full = seen / W * W, used = (seen + W - 1) / W * W;
    B mx = ninf;
    for (int64_t j = 0; j < full; j += W) {
      B x = B::load_aligned(row + j);
      if (mrow != nullptr) {
        x += B::load_unaligned(mrow + j);
        x.store_aligned(row + j);
      }
      mx = xsimd::max(mx, x);
    }
    if (full < seen) {  // the partial vector: lanes past seen hidden (the mask row is not read there)
      const int64_t rem = seen - full;
      B x = B::load_aligned(row + full);
      if (mrow != nullptr) x += O::load_first(mrow + full, rem);
      x = O::keep_first(x, rem, ninf);
      x.store_aligned(row + full);
      mx = xsimd::max(mx, x);
    }
    float mf = hmax(mx);
    mf = mf == -std::numeric_limits<float>::infinity() ? 0.0f : mf;  // every key hidden: p all 0, the row 0
    const B m(mf);
    B sum(0.0f);
    for (int64_t j = 0; j < used; j += W) {
      const B e = exp_neg(B::load_aligned(row + j) - m);
      e.store_aligned(row + j);
      sum += e;
    }
    for (int64_t j = used; j < lim; j += W) B(0.0f).store_aligned(row + j);  // hidden keys: p = 0
    const float total = O::hsum(sum);
    return total == 0.0f ? 0.0f : 1.0f / total;
  }

  template <int R>
  static void block(const AttentionArgs& a, const float* q, const float* mask, int64_t i0, const float* kt,
                    const float* vb, int64_t skp, int64_t dvp, float* s, float* out) {
    // causal: keys past the block's last row are hidden from all of it, so never computed
    const int64_t lim = a.causal ? std::min(skp, (i0 + R + W - 1) / W * W) : skp;
    scores<R>(q, a.q_ss, kt, skp, lim, a.d, s);
    float inv[kRows];
    for (int t = 0; t < R; ++t)
      inv[t] = softmax_row(a, s + t * skp, mask == nullptr ? nullptr : mask + t * a.m_ss, i0 + t, lim);
    weighted<R>(s, skp, vb, dvp, std::min(a.sk, lim), a.dv, inv, out, a.o_ss);
  }

  // One query row without laying out K or V (few rows per task: decoding against a cache), for
  // d = ND * W and dv = NV * W. Scores W keys at a time: one vector of products per key, the W
  // vectors transposed in registers and summed, so a vector holds the W dot products.
  template <int ND, int NV>
  static void row_direct(const AttentionArgs& a, const float* q, const float* k, const float* v, const float* mrow,
                         int64_t i, float* s, float* out) {
    const int64_t seen = a.causal ? std::min(a.sk, i + 1) : a.sk;
    const int64_t lim = (seen + W - 1) / W * W, jb = seen / W * W;
    B qv[ND];
    for (int c = 0; c < ND; ++c) qv[c] = B::load_unaligned(q + c * W);
    const B f(a.scale);
    for (int64_t j = 0; j < jb; j += W) {
      B acc[W];
      for (int64_t t = 0; t < W; ++t) {
        const float* kj = k + (j + t) * a.k_ss;
        B x = qv[0] * B::load_unaligned(kj);
        for (int c = 1; c < ND; ++c) x = O::fma(qv[c], B::load_unaligned(kj + c * W), x);
        acc[t] = x;
      }
      O::transpose(acc);
      B dot = acc[0];
      for (int64_t t = 1; t < W; ++t) dot += acc[t];
      (dot * f).store_aligned(s + j);
    }
    for (int64_t j = jb; j < seen; ++j) {
      const float* kj = k + j * a.k_ss;
      B x = qv[0] * B::load_unaligned(kj);
      for (int c = 1; c < ND; ++c) x = O::fma(qv[c], B::load_unaligned(kj + c * W), x);
      s[j] = O::hsum(x) * a.scale;
    }
    const float inv = softmax_row(a, s, mrow, i, lim);
    B acc[NV];
    for (int c = 0; c < NV; ++c) acc[c] = B(0.0f);
    for (int64_t j = 0; j < seen; ++j) {
      const B p(s[j]);
      const float* vj = v + j * a.v_ss;
      for (int c = 0; c < NV; ++c) acc[c] = O::fma(p, B::load_unaligned(vj + c * W), acc[c]);
    }
    for (int c = 0; c < NV; ++c) (acc[c] * B(inv)).store_unaligned(out + c * W);
  }

  template <int ND>
  static bool rows_direct_nd(const AttentionArgs& a, const float* q, const float* k, const float* v, const float* mask,
                             int64_t i0, int64_t i1, float* s, float* out) {
    auto fn = &row_direct<ND, 1>;
    switch (a.dv / W) {
      case 1:
        fn = &row_direct<ND, 1>;
        break;
      case 2:
        fn = &row_direct<ND, 2>;
        break;
      case 4:
        fn = &row_direct<ND, 4>;
        break;
      case 8:
        fn = &row_direct<ND, 8>;
        break;
      default:
        return false;
    }
    for (int64_t i = i0; i < i1; ++i)
      fn(a, q + i * a.q_ss, k, v, mask == nullptr ? nullptr : mask + i * a.m_ss, i, s, out + i * a.o_ss);
    return true;
  }

  // The direct path for rows [i0, i1) when the head sizes allow it; false otherwise.
  static bool rows_direct(const AttentionArgs& a, const float* q, const float* k, const float* v, const float* mask,
                          int64_t i0, int64_t i1, float* s, float* out) {
    if (a.d % W != 0 || a.dv % W != 0) return false;
    switch (a.d / W) {
      case 1:
        return rows_direct_nd<1>(a, q, k, v, mask, i0, i1, s, out);
      case 2:
        return rows_direct_nd<2>(a, q, k, v, mask, i0, i1, s, out);
      case 4:
        return rows_direct_nd<4>(a, q, k, v, mask, i0, i1, s, out);
      case 8:
        return rows_direct_nd<8>(a, q, k, v, mask, i0, i1, s, out);
      default:
        return false;
    }
  }

  // kt[c][j] = k[j][c] * scale for j < sk (key rows of stride ldk), 0 up to skp: W x W blocks
  // transposed in registers, each key row read once and contiguously (rows far apart in memory,
  // e.g. heads interleaved, would map to few cache sets if read column by column).
  static void transpose_keys(const float* k, int64_t ldk, int64_t sk, int64_t d, float scale, float* kt, int64_t skp) {
    const B f(scale);
    const int64_t jb = sk / W * W, cb = d / W * W;
    for (int64_t j = 0; j < jb; j += W) {
      for (int64_t c = 0; c < cb; c += W) {
        B r[W];
        for (int64_t t = 0; t < W; ++t) r[t] = B::load_unaligned(k + (j + t) * ldk + c) * f;
        O::transpose(r);
        for (int64_t t = 0; t < W; ++t) r[t].store_aligned(kt + (c + t) * skp + j);
      }
      for (int64_t t = j; t < j + W; ++t)
        for (int64_t c = cb; c < d; ++c) kt[c * skp + t] = k[t * ldk + c] * scale;
    }
    for (int64_t t = jb; t < sk; ++t)
      for (int64_t c = 0; c < d; ++c) kt[c * skp + t] = k[t * ldk + c] * scale;
    for (int64_t c = 0; c < d; ++c) std::fill(kt + c * skp + sk, kt + (c + 1) * skp, 0.0f);
  }

  using BlockFn = void (*)(const AttentionArgs&, const float*, const float*, int64_t, const float*, const float*,
                           int64_t, int64_t, float*, float*);
  static constexpr BlockFn kBlocks[kRows + 1] = {nullptr,   &block<1>, &block<2>, &block<3>, &block<4>,
                                                 &block<5>, &block<6>, &block<7>, &block<8>};

  // The keys that some row of [i0, i1) sees through the mask (mask rows of stride ldm): their
  // indices into idx, their count returned. flag: sk floats of scratch.
  static int64_t live_keys(const float* mask, int64_t ldm, int64_t i0, int64_t i1, int64_t sk, float* flag,
                           int32_t* idx) {
    const B ninf(-std::numeric_limits<float>::infinity()), one(1.0f), zero(0.0f);
    const int64_t jb = sk / W * W;
    for (int64_t j = 0; j < jb; j += W) one.store_unaligned(flag + j);
    for (int64_t j = jb; j < sk; ++j) flag[j] = 1.0f;
    const int64_t rows = ldm == 0 ? 1 : i1 - i0;  // a mask broadcast over the rows: one row
    for (int64_t i = 0; i < rows; ++i) {
      const float* m = mask + (i0 + i) * ldm;
      for (int64_t j = 0; j < jb; j += W) {  // flag stays 1 while every row hides the key (NaN: seen)
        const B hidden = xsimd::select(B::load_unaligned(m + j) == ninf, one, zero);
        xsimd::min(B::load_unaligned(flag + j), hidden).store_unaligned(flag + j);
      }
      for (int64_t j = jb; j < sk; ++j)
        if (!(m[j] == -std::numeric_limits<float>::infinity())) flag[j] = 0.0f;
    }
    int64_t n = 0;
    for (int64_t j = 0; j < sk; ++j)
      if (flag[j] == 0.0f) idx[n++] = static_cast<int32_t>(j);
    return n;
  }

  static void run(const AttentionArgs& a, int64_t bh, int64_t i0, int64_t i1, float* scratch) {
    const int64_t b = bh / a.heads, h = bh % a.heads, hk = h / (a.heads / a.kv_heads);
    const int64_t skp = (a.sk + W - 1) / W * W, dvp = (a.dv + 2 * W - 1) / (2 * W) * (2 * W);
    const float* k = a.k + b * a.k_sb + hk * a.k_sh;
    const float* v = a.v + b * a.v_sb + hk * a.v_sh;
    float* kt = scratch;                                       // d x skp: K^T * scale
    float* vb = kt + a.d * skp;                                // sk x dvp
    float* s = vb + a.sk * dvp;                                // kRows x skp scores
    float* kc = s + kRows * skp;                               // sk x d: the seen keys, gathered
    float* mc = kc + a.sk * a.d;                               // kRows x skp: the block's mask rows, gathered
    auto* idx = reinterpret_cast<int32_t*>(mc + kRows * skp);  // sk
    const float* q = a.q + b * a.q_sb + h * a.q_sh;
    const float* mask = a.mask == nullptr ? nullptr : a.mask + b * a.m_sb + h * a.m_sh;
    float* out = a.out + b * a.o_sb + h * a.o_sh;
    // a few rows: laying K and V out would cost more than using them where they are
    if (i1 - i0 <= kDirectRows && rows_direct(a, q, k, v, mask, i0, i1, s, out)) return;
    // Keys the mask hides (-inf) from every row of the task (padding) are left out: their weights
    // are exactly 0. Not with a causal mask (its rows see different keys by position).
    AttentionArgs e = a;
    const int64_t n = mask != nullptr && !a.causal ? live_keys(mask, a.m_ss, i0, i1, a.sk, s, idx) : a.sk;
    if (n == 0) {  // every key hidden from every row: zeros
      for (int64_t i = i0; i < i1; ++i) std::fill(out + i * a.o_ss, out + i * a.o_ss + a.dv, 0.0f);
      return;
    }
    const bool gather = n < a.sk;
    const int64_t skn = gather ? (n + W - 1) / W * W : skp;
    if (gather) {
      for (int64_t t = 0; t < n; ++t)
        std::memcpy(kc + t * a.d, k + idx[t] * a.k_ss, static_cast<size_t>(a.d) * sizeof(float));
      transpose_keys(kc, a.d, n, a.d, a.scale, kt, skn);
      e.sk = n;
      e.m_ss = a.m_ss == 0 ? 0 : skn;
      if (a.m_ss == 0)  // one mask row for all: gathered once
        for (int64_t j = 0; j < n; ++j) mc[j] = mask[idx[j]];
    } else {
      transpose_keys(k, a.k_ss, a.sk, a.d, a.scale, kt, skp);
    }
    for (int64_t t = 0; t < n; ++t) {
      std::memcpy(vb + t * dvp, v + (gather ? idx[t] : t) * a.v_ss, static_cast<size_t>(a.dv) * sizeof(float));
      std::fill(vb + t * dvp + a.dv, vb + (t + 1) * dvp, 0.0f);
    }
    for (int64_t i = i0; i < i1; i += kRows) {
      const int64_t r = std::min<int64_t>(kRows, i1 - i);
      const float* qi = q + i * a.q_ss;
      const float* mi = mask == nullptr ? nullptr : mask + i * a.m_ss;
      if (gather && a.m_ss != 0)
        for (int64_t t = 0; t < r; ++t)
          for (int64_t j = 0; j < n; ++j) mc[t * skn + j] = mi[t * a.m_ss + idx[j]];
      if (gather) mi = mc;
      kBlocks[r](e, qi, mi, i, kt, vb, skn, dvp, s, out + i * a.o_ss);
    }
  }
};

}  // namespace
}  // namespace kernels
}  // namespace lowbit

#define LOWBIT_DEFINE_ATTENTION_KERNELS(isa, arch)                                                 \
  namespace lowbit {                                                                               \
  namespace kernels {                                                                              \
  namespace isa {                                                                                  \
  void attention_f32(const AttentionArgs& a, int64_t bh, int64_t i0, int64_t i1, float* scratch) { \
    AttentionImpl<arch>::run(a, bh, i0, i1, scratch);                                              \
  }                                                                                                \
  }                                                                                                \
  }                                                                                                \
  }
