// lowbit/parallel.hpp: the one threading knob and a fork-safe persistent thread pool.
// Portable core layer. Kernels never see threads; ops split work into tasks here.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace lowbit {

// Number of threads ops may use: the last set_num_threads, else (default) the cores this process
// may run on, or under the OpenMP backend the runtime's omp_get_max_threads() (torch's setting).
int get_num_threads();
void set_num_threads(int n);  // n >= 1, validated by the caller

// Where parallel_for runs its tasks: lowbit's own pool, or the team of an OpenMP runtime already
// loaded in the process (torch's), so work called between torch ops runs on the threads that
// just ran them (warm, spinning) instead of competing with them for the cores.
// kOpenMPAdaptive: the team, except after two regions within 0.1 s whose caller waited long (1 ms)
// for late team members at its start or its join (the machine is oversubscribed: a descheduled OpenMP thread holds up
// the team's barriers, which the own pool's ticket join never does); then the own pool for a
// while (0.1 s, doubling while the stalls go on, up to 30 s) before the team is tried again; the
// first 16 regions of a team (its threads starting) never count as stalls.
enum class ThreadBackend { kOwn = 0, kOpenMP = 1, kOpenMPAdaptive = 2 };

// Resolves GOMP_parallel, omp_get_max_threads and omp_in_parallel in the lookup scope of the
// already loaded shared library `library` (the library and its dependencies, e.g. libtorch_cpu.so
// -> torch's libgomp) and keeps them for set_thread_backend(kOpenMP). Loads nothing. Returns the
// path of the runtime that defines GOMP_parallel, or throws std::runtime_error saying why not.
std::string attach_openmp(const std::string& library);
// kOpenMP requires a successful attach_openmp (else std::runtime_error). A fork() child starts on
// kOwn: the parent's OpenMP team does not exist there.
void set_thread_backend(ThreadBackend backend);
ThreadBackend get_thread_backend();

// Parallel regions run so far, by where: {own pool, OpenMP team, inline on the caller}, and the
// OpenMP regions whose join stalled (kOpenMPAdaptive's trigger). Lets tests prove which backend ran.
struct ParallelCounts {
  uint64_t own, openmp, inline_, stalls;
};
ParallelCounts parallel_counts();

// Runs fn(task) for task in [0, n_tasks), spread over the pool; returns when all are done.
// The calling thread works too. If the pool is busy (another Python thread is inside a
// parallel region) the tasks run on the caller alone, so concurrent callers never deadlock.
// fn must not throw.
void parallel_for(int64_t n_tasks, const std::function<void(int64_t)>& fn);

// Splits [0, n) into at most max_tasks contiguous ranges of at least `grain` elements, each
// starting at a multiple of `align`; calls fn(begin, end) in parallel.
void parallel_range(int64_t n, int64_t grain, int64_t align, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace lowbit
