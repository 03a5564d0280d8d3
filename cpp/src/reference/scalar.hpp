// Scalar element helpers: the single source of truth for per-element arithmetic. The reference
// kernels use them for every element and the SIMD kernels for their tails, so tails match exactly.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace lowbit {
namespace detail {

// lowbias32 (C. Wellons): a 32-bit bijective integer hash with good avalanche.
inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

// Key of the counter block whose upper 32 index bits are `hi`.
inline uint32_t stream_key(uint64_t seed, uint32_t hi) {
  return mix32(static_cast<uint32_t>(seed) ^ mix32(static_cast<uint32_t>(seed >> 32) ^ mix32(hi ^ 0x9e3779b9u)));
}

// u in [0, 1) with 24 random bits, for the element whose low index bits are `lo`.
inline float uniform01(uint32_t lo, uint32_t key) {
  return static_cast<float>(static_cast<int32_t>(mix32(lo ^ key) >> 8)) * (1.0f / 16777216.0f);
}

inline float clamp_nan_to_zero(float y, float lo, float hi) {
  if (std::isnan(y)) y = 0.0f;
  y = y < lo ? lo : y;
  return y > hi ? hi : y;
}

inline int32_t quantize_one(float x, float inv_scale, int32_t zp, int32_t qmin, int32_t qmax) {
  float y = clamp_nan_to_zero(x * inv_scale, static_cast<float>(qmin - zp), static_cast<float>(qmax - zp));
  return static_cast<int32_t>(std::nearbyint(y)) + zp;
}

inline int32_t quantize_one_stochastic(float x, float inv_scale, int32_t zp, int32_t qmin, int32_t qmax, float u) {
  float y = x * inv_scale;
  if (std::isnan(y)) y = 0.0f;
  float t = clamp_nan_to_zero(std::floor(y + u), static_cast<float>(qmin - zp), static_cast<float>(qmax - zp));
  return static_cast<int32_t>(t) + zp;
}

inline float dequantize_one(int32_t q, float scale, int32_t zp) { return static_cast<float>(q - zp) * scale; }

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalize
      int e = -1;
      do {
        ++e;
        man <<= 1;
      } while ((man & 0x400u) == 0);
      bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Nibble loops, written so compilers vectorize them under each ISA's flags.
inline void pack_nibbles(const int8_t* v, int64_t n_bytes, uint8_t* out) {
  for (int64_t j = 0; j < n_bytes; ++j)
    out[j] = static_cast<uint8_t>((static_cast<uint8_t>(v[2 * j]) & 0x0f) | (static_cast<uint8_t>(v[2 * j + 1]) << 4));
}

inline void unpack_nibbles_s4(const uint8_t* in, int64_t n_bytes, int8_t* out) {
  for (int64_t j = 0; j < n_bytes; ++j) {
    int8_t b = static_cast<int8_t>(in[j]);
    // The low nibble is shifted unsigned: a left shift of a negative int8 is undefined.
    out[2 * j] = static_cast<int8_t>(static_cast<int8_t>(static_cast<uint8_t>(in[j] << 4)) >> 4);
    out[2 * j + 1] = static_cast<int8_t>(b >> 4);
  }
}

inline void unpack_nibbles_u4(const uint8_t* in, int64_t n_bytes, int8_t* out) {
  for (int64_t j = 0; j < n_bytes; ++j) {
    out[2 * j] = static_cast<int8_t>(in[j] & 0x0f);
    out[2 * j + 1] = static_cast<int8_t>(in[j] >> 4);
  }
}

// Element i of a row: its parameters (per element or shared).
struct RowParam {
  float scale, inv_scale;
  int32_t zp;
};

}  // namespace detail
}  // namespace lowbit
