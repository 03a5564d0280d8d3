// Reference (scalar) 4-bit-weight linear kernels: the C++ spec of the packed layout and of the
// numerics every ISA reproduces bit for bit (lowbit/linear_4bit.hpp).
#include "reference/linear_4bit.hpp"

#include <cfloat>
#include <cmath>

#include "lowbit/formats.hpp"

namespace lowbit {
namespace ref {
namespace {

// Code of column c of panel p at input k.
inline int code_at(const Linear4Args& a, int64_t p, int64_t c, int64_t k) {
  const uint8_t b = a.w[(p * (a.kp / 8) + k / 8) * kL4BlockBytes + 4 * c + (k % 4)];
  return (k % 8) < 4 ? (b & 15) : (b >> 4);
}

template <bool kNf4>
void linear_float(const Linear4Args& a, int64_t p0, int64_t p1) {
  const int64_t groups = a.kp / a.group, np = l4_padded_n(a.n);
  for (int64_t m = 0; m < a.m; ++m) {
    const float* x = a.x + m * a.ldx;
    for (int64_t col = p0 * kL4Panel; col < p1 * kL4Panel && col < a.n; ++col) {
      const int64_t p = col / kL4Panel, c = col % kL4Panel;
      float acc = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        float t = 0.0f;
        for (int64_t k = g * a.group; k < (g + 1) * a.group; ++k) {
          const int u = code_at(a, p, c, k);
          t = std::fma(x[k], kNf4 ? kNf4Levels[u] : static_cast<float>(u - 8), t);
        }
        acc = std::fma(t, a.scales[g * np + col], acc);
      }
      a.y[m * a.ldy + col] = a.bias ? acc + a.bias[col] : acc;
    }
  }
}

}  // namespace

void linear_f32_s4w_f32(const Linear4Args& a, int64_t p0, int64_t p1) { linear_float<false>(a, p0, p1); }
void linear_f32_nf4w_f32(const Linear4Args& a, int64_t p0, int64_t p1) { linear_float<true>(a, p0, p1); }

namespace {

template <bool kNf4>
void linear_int8(const Linear4Args& a, int64_t p0, int64_t p1) {
  const int64_t groups = a.kp / a.group, np = l4_padded_n(a.n);
  for (int64_t m = 0; m < a.m; ++m) {
    const int8_t* x = a.xq + m * a.ldxq;
    for (int64_t col = p0 * kL4Panel; col < p1 * kL4Panel && col < a.n; ++col) {
      const int64_t p = col / kL4Panel, c = col % kL4Panel;
      float acc = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        int32_t d = 0;
        for (int64_t k = g * a.group; k < (g + 1) * a.group; ++k) {
          const int u = code_at(a, p, c, k);
          d += (kNf4 ? kNf4Int8Levels[u] : u) * x[k];
        }
        if (!kNf4) d -= a.xsum8[m * groups + g];
        acc += (static_cast<float>(d) * a.scales[g * np + col]) * a.xscale[m * groups + g];
      }
      a.y[m * a.ldy + col] = a.bias ? acc + a.bias[col] : acc;
    }
  }
}

}  // namespace

void linear_s8_s4w_f32(const Linear4Args& a, int64_t p0, int64_t p1) { linear_int8<false>(a, p0, p1); }
void linear_s8_nf4w_f32(const Linear4Args& a, int64_t p0, int64_t p1) { linear_int8<true>(a, p0, p1); }

void quantize_row_s8_groups(const float* x, int64_t k, int64_t kp, int64_t group, int8_t* xq, float* xscale,
                            int32_t* xsum8) {
  for (int64_t g = 0; g * group < kp; ++g) {
    const int64_t b = g * group, e = b + group < k ? b + group : k;
    float amax = 0.0f;
    bool finite = true;
    for (int64_t i = b; i < e; ++i) {
      finite = finite && std::isfinite(x[i]);
      amax = std::fabs(x[i]) > amax ? std::fabs(x[i]) : amax;
    }
    const float inv = !finite || amax == 0.0f ? 0.0f : std::fmin(127.0f / amax, FLT_MAX);
    int32_t sum = 0;
    for (int64_t i = b; i < b + group; ++i) {
      int32_t q = 0;
      if (i < e && inv != 0.0f) {
        const float v = std::nearbyint(x[i] * inv);
        q = static_cast<int32_t>(std::fmax(-127.0f, std::fmin(127.0f, v)));
      }
      xq[i] = static_cast<int8_t>(q);
      sum += q;
    }
    xscale[g] = finite ? amax / 127.0f : NAN;
    xsum8[g] = 8 * sum;
  }
}

}  // namespace ref
}  // namespace lowbit
