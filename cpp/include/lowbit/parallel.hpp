// lowbit/parallel.hpp: the one threading knob and a fork-safe persistent thread pool.
// Portable core layer. Kernels never see threads; ops split work into tasks here.
#pragma once

#include <cstdint>
#include <functional>

namespace lowbit {

// Number of threads ops may use (default: the cores this process may run on).
int get_num_threads();
void set_num_threads(int n);  // n >= 1, validated by the caller

// Runs fn(task) for task in [0, n_tasks), spread over the pool; returns when all are done.
// The calling thread works too. If the pool is busy (another Python thread is inside a
// parallel region) the tasks run on the caller alone, so concurrent callers never deadlock.
// fn must not throw.
void parallel_for(int64_t n_tasks, const std::function<void(int64_t)>& fn);

// Splits [0, n) into at most max_tasks contiguous ranges of at least `grain` elements, each
// starting at a multiple of `align`; calls fn(begin, end) in parallel.
void parallel_range(int64_t n, int64_t grain, int64_t align, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace lowbit
