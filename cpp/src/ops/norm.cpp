// LayerNorm op (ops layer): the dispatched kernel over row chunks of about kTaskElems elements on
// the thread pool; small inputs run inline.
#include "dispatch/norm.hpp"

#include "lowbit/norm.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {
namespace {

// ~512 KiB of floats per task: MiniLM's 256 x 384 LayerNorm at 2 threads took 55-110 us split in three
// tasks of 32 Ki elements (bimodal: the fork and join) against a steady 60 us inline (AMD Zen 4, in the model)
constexpr int64_t kTaskElems = 1 << 17;

}  // namespace

void layer_norm(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t n, const float* gamma,
                const float* beta, float eps) {
  if (rows <= 0 || n <= 0) return;
  auto kernel = dispatch::layer_norm_f32.get();
  const int64_t grain = kTaskElems / n > 0 ? kTaskElems / n : 1;
  if (rows <= grain) {
    kernel(x, ldx, y, ldy, rows, n, gamma, beta, eps);
    return;
  }
  parallel_range(rows, grain, 1, [&](int64_t r0, int64_t r1) {
    kernel(x + r0 * ldx, ldx, y + r0 * ldy, ldy, r1 - r0, n, gamma, beta, eps);
  });
}

}  // namespace lowbit
