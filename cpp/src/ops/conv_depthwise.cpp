// Quantized depthwise convolution op (ops layer): the image quantized once to NHWC bytes (as the
// byte-patch convolution does), weights widened for the kernels, rows of output over threads.
#include "dispatch/conv_depthwise.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "lowbit/conv.hpp"
#include "ops/gemm_ops.hpp"
#include "reference/scalar.hpp"

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
  if (!io.out_u8) {
    const kernels::DwConvFn fn = dispatch::conv2d_depthwise_f32_s8w_f32.get();
    a.out = static_cast<float*>(out);
    a.out_r0 = 0;
    detail::for_rows(rows, geom.wo * c * taps, [&](int64_t r0, int64_t r1) { fn(a, r0, r1); });
    return;
  }
  uint8_t* const o8 = static_cast<uint8_t*>(out);
  const int64_t row_elems = geom.wo * c;
  // uint8 output: the fused kernel (quantized in registers) where it is the best ISA's, or the
  // reference at the scalar level; otherwise the float kernel's rows, requantized per block below
  if (dispatch::conv2d_depthwise_u8_s8w_u8.chosen() != Isa::kScalar ||
      dispatch::conv2d_depthwise_f32_s8w_f32.chosen() == Isa::kScalar) {
    const kernels::DwConvFn fn8 = dispatch::conv2d_depthwise_u8_s8w_u8.get();
    std::vector<int32_t> zw(static_cast<size_t>(cp), 0);
    for (int64_t ch = 0; ch < c; ++ch) {
      int32_t sum = 0;
      for (int64_t t = 0; t < taps; ++t) sum += weight[ch * taps + t];
      zw[ch] = z * sum;  // |z * sum| <= 255 * 128 * taps: int32 for taps < 65793
    }
    const float inv = 1.0f / io.out_scale;
    a.out = nullptr;
    a.out_r0 = 0;
    a.out_u8 = o8;
    a.out_inv = inv;
    a.out_zero_point = io.out_zero_point;
    a.out_qmin = detail::quantize_one(io.out_lo, inv, io.out_zero_point, 0, 255);
    a.out_qmax = detail::quantize_one(io.out_hi, inv, io.out_zero_point, 0, 255);
    a.zp_wsum = zw.data();
    // 3x3 with more than 32 channels: the 4-tap (vpdpbusd) layout of the weights and parameters
    const int64_t cp64 = (c + 63) / 64 * 64;
    const bool pair32 = geom.kh == 3 && geom.kw == 3 && c == 32 && geom.stride_w == 1 && geom.dil_w == 1;
    const bool dot4 = geom.kh == 3 && geom.kw == 3 && (c > 32 || pair32);
    std::vector<int8_t> w4(dot4 ? static_cast<size_t>(cp64 / 64 * 3 * 256) : 0, 0);
    std::vector<float> sc4(dot4 ? static_cast<size_t>(cp64) : 0, 0.0f), b4(bias != nullptr ? sc4.size() : 0, 0.0f);
    std::vector<int32_t> zw4(sc4.size(), 0);
    bool nan_free = std::isfinite(inv);
    for (int64_t ch = 0; bias != nullptr && ch < c; ++ch) nan_free = nan_free && std::isfinite(bias[ch]);
    for (int64_t pos = 0; dot4 && pos < cp64; ++pos) {
      const int64_t blk = pos / 64, j = (pos % 64) / 16, l = (pos % 16) / 4, k = pos % 4;
      int64_t ch = blk * 64 + 16 * l + 4 * j + k;
      if (pair32) ch %= 32;  // two pixels of 32 channels per 64-byte step
      if (ch >= c) continue;
      sc4[pos] = scale[ch];
      zw4[pos] = zw[ch];
      if (bias != nullptr) b4[pos] = bias[ch];
      for (int64_t t = 0; t < taps; ++t)
        w4[((blk * 3 + t / 4) * 4 + j) * 64 + l * 16 + k * 4 + t % 4] = weight[ch * taps + t];
    }
    a.w4 = dot4 ? w4.data() : nullptr;
    a.scale4 = sc4.data();
    a.bias4 = bias != nullptr ? b4.data() : nullptr;
    a.zp_wsum4 = zw4.data();
    a.c_pad64 = cp64;
    a.nan_free = nan_free;
    a.pair32 = pair32;
    detail::for_rows(rows, row_elems * taps, [&](int64_t r0, int64_t r1) { fn8(a, r0, r1); });
    return;
  }
  const int64_t block = std::max<int64_t>(1, (int64_t{16} << 10) / std::max<int64_t>(row_elems, 1));
  const kernels::DwConvFn fn = dispatch::conv2d_depthwise_f32_s8w_f32.get();
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
