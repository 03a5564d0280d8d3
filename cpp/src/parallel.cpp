// Persistent thread pool behind lowbit::parallel_for (portable core). Workers spin briefly after a
// job (the next op usually follows within microseconds), then sleep on a condition variable.
// A fork() child drops the parent's pool and builds its own.
#include "lowbit/parallel.hpp"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
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
}

std::shared_ptr<Pool> pool_for(int workers) {
  static bool registered = [] {
    pthread_atfork(nullptr, nullptr, after_fork_child);
    return true;
  }();
  (void)registered;
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
  return n > 0 ? n : default_threads();
}

void set_num_threads(int n) { g_num_threads.store(std::max(1, std::min(n, 256)), std::memory_order_relaxed); }

void parallel_for(int64_t n_tasks, const std::function<void(int64_t)>& fn) {
  int threads = static_cast<int>(std::min<int64_t>(get_num_threads(), n_tasks));
  if (threads <= 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t);
    return;
  }
  std::shared_ptr<Pool> pool = pool_for(threads - 1);
  std::unique_lock<std::mutex> lk(pool->run_mu_, std::try_to_lock);
  if (!lk.owns_lock()) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t);
    return;
  }
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
