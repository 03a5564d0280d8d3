// Reference layer: the scalar depthwise convolution kernel (lowbit::ref) and its per-output step,
// which the SIMD kernels also use for their channel tails.
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/conv_depthwise.hpp"
#include "reference/scalar.hpp"

namespace lowbit {
namespace ref {
void conv2d_depthwise_f32_s8w_f32(const DwConvArgs& a, int64_t r0, int64_t r1);
// The same outputs y, quantized to out_u8 (quantize_one with the out_* parameters).
void conv2d_depthwise_u8_s8w_u8(const DwConvArgs& a, int64_t r0, int64_t r1);
}  // namespace ref

namespace detail {
// Output (b, oy, ox, ch): v = sum over the taps inside the image of (img - zero_point) * weight
// (int32, exact: |v| <= 255 * 128 * kh * kw), then y = float(v) * scale[ch] (+ bias[ch]), ReLU
// as std::max(y, 0) (NaN stays): the int8 GEMM epilogue's steps in its order.
inline float dw_conv_one(const DwConvArgs& a, int64_t b, int64_t oy, int64_t ox, int64_t ch) {
  int32_t acc = 0;
  for (int64_t ky = 0; ky < a.kh; ++ky) {
    const int64_t iy = oy * a.stride_h - a.pad_h + ky * a.dil_h;
    if (iy < 0 || iy >= a.h) continue;
    for (int64_t kx = 0; kx < a.kw; ++kx) {
      const int64_t ix = ox * a.stride_w - a.pad_w + kx * a.dil_w;
      if (ix < 0 || ix >= a.w) continue;
      const int32_t x = a.img[((b * a.h + iy) * a.w + ix) * a.c + ch];
      acc += (x - a.zero_point) * static_cast<int32_t>(a.weight[(ky * a.kw + kx) * a.c + ch]);
    }
  }
  float y = static_cast<float>(acc) * a.scale[ch];
  if (a.bias != nullptr) y = y + a.bias[ch];
  if (a.relu) y = std::max(y, 0.0f);
  return y;
}
}  // namespace detail
}  // namespace lowbit
