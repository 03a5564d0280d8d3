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

}  // namespace lowbit
