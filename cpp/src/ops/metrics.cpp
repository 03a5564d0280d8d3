// Metrics reduction op (ops layer): cut the arrays into fixed chunks, one partial ErrorStats per
// chunk computed by the dispatched kernel on any thread, then combine the partials in chunk order,
// so the result does not depend on the thread count.
#include "dispatch/metrics.hpp"

#include <cmath>
#include <vector>

#include "lowbit/metrics.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {
namespace {

constexpr int64_t kChunk = 1 << 16;  // elements per partial; a multiple of every lane count

}  // namespace

ErrorStats error_stats(const float* x, const float* y, int64_t n) {
  ErrorStats res{0.0, 0.0, 0.0, 0.0, 0.0};
  if (n <= 0) return res;
  auto kernel = dispatch::error_stats_f32.get();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks == 1) {
    kernel(x, y, n, &res);
  } else {
    std::vector<ErrorStats> part(static_cast<size_t>(chunks), res);
    parallel_for(chunks, [&](int64_t c) {
      const int64_t b = c * kChunk;
      const int64_t e = b + kChunk < n ? b + kChunk : n;
      kernel(x + b, y + b, e - b, &part[static_cast<size_t>(c)]);
    });
    for (const ErrorStats& p : part) {
      res.sum_sq_diff += p.sum_sq_diff;
      res.sum_sq_x += p.sum_sq_x;
      res.sum_sq_y += p.sum_sq_y;
      res.dot_xy += p.dot_xy;
      res.max_abs_diff = p.max_abs_diff > res.max_abs_diff ? p.max_abs_diff : res.max_abs_diff;
    }
  }
  if (std::isnan(res.sum_sq_diff)) res.max_abs_diff = NAN;
  return res;
}

}  // namespace lowbit
