// Reference layer: the scalar quantize kernels (lowbit::ref), the spec every ISA's kernels
// (kernels/quantize.hpp) match bit for bit; contracts in lowbit/quantize.hpp.
#pragma once

#include "lowbit/quantize.hpp"

namespace lowbit {
namespace ref {
void quantize_f32_s8(const float* x, int64_t n, const AffineRow& p, const Rounding& r, int8_t* q);
void quantize_f32_u8(const float* x, int64_t n, const AffineRow& p, const Rounding& r, uint8_t* q);
void dequantize_s8_f32(const int8_t* q, int64_t n, const AffineRow& p, float* out, bool stream);
void dequantize_u8_f32(const uint8_t* q, int64_t n, const AffineRow& p, float* out, bool stream);
void fake_quantize_f32_f32(const float* x, int64_t n, const AffineRow& p, const Rounding& r, float* out);
void convert_f16_f32(const uint16_t* x, int64_t n, float* out);
void pack_s8_s4(const int8_t* v, int64_t n_bytes, uint8_t* out);
void unpack_s4_s8(const uint8_t* in, int64_t n_bytes, int8_t* out);
void unpack_u4_s8(const uint8_t* in, int64_t n_bytes, int8_t* out);
}  // namespace ref
}  // namespace lowbit
