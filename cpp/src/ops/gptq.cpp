// GPTQ column loop (ops layer): rows split over threads in chunks of kRows; each chunk walks the
// block's columns, rounding one column of its rows and adding the error's row of A to the rest of
// the block (the rank-1 updates stay in L1). Portable C++ (the compiler vectorizes the update with
// the baseline ISA); the block's share of the flops is small next to the caller's GEMM.
#include "lowbit/gptq.hpp"

#include <cmath>

#include "lowbit/parallel.hpp"
#include "reference/scalar.hpp"

namespace lowbit {
namespace {

constexpr int64_t kRows = 8;  // rows per chunk: one row of A feeds kRows updates

inline float round_affine(float x, float s, int32_t z, int32_t qmin, int32_t qmax) {
  const float inv = 1.0f / s;
  return detail::dequantize_one(detail::quantize_one(x, inv, z, qmin, qmax), s, z);
}

inline float round_codebook(float x, float s, const float* levels, const float* thresholds, int32_t n_levels) {
  const float inv = s > 0.0f ? 1.0f / s : 0.0f;
  const float y = x * inv;
  int32_t c = 0;
  if (y != y) {
    c = n_levels - 1;
  } else {
    for (int32_t t = 0; t < n_levels - 1; ++t) c += thresholds[t] < y ? 1 : 0;
  }
  return levels[c] * s;
}

void run_rows(float* x, const float* w, float* q, float* delta, const float* a, int64_t r0, int64_t r1, int64_t k,
              int64_t begin, int64_t end, const GptqGrid& g) {
  float d[kRows];
  for (int64_t j = begin; j < end; ++j) {
    const int64_t grp = g.group[j];
    const float* arow = a + j * k;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t at = r * k + j;
      const float s = g.scale[r * g.groups + grp];
      float v;
      if (g.levels != nullptr) {
        v = round_codebook(x[at], s, g.levels, g.thresholds, g.n_levels);
      } else {
        const int32_t z = g.zero_point != nullptr ? g.zero_point[r * g.groups + grp] : 0;
        v = round_affine(x[at], s, z, g.qmin, g.qmax);
      }
      q[at] = v;
      d[r - r0] = w[at] - v;
      delta[at] = d[r - r0];
    }
    for (int64_t r = r0; r < r1; ++r) {
      float* xr = x + r * k;
      const float e = d[r - r0];
      for (int64_t l = j + 1; l < end; ++l) xr[l] = xr[l] + e * arow[l];
    }
  }
}

}  // namespace

void gptq_columns(float* x, const float* w, float* q, float* delta, const float* a, int64_t n, int64_t k, int64_t begin,
                  int64_t end, const GptqGrid& grid) {
  if (n <= 0 || begin >= end) return;
  parallel_range(n, kRows, kRows, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r += kRows) {
      const int64_t stop = r + kRows < e ? r + kRows : e;
      run_rows(x, w, q, delta, a, r, stop, k, begin, end, grid);
    }
  });
}

}  // namespace lowbit
