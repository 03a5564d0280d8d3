// Reference (scalar) format kernels: the C++ spec of NF4 and fp16/bf16 conversion.
#include "reference/formats.hpp"

#include "reference/formats_scalar.hpp"

namespace lowbit {
namespace ref {

void quantize_f32_nf4(const float* x, int64_t n, int64_t block, float* absmax, uint8_t* q) {
  for (int64_t b = 0, k = 0; b < n; b += block, ++k) {
    const int64_t e = b + block < n ? b + block : n;
    float m = 0.0f;
    for (int64_t i = b; i < e; ++i) m = detail::absmax_update(m, x[i]);
    absmax[k] = m;
    const float inv = detail::nf4_inv(m);
    for (int64_t i = b; i < e; i += 2) {
      uint8_t lo = detail::nf4_code(x[i], inv);
      uint8_t hi = i + 1 < e ? detail::nf4_code(x[i + 1], inv) : 0;
      q[i / 2] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

void dequantize_nf4_f32(const uint8_t* q, int64_t n, int64_t block, const float* absmax, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    uint8_t c = (i & 1) ? static_cast<uint8_t>(q[i / 2] >> 4) : static_cast<uint8_t>(q[i / 2] & 15);
    out[i] = detail::nf4_value(c, absmax[i / block]);
  }
}

void convert_f32_f16(const float* x, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = detail::f32_to_f16(x[i]);
}

void convert_f32_bf16(const float* x, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = detail::f32_to_bf16(x[i]);
}

void convert_bf16_f32(const uint16_t* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = detail::bf16_to_f32(x[i]);
}

}  // namespace ref
}  // namespace lowbit
