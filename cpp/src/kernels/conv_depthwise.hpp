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
  // uint8-output kernels (conv2d_depthwise_u8_s8w_u8): out_u8 like out (same rows), each y written as
  // quantize_one(y, out_inv, out_zero_point, out_qmin, out_qmax); zp_wsum (c_pad): zero_point times the
  // sum of the channel's taps (zeros past c), for kernels that subtract the zero point once per output.
  uint8_t* out_u8;
  float out_inv;
  int32_t out_zero_point, out_qmin, out_qmax;
  const int32_t* zp_wsum;
  // 3x3 u8 kernels on 4-byte dot products (vpdpbusd), 64 bytes of channels per block (c_pad64 = c
  // rounded up to 64) in vpunpck order: position j * 16 + l * 4 + k holds lane 16 l + 4 j + k.
  // Blocks from channel 0 below body_c hold channels cb + lane (body_c = c when there is no tail
  // block; its last block masked). The tail block, channels [body_c, c) (body_c a multiple of 64,
  // at most 64 / tail_rows channels; tail_rows 0: none), serves tail_rows output rows at once,
  // lane holding channel body_c + lane % (64 / tail_rows). wcol (c_pad64 / 64, 3 kx, 4 j, 64) int8:
  // dword (l, k) of vector j holds taps (0, kx), (1, kx), (2, kx), 0 of its channel (0 past c), to
  // meet one image column's three rows. scale4, bias4 (or nullptr) and zp_wsum4 (c_pad64): each
  // position's channel's. nan_free: bias finite and out_inv finite (y * out_inv is never NaN).
  // fast: also |y * out_inv| < 2^30 for every accumulator, so it is rounded in int32 and clamped
  // as int16 to [q_lo, q_hi] (q_lo = max(out_qmin, out_zero_point) under ReLU, else out_qmin).
  // wcol nullptr: not prepared (the per-tap loops run).
  const int8_t* wcol;
  const float* scale4;
  const float* bias4;
  const int32_t* zp_wsum4;
  int64_t c_pad64, body_c;
  int tail_rows;
  bool nan_free, fast;
  int32_t q_lo, q_hi;
  bool stream_out;  // the uint8 output is much larger than the caches: non-temporal stores where aligned
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
namespace avx512vnni {
void conv2d_depthwise_u8_s8w_u8(const DwConvArgs& a, int64_t r0, int64_t r1);
}
}  // namespace kernels
}  // namespace lowbit
