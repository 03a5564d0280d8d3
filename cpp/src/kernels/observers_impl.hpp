// Reduction kernels behind the observers (min/max, per-channel min/max, histogram), written once
// with xsimd and compiled once per ISA (kernels/<isa>/observers.cpp). Contracts: lowbit/observers.hpp.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <xsimd/xsimd.hpp>

#include "kernels/hreduce.hpp"
#include "lowbit/observers.hpp"
#include "reference/observers.hpp"

namespace lowbit {
namespace kernels {
namespace {

template <class Arch>
struct ObserversImpl {
  using fb = xsimd::batch<float, Arch>;
  static constexpr int64_t W = static_cast<int64_t>(fb::size);
  // Non-finite elements are counted in float lanes (one blend + add, no mask-to-int conversion,
  // which xsimd 8.1 lacks); a lane stays exact below 2^24, so counters are flushed well before.
  static constexpr int64_t kFlushLaneCount = int64_t{1} << 22;

  static float reduce_min(const fb& v) {
    alignas(64) float t[64];
    v.store_aligned(t);
    float m = t[0];
    for (int64_t k = 1; k < W; ++k) m = t[k] < m ? t[k] : m;
    return m;
  }
  static float reduce_max(const fb& v) {
    alignas(64) float t[64];
    v.store_aligned(t);
    float m = t[0];
    for (int64_t k = 1; k < W; ++k) m = t[k] > m ? t[k] : m;
    return m;
  }
  static int64_t reduce_count(const fb& v) {
    alignas(64) float t[64];
    v.store_aligned(t);
    int64_t s = 0;
    for (int64_t k = 0; k < W; ++k) s += static_cast<int64_t>(t[k]);
    return s;
  }

  // Exact path: non-finite lanes are blended out of the reduction and counted.
  static int64_t minmax_exact(const float* x, int64_t n, float* mn, float* mx) {
    const fb inf(INFINITY), ninf(-INFINITY), zero(0.0f), one(1.0f);
    // Two independent chains per reduction hide the min/max latency.
    fb lo0(*mn), lo1(*mn), hi0(*mx), hi1(*mx);
    int64_t bad = 0;
    int64_t i = 0;
    while (n - i >= 2 * W) {
      const int64_t block = std::min((n - i) / (2 * W), kFlushLaneCount);
      const int64_t end = i + block * 2 * W;
      fb cnt0(0.0f), cnt1(0.0f);
      for (; i < end; i += 2 * W) {
        const fb a = fb::load_unaligned(x + i);
        const fb b = fb::load_unaligned(x + i + W);
        const auto fa = xsimd::abs(a) < inf;
        const auto fbm = xsimd::abs(b) < inf;
        lo0 = xsimd::min(lo0, xsimd::select(fa, a, inf));
        hi0 = xsimd::max(hi0, xsimd::select(fa, a, ninf));
        lo1 = xsimd::min(lo1, xsimd::select(fbm, b, inf));
        hi1 = xsimd::max(hi1, xsimd::select(fbm, b, ninf));
        cnt0 = cnt0 + xsimd::select(fa, zero, one);
        cnt1 = cnt1 + xsimd::select(fbm, zero, one);
      }
      bad += reduce_count(cnt0 + cnt1);
    }
    float lo = reduce_min(xsimd::min(lo0, lo1));
    float hi = reduce_max(xsimd::max(hi0, hi1));
    bad += ref::minmax_f32(x + i, n - i, &lo, &hi);
    *mn = lo;
    *mx = hi;
    return bad;
  }

  // Fast path over blocks of kBlock elements: four independent min and max chains; the data is the
  // first operand of min/max, so a NaN lane keeps the accumulator (x86 min/max return the second
  // operand when either is NaN) and one unordered compare per two vectors flags it. A block that
  // held a NaN or reached +-inf (rare) is redone by the exact path, which counts them. The loop
  // prefetches kPrefetch bytes ahead: the hardware prefetchers stop at every 4 KiB page, and on
  // arrays beyond the caches that lost a quarter of the read bandwidth.
  static int64_t minmax(const float* x, int64_t n, float* mn, float* mx) {
    constexpr int64_t kBlock = 1 << 14;
    constexpr int64_t kPrefetch = 8192;
    constexpr int64_t kStep = 4 * W;
    float lo = *mn, hi = *mx;
    int64_t bad = 0;
    int64_t i = 0;
    const fb inf(INFINITY), ninf(-INFINITY);
    while (n - i >= kStep) {
      const int64_t len = std::min(kBlock, (n - i) / kStep * kStep);
      fb lo0 = inf, lo1 = inf, lo2 = inf, lo3 = inf;
      fb hi0 = ninf, hi1 = ninf, hi2 = ninf, hi3 = ninf;
      auto nan = xsimd::batch_bool<float, Arch>(false);
      const float* p = x + i;
      for (int64_t j = 0; j < len; j += kStep) {
        for (int64_t q = 0; q < kStep; q += 16)  // one per 64-byte line
          _mm_prefetch(reinterpret_cast<const char*>(p + j + q) + kPrefetch, _MM_HINT_T0);
        const fb a = fb::load_unaligned(p + j);
        const fb b = fb::load_unaligned(p + j + W);
        const fb c = fb::load_unaligned(p + j + 2 * W);
        const fb d = fb::load_unaligned(p + j + 3 * W);
        nan = nan | unordered(a, b) | unordered(c, d);
        lo0 = xsimd::min(a, lo0);
        hi0 = xsimd::max(a, hi0);
        lo1 = xsimd::min(b, lo1);
        hi1 = xsimd::max(b, hi1);
        lo2 = xsimd::min(c, lo2);
        hi2 = xsimd::max(c, hi2);
        lo3 = xsimd::min(d, lo3);
        hi3 = xsimd::max(d, hi3);
      }
      const float blo = hmin(xsimd::min(xsimd::min(lo0, lo1), xsimd::min(lo2, lo3)));
      const float bhi = hmax(xsimd::max(xsimd::max(hi0, hi1), xsimd::max(hi2, hi3)));
      // An all-NaN block leaves blo = +inf, bhi = -inf: the NaN flag catches it.
      if (xsimd::any(nan) || blo == -INFINITY || bhi == INFINITY) {
        bad += minmax_exact(p, len, &lo, &hi);
      } else {
        lo = blo < lo ? blo : lo;
        hi = bhi > hi ? bhi : hi;
      }
      i += len;
    }
    bad += minmax_exact(x + i, n - i, &lo, &hi);
    *mn = lo;
    *mx = hi;
    return bad;
  }

  static int64_t minmax_per_channel_exact(const float* x, int64_t rows, int64_t cols, int64_t row_stride, float* mn,
                                          float* mx) {
    const fb inf(INFINITY), ninf(-INFINITY), zero(0.0f), one(1.0f);
    const int64_t vec_cols = cols - cols % W;
    const int64_t lanes_per_row = vec_cols / W;
    int64_t bad = 0;
    int64_t pending = 0;  // upper bound of any lane's count since the last flush
    fb cnt(0.0f);
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = x + r * row_stride;
      // Accumulators live in mn/mx (L1-resident for typical channel counts); rows stream through.
      for (int64_t c = 0; c < vec_cols; c += W) {
        const fb v = fb::load_unaligned(row + c);
        const auto f = xsimd::abs(v) < inf;
        xsimd::min(fb::load_unaligned(mn + c), xsimd::select(f, v, inf)).store_unaligned(mn + c);
        xsimd::max(fb::load_unaligned(mx + c), xsimd::select(f, v, ninf)).store_unaligned(mx + c);
        cnt = cnt + xsimd::select(f, zero, one);
      }
      pending += lanes_per_row;
      if (pending >= kFlushLaneCount) {
        bad += reduce_count(cnt);
        cnt = fb(0.0f);
        pending = 0;
      }
      if (vec_cols < cols)
        bad += ref::minmax_per_channel_f32(row + vec_cols, 1, cols - vec_cols, 0, mn + vec_cols, mx + vec_cols);
    }
    return bad + reduce_count(cnt);
  }

  // Fast path over blocks of (64 rows x 1024 columns): plain vertical min/max plus a NaN flag. The
  // block's accumulators are saved first (on the stack); if the block held a NaN or let +-inf into
  // the accumulators (max -> +inf or min -> -inf), they are restored and the block is redone by
  // the exact path. Tail columns always take the exact scalar path.
  static int64_t minmax_per_channel(const float* x, int64_t rows, int64_t cols, int64_t row_stride, float* mn,
                                    float* mx) {
    constexpr int64_t kCols = 1024, kRows = 64;
    alignas(64) float save_lo[kCols];
    alignas(64) float save_hi[kCols];
    const fb inf(INFINITY), ninf(-INFINITY);
    int64_t bad = 0;
    for (int64_t c0 = 0; c0 < cols; c0 += kCols) {
      const int64_t cn = std::min(kCols, cols - c0);
      const int64_t vec = cn - cn % W;
      float* lo = mn + c0;
      float* hi = mx + c0;
      for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
        const int64_t rn = std::min(kRows, rows - r0);
        const float* xb = x + r0 * row_stride + c0;
        for (int64_t c = 0; c < vec; ++c) {
          save_lo[c] = lo[c];
          save_hi[c] = hi[c];
        }
        auto nan = xsimd::isnan(inf);
        for (int64_t r = 0; r < rn; ++r) {
          const float* row = xb + r * row_stride;
          for (int64_t c = 0; c < vec; c += W) {
            const fb v = fb::load_unaligned(row + c);
            xsimd::min(fb::load_unaligned(lo + c), v).store_unaligned(lo + c);
            xsimd::max(fb::load_unaligned(hi + c), v).store_unaligned(hi + c);
            nan = nan | xsimd::isnan(v);
          }
          if (vec < cn) bad += ref::minmax_per_channel_f32(row + vec, 1, cn - vec, 0, lo + vec, hi + vec);
        }
        auto escaped = nan;
        for (int64_t c = 0; c < vec; c += W)
          escaped = escaped | (fb::load_unaligned(lo + c) == ninf) | (fb::load_unaligned(hi + c) == inf);
        if (xsimd::any(escaped)) {
          for (int64_t c = 0; c < vec; ++c) {
            lo[c] = save_lo[c];
            hi[c] = save_hi[c];
          }
          bad += minmax_per_channel_exact(xb, rn, vec, row_stride, lo, hi);
        }
      }
    }
    return bad;
  }

  // Slot indices of one vector (see detail::histogram_slot), and the finite values into lo / hi.
  struct HistConsts {
    fb s, b, top, slot_bad, slot_zero;
    xsimd::batch<int32_t, Arch> islot_bad, islot_zero;
    xsimd::batch<int32_t, Arch> way_offset;  // lane l counts into copy l % kHistogramWays
  };
  static void slots(const fb& v, const HistConsts& k, fb& lo, fb& hi, int32_t* out) {
#if defined(__AVX512F__)
    if constexpr (std::is_same<Arch, xsimd::avx512bw>::value) {
      // floor(x * s) - base as floor(x * s - base) of one fused multiply-subtract rounded toward
      // -inf: the exact value's floor is kept (rounding down never crosses an integer that is
      // representable), a tiny negative product no longer underflows to -0, and a huge one
      // saturates instead of becoming inf; after the clamp to [0, bins - 1] the slot equals
      // detail::histogram_slot's for every finite x.
      const __m512 vv = v;
      __m512 z = _mm512_fmsub_round_ps(vv, k.s, k.b, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
      z = _mm512_min_ps(_mm512_max_ps(z, _mm512_setzero_ps()), k.top);  // NaN -> 0, replaced below
      __m512i t = _mm512_cvt_roundps_epi32(z, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
      const __mmask16 nonfinite = _mm512_fpclass_ps_mask(vv, 0x99);  // QNaN, +inf, -inf, SNaN
      const __mmask16 zero = _mm512_fpclass_ps_mask(vv, 0x06);       // +0, -0
      t = _mm512_mask_mov_epi32(t, zero, k.islot_zero);
      t = _mm512_mask_mov_epi32(t, nonfinite, k.islot_bad);
      t = _mm512_add_epi32(t, k.way_offset);
      const __mmask16 finite = _knot_mask16(nonfinite);
      lo = _mm512_mask_min_ps(lo, finite, vv, lo);
      hi = _mm512_mask_max_ps(hi, finite, vv, hi);
      _mm512_store_si512(out, t);
      return;
    }
#endif
    const fb inf(INFINITY), ninf(-INFINITY), zero(0.0f), dmin(1e-45f);
    // Same underflow guard as detail::histogram_slot: a negative product never floors to 0.
    fb t = xsimd::floor(v * k.s - xsimd::select(v < zero, dmin, zero)) - k.b;
    t = xsimd::min(xsimd::max(t, zero), k.top);
    t = xsimd::select(v == zero, k.slot_zero, t);
    const auto finite = xsimd::abs(v) < inf;
    t = xsimd::select(finite, t, k.slot_bad);
    lo = xsimd::min(lo, xsimd::select(finite, v, inf));
    hi = xsimd::max(hi, xsimd::select(finite, v, ninf));
    (xsimd::nearbyint_as_int(t) + k.way_offset).store_aligned(out);
  }

  static xsimd::batch<int32_t, Arch> way_offsets(int64_t stride) {
    alignas(64) int32_t o[64];
    for (int64_t l = 0; l < W; ++l) o[l] = static_cast<int32_t>(l % kHistogramWays * stride);
    return xsimd::batch<int32_t, Arch>::load_aligned(o);
  }

  // Slot indices are computed 32 elements at a time, then counted with scalar increments into
  // kHistogramWays copies (AVX2 / AVX-512 F have no conflict-free scatter-add). The increments
  // run at about one element per cycle from L1 (bound by committing one scattered store per
  // cycle, whatever the bin distribution), so the loop is software-pipelined: the slots of round
  // k + 1 are computed while round k is counted (13% faster than computing then counting each
  // round). The input is prefetched ahead: the increments keep the out-of-order window too busy
  // to run far enough ahead on its own.
  static void histogram(const float* x, int64_t n, float scale, float base, int64_t bins, uint32_t* counts, float* mn,
                        float* mx) {
    static_assert(W % kHistogramWays == 0, "a vector holds whole rounds of the copies");
    constexpr int64_t kRound = 32;
    constexpr int64_t kVecs = kRound / W;
    constexpr int64_t kPrefetch = 4096;
    const HistConsts k{fb(scale),
                       fb(base),
                       fb(static_cast<float>(bins - 1)),
                       fb(static_cast<float>(bins)),
                       fb(static_cast<float>(bins + 1)),
                       xsimd::batch<int32_t, Arch>(static_cast<int32_t>(bins)),
                       xsimd::batch<int32_t, Arch>(static_cast<int32_t>(bins + 1)),
                       way_offsets(bins + 2)};
    fb lo(*mn), hi(*mx), lo1(*mn), hi1(*mx);
    alignas(64) int32_t idx[2][kRound];  // slot + copy offset of every element, double-buffered
    auto compute = [&](const float* p, int32_t* out) {
      for (int64_t v = 0; v < kVecs; v += 2) {  // two min/max chains
        for (int64_t q = 0; q < 2 * W; q += 16)
          _mm_prefetch(reinterpret_cast<const char*>(p + v * W + q) + kPrefetch, _MM_HINT_T0);
        slots(fb::load_unaligned(p + v * W), k, lo, hi, out + v * W);
        slots(fb::load_unaligned(p + (v + 1) * W), k, lo1, hi1, out + (v + 1) * W);
      }
    };
    auto count = [&](const int32_t* in) {
      for (int64_t j = 0; j < kRound; j += 4) {
        ++counts[in[j]];
        ++counts[in[j + 1]];
        ++counts[in[j + 2]];
        ++counts[in[j + 3]];
      }
    };
    int64_t i = 0;
    if (n >= kRound) {
      compute(x, idx[0]);
      int cur = 0;
      for (i = kRound; i + kRound <= n; i += kRound) {
        compute(x + i, idx[cur ^ 1]);
        count(idx[cur]);
        cur ^= 1;
      }
      count(idx[cur]);
    }
    float lo_s = hmin(xsimd::min(lo, lo1)), hi_s = hmax(xsimd::max(hi, hi1));
    ref::histogram_f32(x + i, n - i, scale, base, bins, counts, &lo_s, &hi_s);
    *mn = lo_s;
    *mx = hi_s;
  }
};

}  // namespace
}  // namespace kernels
}  // namespace lowbit

// Defines the lowbit::kernels::<ns> entry points for Arch in the including translation unit.
#define LOWBIT_DEFINE_OBSERVER_KERNELS(ns, Arch)                                                                    \
  namespace lowbit {                                                                                                \
  namespace kernels {                                                                                               \
  namespace ns {                                                                                                    \
  int64_t minmax_f32(const float* x, int64_t n, float* mn, float* mx) {                                             \
    return ObserversImpl<Arch>::minmax(x, n, mn, mx);                                                               \
  }                                                                                                                 \
  int64_t minmax_per_channel_f32(const float* x, int64_t rows, int64_t cols, int64_t row_stride, float* mn,         \
                                 float* mx) {                                                                       \
    return ObserversImpl<Arch>::minmax_per_channel(x, rows, cols, row_stride, mn, mx);                              \
  }                                                                                                                 \
  void histogram_f32(const float* x, int64_t n, float scale, float base, int64_t bins, uint32_t* counts, float* mn, \
                     float* mx) {                                                                                   \
    ObserversImpl<Arch>::histogram(x, n, scale, base, bins, counts, mn, mx);                                        \
  }                                                                                                                 \
  }                                                                                                                 \
  }                                                                                                                 \
  }
