// Reference layer: LayerNorm one row at a time, two passes, float32 sums in index order.
#include "reference/norm.hpp"

#include <cmath>

namespace lowbit {
namespace ref {

void layer_norm_f32(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t n, const float* gamma,
                    const float* beta, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * ldy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; ++i) sum += xr[i];
    const float mean = sum / static_cast<float>(n);
    float sq = 0.0f;
    for (int64_t i = 0; i < n; ++i) sq += (xr[i] - mean) * (xr[i] - mean);
    const float rstd = 1.0f / std::sqrt(sq / static_cast<float>(n) + eps);
    for (int64_t i = 0; i < n; ++i) {
      float v = (xr[i] - mean) * rstd;
      if (gamma != nullptr) v *= gamma[i];
      if (beta != nullptr) v += beta[i];
      yr[i] = v;
    }
  }
}

}  // namespace ref
}  // namespace lowbit
