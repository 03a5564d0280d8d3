// finite_range_f32 for any xsimd architecture: two independent min/max chains, masked non-finite
// lanes, scalar tail through the reference helper. Included only by kernel translation units.
#pragma once

#include <immintrin.h>

#include <xsimd/xsimd.hpp>

#include "kernels/hreduce.hpp"
#include "kernels/range.hpp"
#include "reference/range.hpp"

namespace lowbit {
namespace kernels {
namespace {

template <class Arch>
void finite_range_impl(const float* x, int64_t n, float* lo, float* hi) {
  using fb = xsimd::batch<float, Arch>;
  constexpr int64_t kW = static_cast<int64_t>(fb::size);
  const fb zero(0.0f);
  fb lo0(0.0f), hi0(0.0f), lo1(0.0f), hi1(0.0f);
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    fb a = fb::load_unaligned(x + i);
    fb b = fb::load_unaligned(x + i + kW);
    a = xsimd::select((a - a) == zero, a, zero);
    b = xsimd::select((b - b) == zero, b, zero);
    lo0 = xsimd::min(lo0, a);
    hi0 = xsimd::max(hi0, a);
    lo1 = xsimd::min(lo1, b);
    hi1 = xsimd::max(hi1, b);
  }
  lo0 = xsimd::min(lo0, lo1);
  hi0 = xsimd::max(hi0, hi1);
  // The tail as whole vectors, the last one overlapping (min and max do not mind): short rows
  // (per-row dynamic quantization of convolution patches) were mostly scalar tail.
  if (n >= kW) {
    for (; i + kW <= n; i += kW) {
      fb a = fb::load_unaligned(x + i);
      a = xsimd::select((a - a) == zero, a, zero);
      lo0 = xsimd::min(lo0, a);
      hi0 = xsimd::max(hi0, a);
    }
    if (i < n) {
      fb a = fb::load_unaligned(x + n - kW);
      a = xsimd::select((a - a) == zero, a, zero);
      lo0 = xsimd::min(lo0, a);
      hi0 = xsimd::max(hi0, a);
      i = n;
    }
  }
  // Horizontal reduction in registers (no NaN is left, so any order is exact); the compare
  // against 0 keeps +0 as the reference does.
  const float l = hmin(lo0), h = hmax(hi0);
  float rl = l < 0.0f ? l : 0.0f, rh = h > 0.0f ? h : 0.0f;
  for (; i < n; ++i) detail::finite_range_one(x[i], &rl, &rh);
  *lo = rl;
  *hi = rh;
}

}  // namespace
}  // namespace kernels
}  // namespace lowbit

#define LOWBIT_DEFINE_RANGE_KERNELS(ns, arch)                                                                       \
  namespace lowbit {                                                                                                \
  namespace kernels {                                                                                               \
  namespace ns {                                                                                                    \
  void finite_range_f32(const float* x, int64_t n, float* lo, float* hi) { finite_range_impl<arch>(x, n, lo, hi); } \
  }                                                                                                                 \
  }                                                                                                                 \
  }
