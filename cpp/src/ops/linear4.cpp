// 4-bit-weight linear op (ops layer): split the output columns over threads, call the kernel.
#include "dispatch/linear4.hpp"
#include "lowbit/linear4.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {

void linear_f32_4bit(const Linear4Args& a, int64_t n, bool nf4) {
  auto fn = nf4 ? dispatch::linear_f32_nf4w_f32.get() : dispatch::linear_f32_s4w_f32.get();
  // ~64 KiB of packed weights per task at K = 4096: enough work to hide the wake-up.
  const int64_t grain = a.k > 0 ? (int64_t{1} << 17) / a.k + 1 : n;
  parallel_range(n, grain, 1, [&](int64_t b, int64_t e) { fn(a, b, e); });
}

}  // namespace lowbit
