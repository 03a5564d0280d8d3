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
  static B fnma(const B& a, const B& b, const B& c) { return _mm256_fnmadd_ps(a, b, c); }
  static B round(const B& x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static B scale(const B& p, const B& n) {
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return p * B(_mm256_castsi256_ps(e));
  }
  static float hsum(const B& v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
};
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
template <>
struct Ops<xsimd::avx512bw> {
  using B = xsimd::batch<float, xsimd::avx512bw>;
  static B fma(const B& a, const B& b, const B& c) { return _mm512_fmadd_ps(a, b, c); }
  static B fnma(const B& a, const B& b, const B& c) { return _mm512_fnmadd_ps(a, b, c); }
  static B round(const B& x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static B scale(const B& p, const B& n) { return _mm512_scalef_ps(p, n); }
  static float hsum(const B& v) { return _mm512_reduce_add_ps(v); }
};
#endif

template <class Arch>
struct AttentionImpl {
  using B = xsimd::batch<float, Arch>;
  using O = Ops<Arch>;
  static constexpr int64_t W = static_cast<int64_t>(B::size);
  static constexpr int kRows = 8;  // query rows per block

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

  // s[t][j..j+2W) = q_t . kt[.][j..] for R rows q (stride ldq), all j < skp.
  template <int R>
  static void scores(const float* q, int64_t ldq, const float* kt, int64_t skp, int64_t d, float* s) {
    for (int64_t j = 0; j < skp; j += 2 * W) {
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

  template <int R>
  static void block(const AttentionArgs& a, const float* q, const float* mask, int64_t i0, const float* kt,
                    const float* vb, int64_t skp, int64_t dvp, float* s, float* out) {
    scores<R>(q, a.q_ss, kt, skp, a.d, s);
    const float ninf = -std::numeric_limits<float>::infinity();
    float inv[kRows];
    for (int t = 0; t < R; ++t) {
      float* row = s + t * skp;
      // keys past the row (causal) or past sk (padding) are hidden
      const int64_t seen = a.causal ? std::min(a.sk, i0 + t + 1) : a.sk;
      B mx(ninf);
      int64_t j = 0;
      if (mask != nullptr) {
        const float* mrow = mask + t * a.m_ss;
        for (; j + W <= seen; j += W) {
          const B x = B::load_aligned(row + j) + B::load_unaligned(mrow + j);
          x.store_aligned(row + j);
          mx = xsimd::max(mx, x);
        }
        for (; j < seen; ++j) row[j] += mrow[j];
      } else {
        for (; j + W <= seen; j += W) mx = xsimd::max(mx, B::load_aligned(row + j));
      }
      for (int64_t i = seen; i < skp; ++i) row[i] = ninf;
      for (; j < skp; j += W) mx = xsimd::max(mx, B::load_aligned(row + j));  // the partial vector
      float mf = hmax(mx);
      mf = mf == ninf ? 0.0f : mf;  // every key hidden: all p are 0, and so is the row
      const B m(mf);
      B sum(0.0f);
      for (j = 0; j < skp; j += W) {
        const B e = exp_neg(B::load_aligned(row + j) - m);
        e.store_aligned(row + j);
        sum += e;
      }
      const float total = O::hsum(sum);
      inv[t] = total == 0.0f ? 0.0f : 1.0f / total;
    }
    weighted<R>(s, skp, vb, dvp, a.sk, a.dv, inv, out, a.o_ss);
  }

  static void run(const AttentionArgs& a, int64_t bh, int64_t i0, int64_t i1, float* scratch) {
    const int64_t b = bh / a.heads, h = bh % a.heads, hk = h / (a.heads / a.kv_heads);
    const int64_t skp = (a.sk + 2 * W - 1) / (2 * W) * (2 * W), dvp = (a.dv + 2 * W - 1) / (2 * W) * (2 * W);
    const float* k = a.k + b * a.k_sb + hk * a.k_sh;
    const float* v = a.v + b * a.v_sb + hk * a.v_sh;
    float* kt = scratch;         // d x skp: K^T * scale
    float* vb = kt + a.d * skp;  // sk x dvp
    float* s = vb + a.sk * dvp;  // kRows x skp scores
    // key by key: each key row is read once, contiguously (rows far apart in memory, e.g. heads
    // interleaved, would map to few cache sets if read column by column)
    for (int64_t j = 0; j < a.sk; ++j) {
      const float* kj = k + j * a.k_ss;
      for (int64_t c = 0; c < a.d; ++c) kt[c * skp + j] = kj[c] * a.scale;
    }
    for (int64_t c = 0; c < a.d; ++c) std::fill(kt + c * skp + a.sk, kt + (c + 1) * skp, 0.0f);
    for (int64_t j = 0; j < a.sk; ++j) {
      std::memcpy(vb + j * dvp, v + j * a.v_ss, static_cast<size_t>(a.dv) * sizeof(float));
      std::fill(vb + j * dvp + a.dv, vb + (j + 1) * dvp, 0.0f);
    }
    const float* q = a.q + b * a.q_sb + h * a.q_sh;
    const float* mask = a.mask == nullptr ? nullptr : a.mask + b * a.m_sb + h * a.m_sh;
    float* out = a.out + b * a.o_sb + h * a.o_sh;
    for (int64_t i = i0; i < i1; i += kRows) {
      const float* qi = q + i * a.q_ss;
      const float* mi = mask == nullptr ? nullptr : mask + i * a.m_ss;
      float* oi = out + i * a.o_ss;
      switch (std::min<int64_t>(kRows, i1 - i)) {
        case 8:
          block<8>(a, qi, mi, i, kt, vb, skp, dvp, s, oi);
          break;
        case 7:
          block<7>(a, qi, mi, i, kt, vb, skp, dvp, s, oi);
          break;
        case 6:
          block<6>(a, qi, mi, i, kt, vb, skp, dvp, s, oi);
          break;
        case 5:
          block<5>(a, qi, mi, i, kt, vb, skp, dvp, s, oi);
          break;
        case 4:
          block<4>(a, qi, mi, i, kt, vb, skp, dvp, s, oi);
          break;
        case 3:
          block<3>(a, qi, mi, i, kt, vb, skp, dvp, s, oi);
          break;
        case 2:
          block<2>(a, qi, mi, i, kt, vb, skp, dvp, s, oi);
          break;
        default:
          block<1>(a, qi, mi, i, kt, vb, skp, dvp, s, oi);
          break;
      }
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
