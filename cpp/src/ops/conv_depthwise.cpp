// Quantized depthwise convolution op (ops layer): the image quantized once to NHWC bytes (as the
// byte-patch convolution does), weights widened for the kernels, rows of output over threads.
#include "dispatch/conv_depthwise.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <vector>

#include "lowbit/conv.hpp"
#include "ops/gemm_ops.hpp"
#include "reference/scalar.hpp"

namespace lowbit {
namespace {
// uint8 results of this many bytes or more may be written with non-temporal stores
constexpr int64_t kStreamOutBytes = int64_t{2} << 20;
}  // namespace

DepthwiseConv::DepthwiseConv(const int8_t* weight, const float* w_scale, const float* bias, int64_t c, int64_t kh,
                             int64_t kw)
    : c_(c), kh_(kh), kw_(kw), c_pad_((c + 31) / 32 * 32), c_pad64_((c + 63) / 64 * 64), body_c_(c), tail_rows_(0) {
  const int64_t taps = kh * kw, cp = c_pad_;
  wt_.assign(static_cast<size_t>(taps * c), 0);
  we_.assign(static_cast<size_t>(taps * cp), 0);
  wo_ = we_;
  wsum_.assign(static_cast<size_t>(cp), 0);
  wabs_.assign(static_cast<size_t>(c), 0.0);
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t t = 0; t < taps; ++t) {
      const int8_t v = weight[ch * taps + t];
      wt_[t * c + ch] = v;
      (ch % 2 == 0 ? we_ : wo_)[t * cp + ch] = v;
      wsum_[ch] += v;
      wabs_[ch] += 255.0 * std::abs(static_cast<double>(v));
    }
  w_scale_.assign(w_scale, w_scale + c);
  if (bias != nullptr) {
    bias_.assign(static_cast<size_t>(cp), 0.0f);
    std::copy(bias, bias + c, bias_.begin());
  }
  if (kh != 3 || kw != 3) return;
  // 3x3: the vpdpbusd layout. A tail of at most 32 channels past the whole 64-channel blocks serves
  // 4 (up to 16 channels) or 2 output rows per vector; a wider one is a masked block.
  const int64_t tail = c % 64;
  if (tail != 0 && tail <= 32) {
    body_c_ = c - tail;
    tail_rows_ = tail <= 16 ? 4 : 2;
  }
  order4_.assign(static_cast<size_t>(c_pad64_), -1);
  wcol_.assign(static_cast<size_t>(c_pad64_ / 64 * 768), 0);
  if (bias != nullptr) bias4_.assign(static_cast<size_t>(c_pad64_), 0.0f);
  for (int64_t pos = 0; pos < c_pad64_; ++pos) {
    const int64_t blk = pos / 64, j = (pos % 64) / 16, lk = pos % 16;  // lk: dword l * 4 + k
    const int64_t lane = 16 * (lk / 4) + 4 * j + lk % 4;  // the tail repeats its channels every 64 / tail_rows_ bytes
    const int64_t ch = blk * 64 < body_c_ ? blk * 64 + lane : blk * 64 + lane % (64 / std::max(tail_rows_, 1));
    if (ch >= c) continue;
    order4_[pos] = ch;
    const int8_t* w = weight + ch * taps;
    for (int64_t kx = 0; kx < 3; ++kx)
      for (int64_t ky = 0; ky < 3; ++ky) wcol_[((blk * 3 + kx) * 4 + j) * 64 + lk * 4 + ky] = w[ky * 3 + kx];
    if (bias != nullptr) bias4_[pos] = bias[ch];
  }
}

void conv2d_depthwise(const Im2colArgs& geom, const float* x, const int8_t* weight, const float* w_scale,
                      const float* bias, bool dynamic, float act_scale, int32_t act_zero_point, bool relu, void* out,
                      const ConvIO& io) {
  DepthwiseConv(weight, w_scale, bias, geom.c, geom.kh, geom.kw)
      .run(geom, x, dynamic, act_scale, act_zero_point, relu, out, io);
}

struct DepthwiseConv::Params {
  float s;  // the key: activation scale and zero point (uint8 domain), ReLU, output quantization
  int32_t z;
  bool relu, out_u8;
  float out_scale, out_lo, out_hi;
  int32_t out_zero_point;
  std::vector<float> scale;  // (c_pad): s * w_scale, zeros past c
  // uint8 output: the kernels' DwConvArgs fields
  std::vector<int32_t> zw, zw4;
  std::vector<float> scale4;
  float inv = 0.0f;
  int32_t qmin = 0, qmax = 0, q_lo = 0, q_hi = 0;
  bool nan_free = false, fast = false;

  bool same(float s2, int32_t z2, bool relu2, const ConvIO& io) const {
    return s == s2 && z == z2 && relu == relu2 && out_u8 == io.out_u8 &&
           (!out_u8 || (out_scale == io.out_scale && out_zero_point == io.out_zero_point && out_lo == io.out_lo &&
                        out_hi == io.out_hi));
  }
};

std::shared_ptr<const DepthwiseConv::Params> DepthwiseConv::params(float s, int32_t z, bool relu,
                                                                   const ConvIO& io) const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (last_ != nullptr && last_->same(s, z, relu, io)) return last_;
  }
  auto p = std::make_shared<Params>();
  p->s = s;
  p->z = z;
  p->relu = relu;
  p->out_u8 = io.out_u8;
  p->out_scale = io.out_scale;
  p->out_lo = io.out_lo;
  p->out_hi = io.out_hi;
  p->out_zero_point = io.out_zero_point;
  const int64_t c = c_;
  p->scale.assign(static_cast<size_t>(c_pad_), 0.0f);
  for (int64_t ch = 0; ch < c; ++ch) p->scale[ch] = s * w_scale_[ch];  // the GEMM epilogue's row x column scale
  if (io.out_u8) {
    p->zw.assign(static_cast<size_t>(c_pad_), 0);
    for (int64_t ch = 0; ch < c; ++ch)
      p->zw[ch] = z * wsum_[ch];  // |z * sum| <= 255 * 128 * taps: int32 for taps < 65793
    p->inv = 1.0f / io.out_scale;
    p->qmin = detail::quantize_one(io.out_lo, p->inv, io.out_zero_point, 0, 255);
    p->qmax = detail::quantize_one(io.out_hi, p->inv, io.out_zero_point, 0, 255);
    // 3x3: the vpdpbusd parameters in the layout's order, and whether the int16 epilogue is exact
    p->scale4.assign(wcol_.empty() ? 0 : static_cast<size_t>(c_pad64_), 0.0f);
    p->zw4.assign(p->scale4.size(), 0);
    bool nan_free = std::isfinite(p->inv), bounded = nan_free;
    for (int64_t ch = 0; !bias_.empty() && ch < c; ++ch) nan_free = nan_free && std::isfinite(bias_[ch]);
    for (size_t pos = 0; pos < p->scale4.size(); ++pos) {
      const int64_t ch = order4_[pos];
      if (ch < 0) continue;
      p->scale4[pos] = p->scale[ch];
      p->zw4[pos] = p->zw[ch];
      // |y * inv| with y = float(acc) * scale + bias, in double with room for float rounding
      const double y = wabs_[ch] * std::abs(static_cast<double>(p->scale[ch])) +
                       (bias_.empty() ? 0.0 : std::abs(static_cast<double>(bias_[ch])));
      bounded = bounded && y * 1.01 * static_cast<double>(p->inv) < 1073741824.0;
    }
    p->nan_free = nan_free;
    p->fast = nan_free && bounded;
    p->q_lo = relu ? std::max(p->qmin, io.out_zero_point) : p->qmin;
    p->q_hi = p->qmax;
  }
  std::lock_guard<std::mutex> lock(mu_);
  last_ = p;
  return p;
}

void DepthwiseConv::run(const Im2colArgs& geom, const float* x, bool dynamic, float act_scale, int32_t act_zero_point,
                        bool relu, void* out, const ConvIO& io) const {
  const int64_t c = geom.c, taps = geom.kh * geom.kw, rows = geom.n * geom.ho;
  if (c != c_ || geom.kh != kh_ || geom.kw != kw_) throw std::invalid_argument("DepthwiseConv: geometry mismatch");
  if (rows == 0 || geom.wo == 0 || c == 0) return;
  float s = act_scale;
  int32_t z = act_zero_point;
  std::unique_ptr<uint8_t[]> own;  // the image, unless the previous layer wrote it as bytes
  if (io.img == nullptr) own = detail::quantize_image_u8(geom, x, dynamic, &s, &z);
  const std::shared_ptr<const Params> p = params(s, z, relu, io);
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
  a.weight = wt_.data();
  a.w_even = we_.data();
  a.w_odd = wo_.data();
  a.c_pad = c_pad_;
  a.scale = p->scale.data();
  a.bias = bias_.empty() ? nullptr : bias_.data();
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
    a.out = nullptr;
    a.out_r0 = 0;
    a.out_u8 = o8;
    a.out_inv = p->inv;
    a.out_zero_point = io.out_zero_point;
    a.out_qmin = p->qmin;
    a.out_qmax = p->qmax;
    a.zp_wsum = p->zw.data();
    a.wcol = wcol_.empty() ? nullptr : wcol_.data();
    a.scale4 = p->scale4.data();
    a.bias4 = bias4_.empty() ? nullptr : bias4_.data();
    a.zp_wsum4 = p->zw4.data();
    a.c_pad64 = c_pad64_;
    a.body_c = body_c_;
    a.tail_rows = tail_rows_;
    a.nan_free = p->nan_free;
    a.fast = p->fast;
    a.q_lo = p->q_lo;
    a.q_hi = p->q_hi;
    a.stream_out = rows * row_elems >= kStreamOutBytes;
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
