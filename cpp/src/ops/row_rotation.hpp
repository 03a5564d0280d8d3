// Internal to the ops layer: input rows rotated on the fly (lowbit/rotation.hpp) where the int8 and
// 4-bit linears quantize their activations (pack.cpp, linear_4bit.cpp).
#pragma once

#include <cstdint>

#include "dispatch/rotation.hpp"
#include "ops/scratch.hpp"

namespace lowbit {
namespace detail {

// One task's view of the rows of a k-wide x: each row rotated into the calling thread's scratch
// just before it is used (in cache, never written back), or without signs the row itself. A
// returned row is valid until the next call.
class RowRotation {
 public:
  RowRotation(const float* signs, int64_t block, int64_t k)
      : signs_(signs),
        block_(block),
        k_(k),
        buf_(signs != nullptr ? static_cast<float*>(thread_scratch(sizeof(float) * static_cast<size_t>(k))) : nullptr),
        kernel_(signs != nullptr ? dispatch::hadamard_f32.get() : nullptr) {}

  const float* operator()(const float* row) const {
    if (buf_ == nullptr) return row;
    kernel_(row, k_, buf_, k_, 1, k_, signs_, block_);
    return buf_;
  }

 private:
  const float* signs_;
  int64_t block_, k_;
  float* buf_;
  kernels::HadamardF32Fn kernel_;
};

}  // namespace detail
}  // namespace lowbit
