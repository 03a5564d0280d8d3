// Result buffers of the ops, recycled instead of returned to the C allocator.
//
// A layer inside a model allocates a result of the same size on every call and frees it a few ops
// later. glibc gives large blocks back to the kernel (mmap'd blocks on free, the heap top when it
// passes the trim threshold), so every call touched fresh pages: MiniLM at batch 8 paid ~8,000
// page faults per forward (1.5 us each, about a quarter of its time). A freed result's block here
// goes to a free list keyed by its capacity and the next result of that capacity reuses it, its
// pages already mapped. Blocks of 2 MiB and more are 2 MiB-aligned and advised as huge pages.
// Only results of at least kMinPooled bytes are pooled; the free lists hold at most `limit` bytes
// (set_buffer_cache_limit; 0 turns pooling off and frees them).
#include <pthread.h>
#include <pybind11/stl.h>
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common.hpp"

namespace lowbit {
namespace bind {
namespace {

constexpr size_t kMinPooled = size_t{256} << 10;
constexpr size_t kGranule = size_t{64} << 10;  // capacities are multiples of this
constexpr size_t kHuge = size_t{2} << 20;
constexpr size_t kHeader = 64;  // the block's capacity, before the data (keeps 64-byte alignment)

struct Cache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free;  // capacity -> blocks
  size_t cached = 0, limit = size_t{256} << 20;
  uint64_t hits = 0, misses = 0;
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: arrays may outlive static destructors at exit
  return *c;
}

void* new_block(size_t capacity) {
  void* p = nullptr;
  if (posix_memalign(&p, capacity >= kHuge ? kHuge : 4096, capacity) != 0) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
  if (capacity >= kHuge) madvise(p, capacity, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
  std::memcpy(p, &capacity, sizeof(capacity));
  return p;
}

void release_block(void* data) {
  void* block = static_cast<char*>(data) - kHeader;
  size_t capacity;
  std::memcpy(&capacity, block, sizeof(capacity));
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lk(c.mu);
    if (c.cached + capacity <= c.limit) {
      c.free[capacity].push_back(block);
      c.cached += capacity;
      return;
    }
  }
  std::free(block);
}

void* acquire_block(size_t capacity) {
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lk(c.mu);
    auto it = c.free.find(capacity);
    if (it != c.free.end() && !it->second.empty()) {
      void* block = it->second.back();
      it->second.pop_back();
      c.cached -= capacity;
      ++c.hits;
      return block;
    }
    ++c.misses;
  }
  return new_block(capacity);
}

void empty_cache() {
  std::vector<void*> blocks;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lk(c.mu);
    for (auto& kv : c.free) blocks.insert(blocks.end(), kv.second.begin(), kv.second.end());
    c.free.clear();
    c.cached = 0;
  }
  for (void* b : blocks) std::free(b);
}

void after_fork_child() { new (&cache().mu) std::mutex(); }  // the parent's lock may have been held

}  // namespace

py::array pooled_array(const py::dtype& dtype, const std::vector<int64_t>& shape) {
  static bool registered = [] {
    pthread_atfork(nullptr, nullptr, after_fork_child);
    return true;
  }();
  (void)registered;
  size_t bytes = static_cast<size_t>(dtype.itemsize());
  for (int64_t d : shape) bytes *= static_cast<size_t>(d);
  if (bytes < kMinPooled || cache().limit == 0) return py::array(dtype, shape);
  const size_t capacity = (bytes + kHeader + kGranule - 1) / kGranule * kGranule;
  char* data = static_cast<char*>(acquire_block(capacity)) + kHeader;
  py::capsule owner(data, [](void* p) { release_block(p); });
  return py::array(dtype, shape, data, owner);
}

void bind_buffers(py::module_& m) {
  m.def(
      "buffer_cache",
      [](const py::object& limit) {
        Cache& c = cache();
        if (!limit.is_none()) {
          const int64_t l = limit.cast<int64_t>();
          if (l < 0) value_error("max_bytes: must be >= 0, got " + std::to_string(l));
          {
            std::lock_guard<std::mutex> lk(c.mu);
            c.limit = static_cast<size_t>(l);
          }
          empty_cache();
        }
        std::lock_guard<std::mutex> lk(c.mu);
        py::dict d;
        d["cached_bytes"] = c.cached;
        d["max_bytes"] = c.limit;
        d["hits"] = c.hits;
        d["misses"] = c.misses;
        return d;
      },
      py::arg("limit") = py::none());
  m.def("empty_buffer_cache", &empty_cache);
  m.def(
      "pooled_empty",
      [](const std::vector<int64_t>& shape, const py::dtype& dtype) {
        for (int64_t d : shape)
          if (d < 0) value_error("shape: dimensions must be >= 0, got " + std::to_string(d));
        return pooled_array(dtype, shape);
      },
      py::arg("shape"), py::arg("dtype"));
}

}  // namespace bind
}  // namespace lowbit
