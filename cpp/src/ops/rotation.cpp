// Blocked Walsh-Hadamard rotation op (ops layer): the dispatched kernel over row chunks of about
// kTaskElems elements on the thread pool; small inputs run inline.
#include "dispatch/rotation.hpp"

#include "lowbit/parallel.hpp"
#include "lowbit/rotation.hpp"

namespace lowbit {
namespace {

constexpr int64_t kTaskElems = 1 << 15;  // ~128 KiB of floats per task: in L2 while it is rotated

}  // namespace

void hadamard_rows(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t k, const float* signs,
                   int64_t block) {
  if (rows <= 0 || k <= 0) return;
  auto kernel = dispatch::hadamard_f32.get();
  const int64_t grain = kTaskElems / k > 0 ? kTaskElems / k : 1;
  if (rows <= grain) {
    kernel(x, ldx, y, ldy, rows, k, signs, block);
    return;
  }
  parallel_range(rows, grain, 1, [&](int64_t r0, int64_t r1) {
    kernel(x + r0 * ldx, ldx, y + r0 * ldy, ldy, r1 - r0, k, signs, block);
  });
}

}  // namespace lowbit
