// Observer reduction ops (ops layer): split a tensor over threads, give every task its own partial
// min/max or histogram, run the dispatched kernels, then combine the partials (exactly: min/max
// and integer counts do not depend on the split).
#include "dispatch/observers.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "lowbit/observers.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {
namespace {

constexpr int64_t kGrain = 1 << 16;       // elements per task, at least
constexpr int64_t kHorizontalInner = 32;  // inner runs this long are reduced along the run

int64_t task_count(int64_t work, int64_t max_tasks) {
  int64_t t = std::min<int64_t>(get_num_threads(), work / kGrain);
  return std::max<int64_t>(1, std::min(t, max_tasks));
}

// Calls fn(task, begin, end) for `tasks` contiguous pieces of [0, n), piece starts aligned to `align`.
template <class F>
void split(int64_t n, int64_t tasks, int64_t align, F&& fn) {
  if (tasks <= 1) {
    fn(0, 0, n);
    return;
  }
  // Overflow-free: a piece that would reach past n is clamped (later tasks get empty ranges).
  const int64_t units = n / tasks + (n % tasks != 0);
  const int64_t blocks = units / align + (units % align != 0);
  const int64_t per = blocks > n / align ? n : blocks * align;
  parallel_for(tasks, [&](int64_t t) {
    const int64_t b = per == 0 || t > n / per ? n : std::min(n, t * per);
    const int64_t e = n - b > per ? b + per : n;
    fn(t, b, e);
  });
}

}  // namespace

MinMaxResult minmax(const float* x, int64_t n) {
  MinMaxResult res{INFINITY, -INFINITY, 0};
  if (n <= 0) return res;
  auto kernel = dispatch::minmax_f32.get();
  const int64_t tasks = task_count(n, n);
  if (tasks == 1) {
    res.nonfinite = kernel(x, n, &res.min, &res.max);
    return res;
  }
  std::vector<float> lo(tasks, INFINITY), hi(tasks, -INFINITY);
  std::vector<int64_t> bad(tasks, 0);
  split(n, tasks, 64, [&](int64_t t, int64_t b, int64_t e) {
    if (b < e) bad[t] = kernel(x + b, e - b, &lo[t], &hi[t]);
  });
  for (int64_t t = 0; t < tasks; ++t) {
    res.min = std::min(res.min, lo[t]);
    res.max = std::max(res.max, hi[t]);
    res.nonfinite += bad[t];
  }
  return res;
}

int64_t minmax_per_channel(const float* x, int64_t outer, int64_t channels, int64_t inner, float* mn, float* mx) {
  std::fill(mn, mn + channels, INFINITY);
  std::fill(mx, mx + channels, -INFINITY);
  const int64_t total = outer * channels * inner;
  if (total <= 0) return 0;
  int64_t bad = 0;
  if (inner < kHorizontalInner) {
    // Short runs: reduce down the rows of the (outer, channels * inner) view, one column per lane.
    auto kernel = dispatch::minmax_per_channel_f32.get();
    const int64_t cols = channels * inner;
    const int64_t tasks = task_count(total, outer);
    if (tasks == 1 && inner == 1) return kernel(x, outer, cols, cols, mn, mx);
    std::vector<float> lo(tasks * cols, INFINITY), hi(tasks * cols, -INFINITY);
    std::vector<int64_t> part(tasks, 0);
    split(outer, tasks, 1, [&](int64_t t, int64_t b, int64_t e) {
      if (b < e) part[t] = kernel(x + b * cols, e - b, cols, cols, lo.data() + t * cols, hi.data() + t * cols);
    });
    for (int64_t t = 0; t < tasks; ++t) {
      bad += part[t];
      const float* l = lo.data() + t * cols;
      const float* h = hi.data() + t * cols;
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t c = j / inner;
        mn[c] = std::min(mn[c], l[j]);
        mx[c] = std::max(mx[c], h[j]);
      }
    }
    return bad;
  }
  // Long runs: each (outer, channel) run is contiguous; reduce it along its length.
  auto kernel = dispatch::minmax_f32.get();
  const int64_t runs = outer * channels;
  const int64_t tasks = task_count(total, runs);
  std::vector<float> lo(tasks * channels, INFINITY), hi(tasks * channels, -INFINITY);
  std::vector<int64_t> part(tasks, 0);
  split(runs, tasks, 1, [&](int64_t t, int64_t b, int64_t e) {
    int64_t acc = 0;
    for (int64_t r = b; r < e; ++r) {
      const int64_t c = r % channels;
      acc += kernel(x + r * inner, inner, &lo[t * channels + c], &hi[t * channels + c]);
    }
    part[t] = acc;
  });
  for (int64_t t = 0; t < tasks; ++t) {
    bad += part[t];
    for (int64_t c = 0; c < channels; ++c) {
      mn[c] = std::min(mn[c], lo[t * channels + c]);
      mx[c] = std::max(mx[c], hi[t * channels + c]);
    }
  }
  return bad;
}

int64_t histogram(const float* x, int64_t n, float scale, float base, int64_t bins, int64_t* counts, int64_t* zeros,
                  float* mn, float* mx) {
  *zeros = 0;
  *mn = INFINITY;
  *mx = -INFINITY;
  if (n <= 0) return 0;
  auto kernel = dispatch::histogram_f32.get();
  const int64_t tasks = task_count(n, n);
  const int64_t stride = bins + 2;
  // Each task's 32-bit copies start on their own cache line (no false sharing), are zeroed by the
  // task itself (first touch on its core) and stay in its L1 for bins <= 2048.
  const int64_t per_task = (kHistogramWays * stride + 15) / 16 * 16;
  std::unique_ptr<uint32_t[]> buf(new uint32_t[tasks * per_task + 16]);
  uint32_t* part = buf.get() + (16 - reinterpret_cast<uintptr_t>(buf.get()) / 4 % 16) % 16;
  std::vector<float> lo(tasks, INFINITY), hi(tasks, -INFINITY);
  // A task over kHistogramChunk elements flushes its 32-bit copies into 64-bit ones after each chunk.
  std::vector<std::vector<int64_t>> wide(tasks);
  split(n, tasks, 64, [&](int64_t t, int64_t b, int64_t e) {
    uint32_t* mine = part + t * per_task;
    std::fill(mine, mine + per_task, uint32_t{0});
    for (int64_t c = b; c < e; c += kHistogramChunk) {
      const int64_t len = std::min(kHistogramChunk, e - c);
      kernel(x + c, len, scale, base, bins, mine, &lo[t], &hi[t]);
      if (e - b > kHistogramChunk) {
        wide[t].resize(kHistogramWays * stride, 0);
        for (int64_t j = 0; j < kHistogramWays * stride; ++j) wide[t][j] += mine[j];
        std::fill(mine, mine + per_task, uint32_t{0});
      }
    }
  });
  static_assert(kHistogramWays == 4, "the merge below sums four copies");
  // Merge: the copies of every task, bin range by bin range in parallel (tight loops: this is the
  // fixed cost of a small update).
  const int64_t merge_tasks = std::min<int64_t>(tasks, std::max<int64_t>(1, bins / 512));
  split(bins, merge_tasks, 16, [&](int64_t, int64_t b, int64_t e) {
    for (int64_t t = 0; t < tasks; ++t) {
      if (wide[t].empty()) {
        // Restrict-qualified locals: without them the compiler reloads after every store to counts and
        // keeps the loop scalar (~1 us of the ~3 us fixed cost of an update with 2048 bins).
        const uint32_t* __restrict p0 = part + t * per_task;
        const uint32_t* __restrict p1 = p0 + stride;
        const uint32_t* __restrict p2 = p1 + stride;
        const uint32_t* __restrict p3 = p2 + stride;
        int64_t* __restrict out = counts;
        for (int64_t j = b; j < e; ++j) out[j] += (int64_t{p0[j]} + int64_t{p1[j]}) + (int64_t{p2[j]} + int64_t{p3[j]});
      } else {
        for (int64_t w = 0; w < kHistogramWays; ++w)
          for (int64_t j = b; j < e; ++j) counts[j] += wide[t][w * stride + j];
      }
    }
  });
  int64_t bad = 0;
  for (int64_t t = 0; t < tasks; ++t) {
    for (int64_t w = 0; w < kHistogramWays; ++w) {
      const int64_t off = w * stride + bins;
      bad += wide[t].empty() ? int64_t{part[t * per_task + off]} : wide[t][off];
      *zeros += wide[t].empty() ? int64_t{part[t * per_task + off + 1]} : wide[t][off + 1];
    }
  }
  for (int64_t t = 0; t < tasks; ++t) {
    *mn = std::min(*mn, lo[t]);
    *mx = std::max(*mx, hi[t]);
  }
  // Zeros go back into their bin: the same slot arithmetic as a finite nonzero element at 0.
  const float zero_bin = std::min(std::max(std::floor(0.0f * scale) - base, 0.0f), static_cast<float>(bins - 1));
  counts[static_cast<int64_t>(zero_bin)] += *zeros;
  return bad;
}

}  // namespace lowbit
