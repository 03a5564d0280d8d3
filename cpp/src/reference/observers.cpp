// Reference (scalar) reduction kernels behind the observers: the C++ spec the ISA kernels match
// exactly (min/max and bin indices are exact, so "match" means equal). Baseline flags only.
#include "reference/observers.hpp"

namespace lowbit {
namespace ref {

int64_t minmax_f32(const float* x, int64_t n, float* mn, float* mx) {
  float lo = *mn, hi = *mx;
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    if (!detail::finite_f32(v)) {
      ++bad;
      continue;
    }
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  *mn = lo;
  *mx = hi;
  return bad;
}

int64_t minmax_per_channel_f32(const float* x, int64_t rows, int64_t cols, int64_t row_stride, float* mn, float* mx) {
  int64_t bad = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * row_stride;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = row[c];
      if (!detail::finite_f32(v)) {
        ++bad;
        continue;
      }
      mn[c] = v < mn[c] ? v : mn[c];
      mx[c] = v > mx[c] ? v : mx[c];
    }
  }
  return bad;
}

void histogram_f32(const float* x, int64_t n, float scale, float base, int64_t bins, uint32_t* counts, float* mn,
                   float* mx) {
  float lo = *mn, hi = *mx;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    counts[(i % kHistogramWays) * (bins + 2) + detail::histogram_slot(v, scale, base, bins)] += 1;
    if (detail::finite_f32(v)) {
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
  }
  *mn = lo;
  *mx = hi;
}

}  // namespace ref
}  // namespace lowbit
