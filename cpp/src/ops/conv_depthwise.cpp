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
                      const float* bias, bool dynamic, float act_scale, int32_t act_zero_point, bool relu, float* out) {
  const int64_t c = geom.c, taps = geom.kh * geom.kw, rows = geom.n * geom.ho;
  if (rows == 0 || geom.wo == 0 || c == 0) return;
  float s = act_scale;
  int32_t z = act_zero_point;
  std::unique_ptr<uint8_t[]> img = detail::quantize_image_u8(geom, x, dynamic, &s, &z);
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
  a.img = img.get();
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
  a.out = out;
  const kernels::DwConvFn fn = dispatch::conv2d_depthwise_f32_s8w_f32.get();
  detail::for_rows(rows, geom.wo * c * taps, [&](int64_t r0, int64_t r1) { fn(a, r0, r1); });
}

}  // namespace lowbit
