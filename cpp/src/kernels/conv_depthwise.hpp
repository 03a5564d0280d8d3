// Kernels layer: the depthwise convolution kernels (kernels/<isa>/conv_depthwise.cpp), their
// arguments and type; the contract is the reference's (reference/conv_depthwise.hpp).
#pragma once

#include <cstdint>

namespace lowbit {

// A depthwise convolution (groups == channels, one filter per channel) on a quantized image.
struct DwConvArgs {
  const uint8_t* img;  // dense NHWC uint8 image (n, h, w, c)
  int64_t n, h, w, c;
  int64_t kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int64_t ho, wo;
  int32_t zero_point;     // of the image (uint8 domain); padding contributes 0
  const int8_t* weight;   // (kh * kw, c) tap-major int8 (reference)
  const int16_t* w_even;  // (kh * kw, c_pad): weight widened to int16, odd channels zeroed (SIMD)
  const int16_t* w_odd;   // the same with even channels zeroed
  int64_t c_pad;          // c rounded up to 32
  const float* scale;     // (c_pad): act_scale * weight_scale[ch], zeros past c
  const float* bias;      // (c_pad) or nullptr
  bool relu;
  float* out;      // (n * ho * wo, c) row-major: output row r (of n * ho) at out + (r - out_r0) * wo * c
  int64_t out_r0;  // 0, or the first row of a block buffer
};

namespace kernels {
// Output rows [r0, r1) of the (n * ho) rows (image b = r / ho, output row oy = r % ho).
using DwConvFn = void (*)(const DwConvArgs& a, int64_t r0, int64_t r1);
namespace avx2 {
void conv2d_depthwise_f32_s8w_f32(const DwConvArgs& a, int64_t r0, int64_t r1);
}
namespace avx512 {
void conv2d_depthwise_f32_s8w_f32(const DwConvArgs& a, int64_t r0, int64_t r1);
}
}  // namespace kernels
}  // namespace lowbit
