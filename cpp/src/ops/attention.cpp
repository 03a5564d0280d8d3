// Float32 attention op (ops layer): (batch, head, row chunk) tasks over the threads, each with a
// per-thread scratch buffer kept between calls.
#include "dispatch/attention.hpp"

#include <algorithm>
#include <cstdint>

#include "lowbit/attention.hpp"
#include "lowbit/parallel.hpp"
#include "ops/scratch.hpp"

namespace lowbit {
namespace {

constexpr int64_t kMinRows = 32;                     // a task's query rows, at least (its K/V layout is per task)
constexpr int64_t kMinTaskFlops = int64_t{1} << 18;  // below this in all, no threads

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

}  // namespace

int64_t attention_scratch_floats(const AttentionArgs& a) {
  const int64_t skp = round_up(std::max<int64_t>(a.sk, 1), 32), dvp = round_up(std::max<int64_t>(a.dv, 1), 32);
  // K^T, V, the scores and (padding left out) the gathered keys, mask rows and key indices
  return a.d * skp + a.sk * dvp + 8 * skp + a.sk * a.d + 8 * skp + a.sk;
}

void attention(const AttentionArgs& a) {
  const int64_t pairs = a.batch * a.heads;
  if (pairs == 0 || a.sq == 0) return;
  const int64_t threads = get_num_threads();
  // Row chunks: whole (batch, head) pairs when they are enough to balance the threads.
  int64_t rows = a.sq;
  while (rows > kMinRows && pairs * ((a.sq + rows - 1) / rows) < 4 * threads)
    rows = std::max(kMinRows, round_up(rows / 2, 8));
  const int64_t chunks = (a.sq + rows - 1) / rows;
  const size_t floats = static_cast<size_t>(attention_scratch_floats(a));
  const kernels::AttentionF32Fn fn = dispatch::attention_f32.get();
  auto task = [&](int64_t t) {
    float* scratch = static_cast<float*>(detail::thread_scratch(floats * sizeof(float)));
    const int64_t bh = t / chunks, i0 = (t % chunks) * rows;
    fn(a, bh, i0, std::min(a.sq, i0 + rows), scratch);
  };
  const int64_t flops = pairs * a.sq * a.sk * (a.d + a.dv) * 2;
  if (pairs * chunks == 1 || flops < 4 * kMinTaskFlops) {
    for (int64_t t = 0; t < pairs * chunks; ++t) task(t);
  } else {
    parallel_for(pairs * chunks, task);
  }
}

}  // namespace lowbit
