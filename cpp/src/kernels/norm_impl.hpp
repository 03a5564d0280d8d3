// LayerNorm (contract: lowbit/norm.hpp), written once with xsimd and compiled once per ISA
// (kernels/<isa>/norm.cpp). A row is read three times while it sits in L1 (sum, squared
// deviations, output); four accumulators per pass hide the add latency; tails are scalar.
#pragma once

#include <cmath>
#include <cstdint>
#include <xsimd/xsimd.hpp>

#include "kernels/hreduce.hpp"
#include "lowbit/norm.hpp"

namespace lowbit {
namespace kernels {
namespace {

template <class Arch>
struct NormImpl {
  using B = xsimd::batch<float, Arch>;
  static constexpr int64_t W = static_cast<int64_t>(B::size);

  // Sum of f(x) over one row: four accumulators over 4W-element steps, then single vectors, then a
  // scalar tail (g: the same f on one float).
  template <class F, class G>
  static float row_sum(const float* xr, int64_t n, F f, G g) {
    B a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
      a0 += f(B::load_unaligned(xr + i));
      a1 += f(B::load_unaligned(xr + i + W));
      a2 += f(B::load_unaligned(xr + i + 2 * W));
      a3 += f(B::load_unaligned(xr + i + 3 * W));
    }
    for (; i + W <= n; i += W) a0 += f(B::load_unaligned(xr + i));
    float s = hsum((a0 + a1) + (a2 + a3));
    for (; i < n; ++i) s += g(xr[i]);
    return s;
  }

  static void run(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t n, const float* gamma,
                  const float* beta, float eps) {
    const int64_t n1 = n / W * W;
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * ldx;
      float* yr = y + r * ldy;
      const float mean = row_sum(
                             xr, n, [](const B& v) { return v; }, [](float v) { return v; }) /
                         static_cast<float>(n);
      const B m(mean);
      const float sq = row_sum(
          xr, n,
          [&](const B& v) {
            const B d = v - m;
            return d * d;
          },
          [&](float v) { return (v - mean) * (v - mean); });
      const float rstd = 1.0f / std::sqrt(sq / static_cast<float>(n) + eps);
      const B rs(rstd);
      int64_t i = 0;
      for (; i < n1; i += W) {
        B v = (B::load_unaligned(xr + i) - m) * rs;
        if (gamma != nullptr) v *= B::load_unaligned(gamma + i);
        if (beta != nullptr) v += B::load_unaligned(beta + i);
        v.store_unaligned(yr + i);
      }
      for (; i < n; ++i) {
        float v = (xr[i] - mean) * rstd;
        if (gamma != nullptr) v *= gamma[i];
        if (beta != nullptr) v += beta[i];
        yr[i] = v;
      }
    }
  }
};

}  // namespace
}  // namespace kernels
}  // namespace lowbit

#define LOWBIT_DEFINE_NORM_KERNELS(ns, Arch)                                                                           \
  namespace lowbit {                                                                                                   \
  namespace kernels {                                                                                                  \
  namespace ns {                                                                                                       \
  void layer_norm_f32(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t n, const float* gamma, \
                      const float* beta, float eps) {                                                                  \
    NormImpl<Arch>::run(x, ldx, y, ldy, rows, n, gamma, beta, eps);                                                    \
  }                                                                                                                    \
  }                                                                                                                    \
  }                                                                                                                    \
  }
