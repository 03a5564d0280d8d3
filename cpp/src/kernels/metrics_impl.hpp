// Error-statistics kernel behind lowbit.metrics, written once with xsimd and compiled once per ISA
// (kernels/<isa>/metrics.cpp). Contract: lowbit/metrics.hpp.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <xsimd/xsimd.hpp>

#include "lowbit/metrics.hpp"
#include "reference/metrics.hpp"

namespace lowbit {
namespace kernels {
namespace {

// Widening load of one double batch worth of floats: xsimd 8.1 has no float->double conversion
// that stays in registers, so each ISA names its cvtps2pd.
template <class Arch>
struct WidenF32;

#if defined(__AVX2__)
template <>
struct WidenF32<xsimd::avx2> {
  static xsimd::batch<double, xsimd::avx2> load(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
};
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
template <>
struct WidenF32<xsimd::avx512bw> {
  static xsimd::batch<double, xsimd::avx512bw> load(const float* p) { return _mm512_cvtps_pd(_mm256_loadu_ps(p)); }
};
#endif

template <class Arch>
struct MetricsImpl {
  using db = xsimd::batch<double, Arch>;
  static constexpr int64_t W = static_cast<int64_t>(db::size);

  static double reduce_sum(const db& v) {
    alignas(64) double t[16];
    v.store_aligned(t);
    double s = 0.0;
    for (int64_t k = 0; k < W; ++k) s += t[k];
    return s;
  }
  static double reduce_max(const db& v) {
    alignas(64) double t[16];
    v.store_aligned(t);
    double m = t[0];
    for (int64_t k = 1; k < W; ++k) m = t[k] > m ? t[k] : m;
    return m;
  }

  static void step(const db& x, const db& y, db& sdd, db& sxx, db& syy, db& sxy, db& mx) {
    const db d = x - y;
    sdd = xsimd::fma(d, d, sdd);
    sxx = xsimd::fma(x, x, sxx);
    syy = xsimd::fma(y, y, syy);
    sxy = xsimd::fma(x, y, sxy);
    mx = xsimd::max(mx, xsimd::abs(d));
  }

  static void error_stats(const float* x, const float* y, int64_t n, ErrorStats* acc) {
    // Two independent sets of accumulators hide the FMA latency (4 cycles, 2 ports).
    const db zero(0.0);
    db sdd0 = zero, sxx0 = zero, syy0 = zero, sxy0 = zero, mx0(acc->max_abs_diff);
    db sdd1 = zero, sxx1 = zero, syy1 = zero, sxy1 = zero, mx1(acc->max_abs_diff);
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
      step(WidenF32<Arch>::load(x + i), WidenF32<Arch>::load(y + i), sdd0, sxx0, syy0, sxy0, mx0);
      step(WidenF32<Arch>::load(x + i + W), WidenF32<Arch>::load(y + i + W), sdd1, sxx1, syy1, sxy1, mx1);
    }
    acc->sum_sq_diff += reduce_sum(sdd0 + sdd1);
    acc->sum_sq_x += reduce_sum(sxx0 + sxx1);
    acc->sum_sq_y += reduce_sum(syy0 + syy1);
    acc->dot_xy += reduce_sum(sxy0 + sxy1);
    acc->max_abs_diff = reduce_max(xsimd::max(mx0, mx1));
    for (; i < n; ++i) detail::error_stats_step(x[i], y[i], acc);
  }
};

}  // namespace
}  // namespace kernels
}  // namespace lowbit

#define LOWBIT_DEFINE_METRICS_KERNELS(ns, Arch)                                      \
  namespace lowbit {                                                                 \
  namespace kernels {                                                                \
  namespace ns {                                                                     \
  void error_stats_f32(const float* x, const float* y, int64_t n, ErrorStats* acc) { \
    MetricsImpl<Arch>::error_stats(x, y, n, acc);                                    \
  }                                                                                  \
  }                                                                                  \
  }                                                                                  \
  }
