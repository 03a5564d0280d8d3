// Reference layer: the scalar attention kernel (lowbit::ref), the spec of kernels/attention_impl.hpp.
#pragma once

#include "lowbit/attention.hpp"

namespace lowbit {
namespace ref {
void attention_f32(const AttentionArgs& a, int64_t bh, int64_t i0, int64_t i1, float* scratch);
}  // namespace ref
}  // namespace lowbit
