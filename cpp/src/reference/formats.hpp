// Reference layer: the scalar format kernels (lowbit::ref), the spec of every ISA's kernels
// (kernels/formats.hpp); contracts in lowbit/formats.hpp.
#pragma once

#include "lowbit/formats.hpp"

namespace lowbit {
namespace ref {
void quantize_f32_nf4(const float* x, int64_t n, int64_t block, float* absmax, uint8_t* q);
void dequantize_nf4_f32(const uint8_t* q, int64_t n, int64_t block, const float* absmax, float* out);
void convert_f32_f16(const float* x, int64_t n, uint16_t* out);
void convert_f32_bf16(const float* x, int64_t n, uint16_t* out);
void convert_bf16_f32(const uint16_t* x, int64_t n, float* out);
}  // namespace ref
}  // namespace lowbit
