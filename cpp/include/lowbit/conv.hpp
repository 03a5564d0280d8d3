// lowbit/conv.hpp: the quantized convolution op (ops/conv.cpp) on packed int8 weights. Public C++
// API of the convolution family; its patches are lowbit/im2col.hpp, its GEMM lowbit/matmul.hpp.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "lowbit/im2col.hpp"
#include "lowbit/matmul.hpp"

namespace lowbit {

// Quantized input and output of a convolution chained to its neighbours (static int8 models keep
// activations as bytes between consecutive convolutions).
// - img (not null): the input is this dense NHWC uint8 image (n, h, w, c), already quantized with the
//   layer's static activation parameters (uint8 domain); x is not read.
// - out_u8: the output is uint8 (same shape as the float output): the float result y (bytes for
//   bytes the float output) clamped to [out_lo, out_hi] then quantized with (out_scale,
//   out_zero_point) (uint8 domain) by the quantize contract, i.e. computed as
//   clamp(q(y), q(out_lo), q(out_hi)) (q is monotone; -inf / +inf bounds leave [0, 255]).
struct ConvIO {
  const uint8_t* img = nullptr;
  bool out_u8 = false;
  float out_scale = 1.0f;
  int32_t out_zero_point = 0;
  float out_lo = 0.0f, out_hi = 0.0f;  // ReLU: (0, +inf), ReLU6: (0, 6), none: (-inf, +inf)
};

// A convolution with static (per-tensor) activations: im2col_nhwc(geom, x) then linear_packed with
// p.act == kStatic, bit for bit, but the image is quantized once and the patches are built from
// its bytes (padding = the zero point). p.act == kDynamicTensor takes the parameters from the
// image's range (the patches' range when every pixel lies in some window; the caller checks that).
// out: (n_img * ho * wo) x n.
void conv2d_static_packed(const Im2colArgs& geom, const float* x, const int8_t* packed, const int32_t* colsum,
                          const float* col_scale, int64_t n, const LinearParams& p, void* out,
                          const ConvIO& io = ConvIO{});

// A depthwise convolution (one kh x kw filter per channel, groups == channels) with int8 weights
// (c, kh * kw) and per-channel scales w_scale (c): the image is quantized once to uint8 with
// (act_scale, act_zero_point) (uint8 domain; dynamic: from the image's finite range and 0, as
// conv2d_static_packed), v = sum over the taps inside the image of (q - zero_point) * w (int32,
// exact; padding contributes 0, i.e. is the zero point), y = float(v) * (act_scale * w_scale[ch])
// (+ bias[ch]), ReLU: the int8 GEMM epilogue. out: (n * ho * wo, c) float32 (uint8 with io.out_u8).
// Multithreaded.
void conv2d_depthwise(const Im2colArgs& geom, const float* x, const int8_t* weight, const float* w_scale,
                      const float* bias, bool dynamic, float act_scale, int32_t act_zero_point, bool relu, void* out,
                      const ConvIO& io = ConvIO{});

// conv2d_depthwise with its weights laid out once for every kernel (a layer called many times):
// weight (c, kh * kw), w_scale (c) and bias (c or nullptr) are copied; run() takes the rest of
// conv2d_depthwise's arguments (geom.c == c, geom.kh == kh, geom.kw == kw). The per-channel
// parameters of the last activation and output quantization are kept for the next call with the
// same ones (static layers). Calls may run concurrently.
class DepthwiseConv {
 public:
  DepthwiseConv(const int8_t* weight, const float* w_scale, const float* bias, int64_t c, int64_t kh, int64_t kw);
  void run(const Im2colArgs& geom, const float* x, bool dynamic, float act_scale, int32_t act_zero_point, bool relu,
           void* out, const ConvIO& io = ConvIO{}) const;

 private:
  struct Params;  // per-channel parameters of one activation / output quantization (ops/conv_depthwise.cpp)
  std::shared_ptr<const Params> params(float s, int32_t z, bool relu, const ConvIO& io) const;

  mutable std::mutex mu_;
  mutable std::shared_ptr<const Params> last_;  // under mu_
  int64_t c_, kh_, kw_, c_pad_, c_pad64_, body_c_;
  int tail_rows_;
  std::vector<int8_t> wt_, wcol_;  // tap-major; the 3x3 vpdpbusd layout (kernels/conv_depthwise.hpp)
  std::vector<int16_t> we_, wo_;   // widened, odd / even channels zeroed
  std::vector<float> w_scale_, bias_, bias4_;
  std::vector<int32_t> wsum_;    // sum of each channel's taps
  std::vector<int64_t> order4_;  // c_pad64 positions of the vpdpbusd layouts: channel, or -1
  std::vector<double> wabs_;     // 255 * sum of |tap|: a bound on |accumulator|
};

}  // namespace lowbit
