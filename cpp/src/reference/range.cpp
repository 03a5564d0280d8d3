// Reference finite-range kernel (lowbit::ref): the spec of finite_range_f32.
#include "reference/range.hpp"

namespace lowbit {
namespace ref {
void finite_range_f32(const float* x, int64_t n, float* lo, float* hi) {
  float l = 0.0f, h = 0.0f;
  for (int64_t i = 0; i < n; ++i) detail::finite_range_one(x[i], &l, &h);
  *lo = l;
  *hi = h;
}
}  // namespace ref
}  // namespace lowbit
