// Quantized depthwise convolution op (ops layer): the image quantized once to NHWC bytes (as the
// byte-patch convolution does), weights widened for the kernels, rows of output over threads.
#include "dispatch/conv_depthwise.hpp"

#include <algorithm>
#include <memory>
#include <vector>

#include "lowbit/conv.hpp"
#include "ops/gemm_ops.hpp"

namespace lowbit {

void conv2d_depthwise(const Im2colArgs& geom, const float* x, const int8_t* weight, const float* w_scale,
                      const float* bias, bool dynamic, float act_scale, int32_t act_zero_point, bool relu, void* out,
                      const ConvIO& io) {
  const int64_t c = geom.c, taps = geom.kh * geom.kw, rows = geom.n * geom.ho;
  if (rows == 0 || geom.wo == 0 || c == 0) return;
  float s = act_scale;
  int32_t z = act_zero_point;
  std::unique_ptr<uint8_t[]> own;  // the image, unless the previous layer wrote it as bytes
  if (io.img == nullptr) own = detail::quantize_image_u8(geom, x, dynamic, &s, &z);
  const int64_t cp = (c + 31) / 32 * 32;
  std::vector<int8_t> wt(static_cast<size_t>(taps * c));
  std::vector<int16_t> we(static_cast<size_t>(taps * cp), 0), wo(we);
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t t = 0; t < taps; ++t) {
      const int8_t v = weight[ch * taps + t];
      wt[t * c + ch] = v;
      (ch % 2 == 0 ? we : wo)[t * cp + ch] = v;
    }
  std::vector<float> scale(static_cast<size_t>(cp), 0.0f), b;
  for (int64_t ch = 0; ch < c; ++ch) scale[ch] = s * w_scale[ch];  // the GEMM epilogue's row x column scale
  if (bias != nullptr) {
    b.assign(static_cast<size_t>(cp), 0.0f);
    std::copy(bias, bias + c, b.begin());
  }
  DwConvArgs a{};
  a.img = io.img != nullptr ? io.img : own.get();
  a.n = geom.n;
  a.h = geom.h;
  a.w = geom.w;
  a.c = c;
  a.kh = geom.kh;
  a.kw = geom.kw;
  a.stride_h = geom.stride_h;
  a.stride_w = geom.stride_w;
  a.pad_h = geom.pad_h;
  a.pad_w = geom.pad_w;
  a.dil_h = geom.dil_h;
  a.dil_w = geom.dil_w;
  a.ho = geom.ho;
  a.wo = geom.wo;
  a.zero_point = z;
  a.weight = wt.data();
  a.w_even = we.data();
  a.w_odd = wo.data();
  a.c_pad = cp;
  a.scale = scale.data();
  a.bias = bias != nullptr ? b.data() : nullptr;
  a.relu = relu;
  const kernels::DwConvFn fn = dispatch::conv2d_depthwise_f32_s8w_f32.get();
  if (!io.out_u8) {
    a.out = static_cast<float*>(out);
    a.out_r0 = 0;
    detail::for_rows(rows, geom.wo * c * taps, [&](int64_t r0, int64_t r1) { fn(a, r0, r1); });
    return;
  }
  // uint8 output: blocks of output rows into a float buffer that stays in L1/L2, requantized at once
  const int64_t row_elems = geom.wo * c;
  const int64_t block = std::max<int64_t>(1, (int64_t{16} << 10) / std::max<int64_t>(row_elems, 1));
  uint8_t* const o8 = static_cast<uint8_t*>(out);
  detail::for_rows(rows, row_elems * taps, [&](int64_t r0, int64_t r1) {
    std::unique_ptr<float[]> y(new float[static_cast<size_t>(std::min(block, r1 - r0) * row_elems)]);
    DwConvArgs t = a;
    t.out = y.get();
    for (int64_t b0 = r0; b0 < r1; b0 += block) {
      const int64_t b1 = std::min(r1, b0 + block);
      t.out_r0 = b0;
      fn(t, b0, b1);
      detail::requantize_u8(y.get(), (b1 - b0) * row_elems, io, o8 + b0 * row_elems);
    }
  });
}

}  // namespace lowbit
