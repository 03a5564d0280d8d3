// lowbit/conv.hpp: the quantized convolution op (ops/conv.cpp) on packed int8 weights. Public C++
// API of the convolution family; its patches are lowbit/im2col.hpp, its GEMM lowbit/matmul.hpp.
#pragma once

#include <cstdint>

#include "lowbit/im2col.hpp"
#include "lowbit/matmul.hpp"

namespace lowbit {

// A convolution with static (per-tensor) activations: im2col_nhwc(geom, x) then linear_packed with
// p.act == kStatic, bit for bit, but the image is quantized once and the patches are built from
// its bytes (padding = the zero point). p.act == kDynamicTensor takes the parameters from the
// image's range (the patches' range when every pixel lies in some window; the caller checks that).
// out: (n_img * ho * wo) x n.
void conv2d_static_packed(const Im2colArgs& geom, const float* x, const int8_t* packed, const int32_t* colsum,
                          const float* col_scale, int64_t n, const LinearParams& p, void* out);

// A depthwise convolution (one kh x kw filter per channel, groups == channels) with int8 weights
// (c, kh * kw) and per-channel scales w_scale (c): the image is quantized once to uint8 with
// (act_scale, act_zero_point) (uint8 domain; dynamic: from the image's finite range and 0, as
// conv2d_static_packed), v = sum over the taps inside the image of (q - zero_point) * w (int32,
// exact; padding contributes 0, i.e. is the zero point), y = float(v) * (act_scale * w_scale[ch])
// (+ bias[ch]), ReLU: the int8 GEMM epilogue. out: (n * ho * wo, c) float32. Multithreaded.
void conv2d_depthwise(const Im2colArgs& geom, const float* x, const int8_t* weight, const float* w_scale,
                      const float* bias, bool dynamic, float act_scale, int32_t act_zero_point, bool relu, float* out);

}  // namespace lowbit
