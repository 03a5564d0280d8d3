// Internal to the ops layer: per-thread scratch memory for tasks (task_split.cpp, attention.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace lowbit {
namespace detail {

// A 64-byte aligned buffer of at least `bytes` for the calling thread, kept between calls (no
// allocation or page faults after the first; it only grows). Valid until this thread asks again.
inline void* thread_scratch(size_t bytes) {
  thread_local std::unique_ptr<unsigned char[]> kept;
  thread_local size_t kept_bytes = 0;
  if (kept_bytes < bytes) {
    kept.reset(new unsigned char[bytes + 64]);
    kept_bytes = bytes;
  }
  unsigned char* p = kept.get();
  return p + (64 - reinterpret_cast<uintptr_t>(p) % 64) % 64;
}

}  // namespace detail
}  // namespace lowbit
