// Reference layer: the scalar 4-bit-weight linear kernels (lowbit::ref), the spec every ISA's
// kernels (kernels/linear_4bit.hpp) match bit for bit; contract in lowbit/linear_4bit.hpp.
#pragma once

#include "lowbit/linear_4bit.hpp"

namespace lowbit {
namespace ref {
void linear_f32_s4w_f32(const Linear4Args& a, int64_t p0, int64_t p1);
void linear_f32_nf4w_f32(const Linear4Args& a, int64_t p0, int64_t p1);
void quantize_row_s8_groups(const float* x, int64_t k, int64_t kp, int64_t group, int8_t* xq, float* xscale,
                            int32_t* xsum8);
void linear_s8_s4w_f32(const Linear4Args& a, int64_t p0, int64_t p1);
void linear_s8_nf4w_f32(const Linear4Args& a, int64_t p0, int64_t p1);
}  // namespace ref
}  // namespace lowbit
