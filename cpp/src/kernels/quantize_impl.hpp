// Quantize/dequantize row kernels, written once with xsimd and compiled once per ISA
// (kernels/<isa>/quantize.cpp instantiates them). Contracts: lowbit/quantize.hpp.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <xsimd/xsimd.hpp>

#include "kernels/arch_traits.hpp"
#include "lowbit/quantize.hpp"
#include "reference/scalar.hpp"

namespace lowbit {
namespace kernels {
namespace {

template <class Arch>
struct QuantizeImpl {
  using fb = xsimd::batch<float, Arch>;
  using ib = xsimd::batch<int32_t, Arch>;
  using Traits = ArchTraits<Arch>;
  static constexpr int64_t W = static_cast<int64_t>(fb::size);

  static ib iota() {
    alignas(64) static const int32_t k[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    return ib::load_aligned(k);
  }

  // Software prefetch of the input kPrefetch bytes ahead, one per 64-byte line: the hardware
  // prefetchers stop at every 4 KiB page, which cost a large array ~10-20% of the read rate.
  static void prefetch_ahead(const float* p) {
    constexpr int64_t kPrefetch = 4096;
    for (int64_t q = 0; q < W; q += 16) _mm_prefetch(reinterpret_cast<const char*>(p + q) + kPrefetch, _MM_HINT_T0);
  }

  // mix32 on int32 lanes: arithmetic shifts are masked to behave as logical ones.
  static ib mix32(ib x) {
    x = x ^ ((x >> 16) & ib(0xffff));
    x = x * ib(static_cast<int32_t>(0x7feb352du));
    x = x ^ ((x >> 15) & ib(0x1ffff));
    x = x * ib(static_cast<int32_t>(0x846ca68bu));
    x = x ^ ((x >> 16) & ib(0xffff));
    return x;
  }

  // Element i's quantized value (int32 lanes), for W consecutive elements starting at x.
  template <bool kStochastic>
  static ib quantize_vec(const fb& xv, const fb& inv, const ib& zp, const fb& lo, const fb& hi, const ib& lo_idx,
                         const ib& key) {
    fb y = xv * inv;
    y = xsimd::select(xsimd::isnan(y), fb(0.0f), y);
    if (kStochastic) {
      ib bits = (mix32(lo_idx ^ key) >> 8) & ib(0xffffff);
      fb u = xsimd::to_float(bits) * fb(1.0f / 16777216.0f);
      y = xsimd::floor(y + u);
    }
    y = xsimd::min(xsimd::max(y, lo), hi);
    return xsimd::nearbyint_as_int(y) + zp;
  }

  // Calls emit(i, int32 lanes) for full vectors and tail(i) for the scalar rest, handling the
  // per-element/shared parameter split and the stochastic counter blocks.
  template <bool kStochastic, class Emit, class Tail>
  static void run_quantize(const float* x, int64_t n, const AffineRow& p, const Rounding& r, Emit emit, Tail tail) {
    int64_t i = 0;
    while (i < n) {
      // A stochastic counter block never crosses a 2^32 boundary of the element index.
      uint64_t c0 = r.counter + static_cast<uint64_t>(i);
      uint32_t hi32 = static_cast<uint32_t>(c0 >> 32);
      int64_t block_end = n;
      if (kStochastic) {
        uint64_t next = (static_cast<uint64_t>(hi32) + 1) << 32;
        if (next - c0 < static_cast<uint64_t>(n - i)) block_end = i + static_cast<int64_t>(next - c0);
      }
      const uint32_t key_s = kStochastic ? detail::stream_key(r.seed, hi32) : 0u;
      const ib key(static_cast<int32_t>(key_s));
      const ib lane = iota();
      if (!p.per_element) {
        const fb inv(p.inv_scale[0]);
        const ib zp(p.zero_point[0]);
        const fb lo(static_cast<float>(p.qmin - p.zero_point[0]));
        const fb hi(static_cast<float>(p.qmax - p.zero_point[0]));
        for (; i + W <= block_end; i += W) {
          prefetch_ahead(x + i);
          ib idx = ib(static_cast<int32_t>(static_cast<uint32_t>(r.counter + static_cast<uint64_t>(i)))) + lane;
          emit(i, quantize_vec<kStochastic>(fb::load_unaligned(x + i), inv, zp, lo, hi, idx, key));
        }
      } else {
        const fb qmin(static_cast<float>(p.qmin)), qmax(static_cast<float>(p.qmax));
        for (; i + W <= block_end; i += W) {
          ib zp = ib::load_unaligned(p.zero_point + i);
          fb zpf = xsimd::to_float(zp);
          ib idx = ib(static_cast<int32_t>(static_cast<uint32_t>(r.counter + static_cast<uint64_t>(i)))) + lane;
          emit(i, quantize_vec<kStochastic>(fb::load_unaligned(x + i), fb::load_unaligned(p.inv_scale + i), zp,
                                            qmin - zpf, qmax - zpf, idx, key));
        }
      }
      for (; i < block_end; ++i) tail(i, key_s);
    }
  }

  // Entry points: split per-group runs into their groups (inlined, no per-group call).
  template <class T>
  static void quantize(const float* x, int64_t n, const AffineRow& p, const Rounding& r, T* q) {
    if (!p.per_element && p.group > 0 && p.group % W == 0 && !r.stochastic) {
      quantize_groups(x, n, p, r, q);
      return;
    }
    detail::for_each_param_run(n, p, [&](int64_t b, int64_t e, const AffineRow& pg) {
      Rounding rg = r;
      rg.counter += static_cast<uint64_t>(b);
      quantize_run(x + b, e - b, pg, rg, q + b);
    });
  }

  // Round-to-nearest over whole groups of a multiple of W elements: the group's constants are
  // broadcast once and its vectors run back to back (per-group runs through run_quantize cost a
  // setup and a tail check per 128 elements). Partial groups at either end take quantize_run.
  template <class T>
  static void quantize_groups(const float* x, int64_t n, const AffineRow& p, const Rounding& r, T* q) {
    AffineRow g = p;
    g.group = 0;
    g.group_phase = 0;
    int64_t b = 0;
    if (p.group_phase != 0) {
      b = std::min(n, p.group - p.group_phase);
      quantize_run(x, b, g, r, q);
      ++g.scale;
      ++g.inv_scale;
      ++g.zero_point;
    }
    if (p.group == 128) {
      b = full_groups<128>(x, b, n, p, g, q);
    } else {
      b = full_groups<0>(x, b, n, p, g, q);
    }
    if (b < n) quantize_run(x + b, n - b, g, r, q + b);
  }

  // Whole groups from element b on (kGroup: the group size at compile time, or 0); advances g past
  // them and returns the end.
  template <int64_t kGroup, class T>
  static int64_t full_groups(const float* x, int64_t b, int64_t n, const AffineRow& p, AffineRow& g, T* q) {
    const int64_t group = kGroup > 0 ? kGroup : p.group;
    const ib unused(0);
    const fb qmin(static_cast<float>(p.qmin)), qmax(static_cast<float>(p.qmax));
    // Local copies: the byte stores to q may alias anything, so fields read through g or p would be
    // reloaded after every store.
    const float* inv_p = g.inv_scale;
    const int32_t* zp_p = g.zero_point;
    const int64_t groups = (n - b) / group;
    for (int64_t k = 0; k < groups; ++k, b += group) {
      // The parameters are a second, slower stream: fetch them a few groups ahead too.
      _mm_prefetch(reinterpret_cast<const char*>(inv_p + k + 32), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(zp_p + k + 32), _MM_HINT_T0);
      const fb inv(inv_p[k]);
      const ib zp(zp_p[k]);
      const fb zpf = xsimd::to_float(zp);
      const fb lo = qmin - zpf, hi = qmax - zpf;
      const float* xs = x + b;
      T* qs = q + b;
      for (int64_t j = 0; j < group; j += W) {
        prefetch_ahead(xs + j);
        Traits::store_bytes(quantize_vec<false>(fb::load_unaligned(xs + j), inv, zp, lo, hi, unused, unused), qs + j);
      }
    }
    g.scale += groups;
    g.inv_scale += groups;
    g.zero_point += groups;
    return b;
  }

  static void fake_quantize(const float* x, int64_t n, const AffineRow& p, const Rounding& r, float* out) {
    detail::for_each_param_run(n, p, [&](int64_t b, int64_t e, const AffineRow& pg) {
      Rounding rg = r;
      rg.counter += static_cast<uint64_t>(b);
      fake_quantize_run(x + b, e - b, pg, rg, out + b);
    });
  }

  template <class T, class Load>
  static void dequantize(const T* q, int64_t n, const AffineRow& p, float* out, bool stream, Load load) {
    detail::for_each_param_run(n, p, [&](int64_t b, int64_t e, const AffineRow& pg) {
      dequantize_run(q + b, e - b, pg, out + b, stream && pg.group <= 0 && e - b == n, load);
    });
  }

  template <class T>
  static void quantize_run(const float* x, int64_t n, const AffineRow& p, const Rounding& r, T* q) {
    auto emit = [&](int64_t i, const ib& v) { Traits::store_bytes(v, q + i); };
    auto tail = [&](int64_t i, uint32_t key) {
      const int64_t j = p.per_element ? i : 0;
      if (r.stochastic) {
        float u = detail::uniform01(static_cast<uint32_t>(r.counter + static_cast<uint64_t>(i)), key);
        q[i] =
            static_cast<T>(detail::quantize_one_stochastic(x[i], p.inv_scale[j], p.zero_point[j], p.qmin, p.qmax, u));
      } else {
        q[i] = static_cast<T>(detail::quantize_one(x[i], p.inv_scale[j], p.zero_point[j], p.qmin, p.qmax));
      }
    };
    if (r.stochastic) {
      run_quantize<true>(x, n, p, r, emit, tail);
    } else {
      run_quantize<false>(x, n, p, r, emit, tail);
    }
  }

  static void fake_quantize_run(const float* x, int64_t n, const AffineRow& p, const Rounding& r, float* out) {
    auto emit = [&](int64_t i, const ib& v) {
      fb scale = p.per_element ? fb::load_unaligned(p.scale + i) : fb(p.scale[0]);
      ib zp = p.per_element ? ib::load_unaligned(p.zero_point + i) : ib(p.zero_point[0]);
      (xsimd::to_float(v - zp) * scale).store_unaligned(out + i);
    };
    auto tail = [&](int64_t i, uint32_t key) {
      const int64_t j = p.per_element ? i : 0;
      int32_t v;
      if (r.stochastic) {
        float u = detail::uniform01(static_cast<uint32_t>(r.counter + static_cast<uint64_t>(i)), key);
        v = detail::quantize_one_stochastic(x[i], p.inv_scale[j], p.zero_point[j], p.qmin, p.qmax, u);
      } else {
        v = detail::quantize_one(x[i], p.inv_scale[j], p.zero_point[j], p.qmin, p.qmax);
      }
      out[i] = detail::dequantize_one(v, p.scale[j], p.zero_point[j]);
    };
    if (r.stochastic) {
      run_quantize<true>(x, n, p, r, emit, tail);
    } else {
      run_quantize<false>(x, n, p, r, emit, tail);
    }
  }

  template <class T, class Load>
  static void dequantize_run(const T* q, int64_t n, const AffineRow& p, float* out, bool stream, Load load) {
    int64_t i = 0;
    if (!p.per_element) {
      const fb scale(p.scale[0]);
      const ib zp(p.zero_point[0]);
      if (stream) {
        // Non-temporal stores need aligned addresses: peel a scalar head first.
        for (; i < n && (reinterpret_cast<uintptr_t>(out + i) % (W * 4)) != 0; ++i)
          out[i] = detail::dequantize_one(q[i], p.scale[0], p.zero_point[0]);
        for (; i + W <= n; i += W) Traits::stream(out + i, xsimd::to_float(load(q + i) - zp) * scale);
        _mm_sfence();
      } else {
        for (; i + 2 * W <= n; i += 2 * W) {
          (xsimd::to_float(load(q + i) - zp) * scale).store_unaligned(out + i);
          (xsimd::to_float(load(q + i + W) - zp) * scale).store_unaligned(out + i + W);
        }
        for (; i + W <= n; i += W) (xsimd::to_float(load(q + i) - zp) * scale).store_unaligned(out + i);
      }
      for (; i < n; ++i) out[i] = detail::dequantize_one(q[i], p.scale[0], p.zero_point[0]);
    } else {
      for (; i + W <= n; i += W) {
        ib zp = ib::load_unaligned(p.zero_point + i);
        (xsimd::to_float(load(q + i) - zp) * fb::load_unaligned(p.scale + i)).store_unaligned(out + i);
      }
      for (; i < n; ++i) out[i] = detail::dequantize_one(q[i], p.scale[i], p.zero_point[i]);
    }
  }

  static void convert_f16(const uint16_t* x, int64_t n, float* out) {
    int64_t i = 0;
    for (; i + W <= n; i += W) Traits::load_f16(x + i).store_unaligned(out + i);
    for (; i < n; ++i) out[i] = detail::f16_to_f32(x[i]);
  }
};

}  // namespace
}  // namespace kernels
}  // namespace lowbit

// Defines the lowbit::kernels::<ns> entry points for Arch in the including translation unit.
#define LOWBIT_DEFINE_QUANTIZE_KERNELS(ns, Arch)                                                                      \
  namespace lowbit {                                                                                                  \
  namespace kernels {                                                                                                 \
  namespace ns {                                                                                                      \
  using Impl = QuantizeImpl<Arch>;                                                                                    \
  void quantize_f32_s8(const float* x, int64_t n, const AffineRow& p, const Rounding& r, int8_t* q) {                 \
    Impl::quantize(x, n, p, r, q);                                                                                    \
  }                                                                                                                   \
  void quantize_f32_u8(const float* x, int64_t n, const AffineRow& p, const Rounding& r, uint8_t* q) {                \
    Impl::quantize(x, n, p, r, q);                                                                                    \
  }                                                                                                                   \
  void dequantize_s8_f32(const int8_t* q, int64_t n, const AffineRow& p, float* out, bool stream) {                   \
    Impl::dequantize(q, n, p, out, stream, [](const int8_t* a) { return Impl::Traits::load_s8(a); });                 \
  }                                                                                                                   \
  void dequantize_u8_f32(const uint8_t* q, int64_t n, const AffineRow& p, float* out, bool stream) {                  \
    Impl::dequantize(q, n, p, out, stream, [](const uint8_t* a) { return Impl::Traits::load_u8(a); });                \
  }                                                                                                                   \
  void fake_quantize_f32_f32(const float* x, int64_t n, const AffineRow& p, const Rounding& r, float* out) {          \
    Impl::fake_quantize(x, n, p, r, out);                                                                             \
  }                                                                                                                   \
  void convert_f16_f32(const uint16_t* x, int64_t n, float* out) { Impl::convert_f16(x, n, out); }                    \
  void pack_s8_s4(const int8_t* v, int64_t n_bytes, uint8_t* out) { detail::pack_nibbles(v, n_bytes, out); }          \
  void unpack_s4_s8(const uint8_t* in, int64_t n_bytes, int8_t* out) { detail::unpack_nibbles_s4(in, n_bytes, out); } \
  void unpack_u4_s8(const uint8_t* in, int64_t n_bytes, int8_t* out) { detail::unpack_nibbles_u4(in, n_bytes, out); } \
  }                                                                                                                   \
  }                                                                                                                   \
  }
