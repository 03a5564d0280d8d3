// Reference (scalar) 4-bit-weight linear kernels: the C++ spec of the packed layout and numerics.
#include "reference/linear4.hpp"

#include "lowbit/formats.hpp"

namespace lowbit {
namespace ref {
namespace {

inline int code_at(const uint8_t* row, int64_t k) {
  const uint8_t b = row[(k / 32) * 16 + (k % 16)];
  return (k % 32) < 16 ? (b & 15) : (b >> 4);
}

template <bool kNf4>
void linear4(const Linear4Args& a, int64_t n0, int64_t n1) {
  const int64_t groups = a.k / a.group;
  for (int64_t m = 0; m < a.m; ++m) {
    const float* x = a.x + m * a.ldx;
    for (int64_t n = n0; n < n1; ++n) {
      const uint8_t* row = a.w + n * (a.k / 2);
      float acc = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        float t = 0.0f;
        for (int64_t k = g * a.group; k < (g + 1) * a.group; ++k) {
          const int c = code_at(row, k);
          const float v = kNf4 ? kNf4Levels[c] : static_cast<float>(c >= 8 ? c - 16 : c);
          t += x[k] * v;
        }
        acc += t * a.scales[n * groups + g];
      }
      a.y[m * a.ldy + n] = a.bias ? acc + a.bias[n] : acc;
    }
  }
}

}  // namespace

void linear_f32_s4w_f32(const Linear4Args& a, int64_t n0, int64_t n1) { linear4<false>(a, n0, n1); }
void linear_f32_nf4w_f32(const Linear4Args& a, int64_t n0, int64_t n1) { linear4<true>(a, n0, n1); }

}  // namespace ref
}  // namespace lowbit
