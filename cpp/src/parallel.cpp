// Persistent thread pool behind lowbit::parallel_for (portable core). Workers spin briefly after a
// job (the next op usually follows within microseconds), then sleep on a condition variable.
// A fork() child drops the parent's pool and builds its own.
// Second backend: the team of an OpenMP runtime already loaded (torch's libgomp), found through
// the lookup scope of a library the caller names and called through GOMP_parallel; lowbit never
// links or loads an OpenMP runtime itself.
#include "lowbit/parallel.hpp"

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define LOWBIT_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define LOWBIT_PAUSE() __asm__ volatile("yield")
#else
#define LOWBIT_PAUSE() ((void)0)
#endif

namespace lowbit {
namespace {

constexpr auto kSpin = std::chrono::microseconds(100);

int default_threads() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

std::atomic<int> g_num_threads{0};

// The attached OpenMP runtime's entry points (GNU ABI, also exported by LLVM's and Intel's
// runtimes). Never freed: a caller may be inside GOMP_parallel while another thread attaches.
struct OmpApi {
  void (*parallel)(void (*)(void*), void*, unsigned, unsigned);
  int (*max_threads)();
  int (*in_parallel)();
};
std::atomic<const OmpApi*> g_omp{nullptr};
std::atomic<int> g_backend{static_cast<int>(ThreadBackend::kOwn)};
std::atomic<uint64_t> g_regions_own{0}, g_regions_openmp{0}, g_regions_inline{0}, g_stalls{0};

// kOpenMPAdaptive: a region whose start waited longer than kStallNs, or whose join waited longer
// than kStallNs plus the caller's own work, is a stall; two stalls within kStallPairNs send the
// work to the own pool until g_fallback_until (steady clock, ns). The back-off starts at
// kMinBackoffNs and doubles for a fall-back within 4 back-offs of the previous one, up to
// kMaxBackoffNs: a stall costs a scheduler time slice (ms), a clean team region saves microseconds.
// The first kWarmupRegions regions of a team (after attaching, or when the thread count changes)
// are never stalls: the runtime creates and wakes the team's threads there. A one-off stall (the
// team's start) had sent a MiniLM forward at batch 1 onto the own pool for a whole second, at
// 1.6x its time on the team.
constexpr int64_t kStallNs = 1000000;
constexpr int64_t kMinBackoffNs = 100000000, kMaxBackoffNs = 30000000000;
constexpr int kWarmupRegions = 16;
std::atomic<int> g_warmup_left{kWarmupRegions};
std::atomic<int> g_team_threads{0};  // the thread count of the last region on the team
std::atomic<int64_t> g_fallback_until{0};
std::atomic<int64_t> g_last_stall{-kMaxBackoffNs}, g_last_fallback{-kMaxBackoffNs};
constexpr int64_t kStallPairNs = 100000000;
std::atomic<int64_t> g_backoff{kMinBackoffNs};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One parallel_for on an OpenMP team: every member (the caller is member 0) claims tasks from the
// shared counter, as the own pool's workers do, so the split and the results are the same.
struct OmpJob {
  const std::function<void(int64_t)>* fn;
  int64_t n_tasks;
  std::atomic<int64_t> next{0};
  // Adaptive backend: when the calling thread entered the region (GOMP_parallel first waits for
  // the previous team's threads to dock) and when it found no task left.
  int64_t caller_begin = 0, caller_done = 0;
};

thread_local const OmpJob* tl_calling_job = nullptr;  // the job this thread called GOMP_parallel for

void omp_job_body(void* p) {
  auto* job = static_cast<OmpJob*>(p);
  if (tl_calling_job == job) job->caller_begin = now_ns();
  for (;;) {
    int64_t t = job->next.fetch_add(1, std::memory_order_relaxed);
    if (t >= job->n_tasks) break;
    (*job->fn)(t);
  }
  if (tl_calling_job == job) job->caller_done = now_ns();
}

// Spins on `done()` for up to kSpin, then calls `slow()` repeatedly until done.
template <class Done, class Slow>
void spin_then(Done done, Slow slow) {
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; !done(); ++i) {
    LOWBIT_PAUSE();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() - start > kSpin) {
      while (!done()) slow();
      return;
    }
  }
}

class Pool {
 public:
  explicit Pool(int workers) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this, i] { worker(i); });
  }
  ~Pool() {
    stop_.store(true);
    {
      std::lock_guard<std::mutex> lk(mu_);
      cv_.notify_all();
    }
    for (auto& t : threads_) t.join();
  }
  int workers() const { return static_cast<int>(threads_.size()); }

  // Caller holds run_mu_. Offers the job to `active` workers and works on it too. Workers join
  // with a ticket; once every task is claimed the caller closes the job and waits only for the
  // workers that joined, so a descheduled worker (oversubscribed machine) never delays it.
  void run(int64_t n_tasks, const std::function<void(int64_t)>* fn, int active) {
    fn_ = fn;
    n_tasks_ = n_tasks;
    next_.store(0, std::memory_order_relaxed);
    // Reopen by clearing only the closed bit: a worker woken by the previous job may still be
    // between its ticket add and subtract (it saw the job closed); a store of 0 erased its +2, its
    // -2 then left the count negative, and the caller waited forever for it to read 1 (a hang
    // seen with 4 threads on 2 cores). A late worker that arrives after this joins the new job
    // legitimately: fn_, n_tasks_ and next_ are published by this seq_cst read-modify-write.
    tickets_.fetch_and(~1);
    // The generation word carries the active-worker count, so idle workers never read fn_/n_tasks_.
    uint64_t g = ((state_.load(std::memory_order_relaxed) >> 8) + 1) << 8 | static_cast<uint64_t>(active);
    state_.store(g);  // seq_cst: ordered against sleepers_ below (no lost wake-up)
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> lk(mu_);
      cv_.notify_all();
    }
    drain();
    tickets_.fetch_or(1);  // closed: late workers leave without touching the job
    spin_then([this] { return tickets_.load(std::memory_order_acquire) == 1; }, [] { std::this_thread::yield(); });
  }

  std::mutex run_mu_;

 private:
  void drain() {
    for (;;) {
      int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
      if (t >= n_tasks_) return;
      (*fn_)(t);
    }
  }

  void worker(int index) {
    uint64_t seen = 0;
    for (;;) {
      auto changed = [&] { return state_.load() != seen || stop_.load(); };
      spin_then(changed, [&] {
        std::unique_lock<std::mutex> lk(mu_);
        sleepers_.fetch_add(1);
        cv_.wait(lk, changed);
        sleepers_.fetch_sub(1);
      });
      if (stop_.load()) return;
      seen = state_.load();
      if (index < static_cast<int>(seen & 0xff)) {
        if ((tickets_.fetch_add(2, std::memory_order_acquire) & 1) == 0) drain();
        tickets_.fetch_sub(2, std::memory_order_release);
      }
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> state_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t n_tasks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int> tickets_{0};  // 2 per joined worker; bit 0 = job closed
};

std::mutex g_pool_mu;
// The current pool, shared with the callers running on it. Growing replaces it; the last caller to
// let go of the old one joins its workers (a sweep of thread counts leaked them all before). The
// holder itself is never destroyed: workers may outlive static destructors at exit.
std::shared_ptr<Pool>* g_pool = new std::shared_ptr<Pool>();

void after_fork_child() {
  // The parent's workers do not exist in the child (joining them would hang) and its mutexes may
  // be held: abandon both and start afresh.
  new (&g_pool_mu) std::mutex();
  g_pool = new std::shared_ptr<Pool>();
  // Nor does the parent's OpenMP team (GNU libgomp would wait for it forever): back to the pool.
  g_backend.store(static_cast<int>(ThreadBackend::kOwn));
}

void register_fork_handler() {
  static bool registered = [] {
    pthread_atfork(nullptr, nullptr, after_fork_child);
    return true;
  }();
  (void)registered;
}

std::shared_ptr<Pool> pool_for(int workers) {
  register_fork_handler();
  std::shared_ptr<Pool> old;  // released after the lock: retiring a pool joins its threads
  std::lock_guard<std::mutex> lk(g_pool_mu);
  std::shared_ptr<Pool>& cur = *g_pool;
  if (cur == nullptr || cur->workers() < workers) {
    old = std::move(cur);
    cur = std::make_shared<Pool>(std::min(workers, 255));
  }
  return cur;
}

}  // namespace

int get_num_threads() {
  int n = g_num_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  if (g_backend.load(std::memory_order_relaxed) != static_cast<int>(ThreadBackend::kOwn))
    return std::max(1, std::min(g_omp.load(std::memory_order_acquire)->max_threads(), 256));
  return default_threads();
}

std::string attach_openmp(const std::string& library) {
  // RTLD_NOLOAD: only a library the process has loaded already; the handle is kept (never closed)
  // so the runtime stays mapped while its entry points are in use.
  void* handle = dlopen(library.c_str(), RTLD_LAZY | RTLD_NOLOAD);
  if (handle == nullptr) {
    const char* err = dlerror();
    throw std::runtime_error("'" + library + "' is not loaded in this process" + (err ? std::string(": ") + err : ""));
  }
  // dlsym on a handle searches the library and its dependencies, in load order: the runtime the
  // library itself calls, even when other OpenMP runtimes are loaded too.
  void* par = dlsym(handle, "GOMP_parallel");
  void* max_threads = dlsym(handle, "omp_get_max_threads");
  void* in_parallel = dlsym(handle, "omp_in_parallel");
  if (par == nullptr || max_threads == nullptr || in_parallel == nullptr) {
    dlclose(handle);
    throw std::runtime_error("no OpenMP runtime (GOMP_parallel, omp_get_max_threads, omp_in_parallel) in '" + library +
                             "' or its dependencies");
  }
  Dl_info info;
  std::string path = dladdr(par, &info) != 0 && info.dli_fname != nullptr ? info.dli_fname : library;
  auto* api = new OmpApi{reinterpret_cast<void (*)(void (*)(void*), void*, unsigned, unsigned)>(par),
                         reinterpret_cast<int (*)()>(max_threads), reinterpret_cast<int (*)()>(in_parallel)};
  const OmpApi* old = g_omp.exchange(api);
  (void)old;  // leaked on purpose (see OmpApi)
  register_fork_handler();
  return path;
}

void set_thread_backend(ThreadBackend backend) {
  if (backend != ThreadBackend::kOwn && g_omp.load() == nullptr)
    throw std::runtime_error("no OpenMP runtime attached (attach_openmp first)");
  g_warmup_left.store(kWarmupRegions, std::memory_order_relaxed);
  g_backend.store(static_cast<int>(backend));
}

ThreadBackend get_thread_backend() { return static_cast<ThreadBackend>(g_backend.load()); }

ParallelCounts parallel_counts() {
  return {g_regions_own.load(std::memory_order_relaxed), g_regions_openmp.load(std::memory_order_relaxed),
          g_regions_inline.load(std::memory_order_relaxed), g_stalls.load(std::memory_order_relaxed)};
}

void set_num_threads(int n) { g_num_threads.store(std::max(1, std::min(n, 256)), std::memory_order_relaxed); }

void parallel_for(int64_t n_tasks, const std::function<void(int64_t)>& fn) {
  const int team = get_num_threads();
  int threads = static_cast<int>(std::min<int64_t>(team, n_tasks));
  if (threads <= 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t);
    return;
  }
  const int backend = g_backend.load(std::memory_order_relaxed);
  const bool adaptive = backend == static_cast<int>(ThreadBackend::kOpenMPAdaptive);
  const int64_t start = adaptive ? now_ns() : 0;
  if (backend != static_cast<int>(ThreadBackend::kOwn) &&
      !(adaptive && start < g_fallback_until.load(std::memory_order_relaxed))) {
    const OmpApi* api = g_omp.load(std::memory_order_acquire);
    if (api->in_parallel() != 0) {  // called from inside a team: as a busy pool, run inline
      g_regions_inline.fetch_add(1, std::memory_order_relaxed);
      for (int64_t t = 0; t < n_tasks; ++t) fn(t);
      return;
    }
    OmpJob job{&fn, n_tasks};
    g_regions_openmp.fetch_add(1, std::memory_order_relaxed);
    tl_calling_job = adaptive ? &job : nullptr;
    api->parallel(omp_job_body, &job, static_cast<unsigned>(threads), 0);
    tl_calling_job = nullptr;
    if (!adaptive) return;
    if (g_team_threads.exchange(team, std::memory_order_relaxed) != team)
      g_warmup_left.store(kWarmupRegions, std::memory_order_relaxed);
    if (g_warmup_left.load(std::memory_order_relaxed) > 0) {
      g_warmup_left.fetch_sub(1, std::memory_order_relaxed);
    } else {
      const int64_t end = now_ns();
      // A stall: the region's start (docking the previous team) or its join waited for late
      // threads longer than kStallNs beyond the caller's own work.
      const int64_t entry_wait = job.caller_begin - start, join_wait = end - job.caller_done;
      if (job.caller_done != 0 &&
          (entry_wait > kStallNs || join_wait > kStallNs + (job.caller_done - job.caller_begin))) {
        g_stalls.fetch_add(1, std::memory_order_relaxed);
        // One stall alone is a hiccup (a page fault storm, the host); a second within
        // kStallPairNs means an oversubscribed machine.
        if (end - g_last_stall.exchange(end, std::memory_order_relaxed) < kStallPairNs) {
          int64_t backoff = g_backoff.load(std::memory_order_relaxed);
          backoff = end - g_last_fallback.load(std::memory_order_relaxed) < 4 * backoff
                        ? std::min(kMaxBackoffNs, 2 * backoff)
                        : kMinBackoffNs;
          g_backoff.store(backoff, std::memory_order_relaxed);
          g_last_fallback.store(end, std::memory_order_relaxed);
          g_fallback_until.store(end + backoff, std::memory_order_relaxed);
        }
      }
    }
    return;
  }
  std::shared_ptr<Pool> pool = pool_for(threads - 1);
  std::unique_lock<std::mutex> lk(pool->run_mu_, std::try_to_lock);
  if (!lk.owns_lock()) {
    g_regions_inline.fetch_add(1, std::memory_order_relaxed);
    for (int64_t t = 0; t < n_tasks; ++t) fn(t);
    return;
  }
  g_regions_own.fetch_add(1, std::memory_order_relaxed);
  pool->run(n_tasks, &fn, threads - 1);
}

void parallel_range(int64_t n, int64_t grain, int64_t align, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  int64_t threads = get_num_threads();
  // Up to 4 tasks per thread: the caller can take over the share of a worker that starts late.
  int64_t tasks =
      std::max<int64_t>(1, std::min<int64_t>(threads == 1 ? 1 : 4 * threads, n / std::max<int64_t>(grain, 1)));
  if (tasks == 1) {
    fn(0, n);
    return;
  }
  // Overflow-free for any n, align >= 1: a piece of `align` or more elements covering n is one task.
  const int64_t a = std::max<int64_t>(align, 1);
  const int64_t units = n / tasks + (n % tasks != 0);
  const int64_t blocks = units / a + (units % a != 0);
  if (blocks > (n - 1) / a) {
    fn(0, n);
    return;
  }
  const int64_t per = blocks * a;
  const int64_t real_tasks = n / per + (n % per != 0);
  parallel_for(real_tasks, [&](int64_t t) {
    int64_t b = t * per;
    int64_t e = n - b > per ? b + per : n;
    fn(b, e);
  });
}

}  // namespace lowbit
