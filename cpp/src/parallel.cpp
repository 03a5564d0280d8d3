// Persistent thread pool behind lowbit::parallel_for (portable core). Workers sleep on a
// condition variable between jobs; a fork() child drops the parent's pool and builds its own.
#include "lowbit/parallel.hpp"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace lowbit {
namespace {

int default_threads() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

std::atomic<int> g_num_threads{0};

class Pool {
 public:
  explicit Pool(int workers) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { worker(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  int workers() const { return static_cast<int>(threads_.size()); }

  // Caller holds run_mu_. Runs the job on `use_workers` workers plus the caller.
  void run(int64_t n_tasks, const std::function<void(int64_t)>* fn, int use_workers) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = fn;
      n_tasks_ = n_tasks;
      next_.store(0);
      active_workers_ = use_workers;
      pending_ = use_workers;
      ++generation_;
    }
    cv_.notify_all();
    drain();
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [this] { return pending_ == 0; });
    fn_ = nullptr;
  }

  std::mutex run_mu_;

 private:
  void drain() {
    for (;;) {
      int64_t t = next_.fetch_add(1);
      if (t >= n_tasks_) return;
      (*fn_)(t);
    }
  }
  void worker() {
    uint64_t seen = 0;
    int index;
    {
      std::lock_guard<std::mutex> lk(mu_);
      index = started_++;
    }
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (index >= active_workers_) continue;
      }
      drain();
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (--pending_ == 0) done_cv_.notify_one();
      }
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t n_tasks_ = 0;
  std::atomic<int64_t> next_{0};
  int active_workers_ = 0;
  int pending_ = 0;
  int started_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

std::mutex g_pool_mu;
Pool* g_pool = nullptr;  // intentionally leaked at exit: workers may outlive static destructors

void after_fork_child() {
  // The parent's workers do not exist in the child; its mutexes may be held. Start afresh.
  new (&g_pool_mu) std::mutex();
  g_pool = nullptr;
}

Pool* pool_for(int workers) {
  static bool registered = [] {
    pthread_atfork(nullptr, nullptr, after_fork_child);
    return true;
  }();
  (void)registered;
  std::lock_guard<std::mutex> lk(g_pool_mu);
  if (g_pool == nullptr || g_pool->workers() < workers) {
    // Growing the pool: the old one may still be in use by a concurrent caller; keep it alive.
    g_pool = new Pool(workers);
  }
  return g_pool;
}

}  // namespace

int get_num_threads() {
  int n = g_num_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : default_threads();
}

void set_num_threads(int n) { g_num_threads.store(std::max(1, n), std::memory_order_relaxed); }

void parallel_for(int64_t n_tasks, const std::function<void(int64_t)>& fn) {
  int threads = static_cast<int>(std::min<int64_t>(get_num_threads(), n_tasks));
  if (threads <= 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t);
    return;
  }
  Pool* pool = pool_for(threads - 1);
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
  int64_t tasks = std::max<int64_t>(1, std::min<int64_t>(threads, n / std::max<int64_t>(grain, 1)));
  if (tasks == 1) {
    fn(0, n);
    return;
  }
  int64_t per = (n + tasks - 1) / tasks;
  per = (per + align - 1) / align * align;
  int64_t real_tasks = (n + per - 1) / per;
  parallel_for(real_tasks, [&](int64_t t) {
    int64_t b = t * per;
    int64_t e = std::min(n, b + per);
    fn(b, e);
  });
}

}  // namespace lowbit
