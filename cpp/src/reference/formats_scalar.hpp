// Per-element helpers of the format kernels (NF4 codes, fp16/bf16 rounding): the reference
// kernels and the SIMD tails call these, so tails match the spec exactly.
#pragma once

#include <cstdint>
#include <cstring>

#include "lowbit/formats.hpp"

namespace lowbit {
namespace detail {

inline uint32_t f32_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

// absmax that ignores NaN (a NaN never compares greater).
inline float absmax_update(float m, float x) {
  float a = x < 0.0f ? -x : x;
  return a > m ? a : m;
}

inline float nf4_inv(float absmax) { return absmax > 0.0f ? 1.0f / absmax : 0.0f; }

inline uint8_t nf4_code(float x, float inv) {
  float y = x * inv;
  if (y != y) return 7;
  uint8_t c = 0;
  for (float t : kNf4Thresholds) c = static_cast<uint8_t>(c + (y > t ? 1 : 0));
  return c;
}

inline float nf4_value(uint8_t code, float absmax) { return kNf4Levels[code & 15] * absmax; }

// float32 -> bfloat16, round to nearest even; NaN -> quiet NaN with sign and top payload bits.
inline uint16_t f32_to_bf16(float x) {
  uint32_t u = f32_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// float32 -> IEEE binary16, round to nearest even, overflow -> inf, subnormals kept; NaN -> quiet
// NaN with sign and top payload bits (what F16C's vcvtps2ph returns).
inline uint16_t f32_to_f16(float x) {
  uint32_t u = f32_bits(x);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (a < 0x38800000u) {                                               // below 2^-14: subnormal half
    if (a < 0x33000000u) return sign;                                  // below 2^-25: rounds to 0
    uint32_t e = a >> 23;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e;  // value = m * 2^(e-150); half subnormal unit = 2^-24
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return static_cast<uint16_t>(sign | q);
  }
  uint32_t r = a + 0xfffu + ((a >> 13) & 1u);  // round the 13 dropped bits to nearest even
  return static_cast<uint16_t>(sign | ((r - 0x38000000u) >> 13));
}

}  // namespace detail
}  // namespace lowbit
