// Bindings for the convolution family (im2col patches, the byte-patch quantized conv2d): validate
// the arrays and geometry, allocate the result, release the GIL. No arithmetic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "common.hpp"
#include "lowbit/conv.hpp"
#include "lowbit/im2col.hpp"

namespace lowbit {
namespace bind {

namespace {
// The kernel size, stride, padding and dilation of a convolution, each checked on its own.
void check_conv_params(int64_t kh, int64_t kw, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,
                       int64_t dil_h, int64_t dil_w) {
  if (kh < 1 || kw < 1) value_error("kernel_size: must be >= 1");
  if (stride_h < 1 || stride_w < 1) value_error("stride: must be >= 1");
  if (dil_h < 1 || dil_w < 1) value_error("dilation: must be >= 1");
  if (pad_h < 0 || pad_w < 0) value_error("padding: must be >= 0");
}
}  // namespace

Im2colArgs im2col_geometry(const py::array& x, int64_t kh, int64_t kw, int64_t stride_h, int64_t stride_w,
                           int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, bool allow_u8) {
  const bool u8 = allow_u8 && has_dtype<uint8_t>(x);
  if ((!has_dtype<float>(x) && !u8) || x.ndim() != 4)
    type_error(std::string("x: expected a 4-D (N, H, W, C) float32") + (allow_u8 ? " or uint8" : "") + " array, got " +
               dtype_str(x));
  if (u8 && !(x.flags() & py::array::c_style)) value_error("x: a uint8 image must be C-contiguous (N, H, W, C)");
  check_conv_params(kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w);
  Im2colArgs a{};
  a.x = u8 ? nullptr : static_cast<const float*>(x.data());
  a.n = x.shape(0);
  a.h = x.shape(1);
  a.w = x.shape(2);
  a.c = x.shape(3);
  const py::ssize_t es = u8 ? 1 : static_cast<py::ssize_t>(sizeof(float));
  for (int d = 0; d < 4; ++d)
    if (x.strides(d) % es != 0) value_error("x: strides must be whole elements");
  if (reinterpret_cast<uintptr_t>(x.data()) % es != 0) value_error("x: must be aligned to its element size");
  a.sn = x.strides(0) / es;
  a.sh = x.strides(1) / es;
  a.sw = x.strides(2) / es;
  a.sc = x.strides(3) / es;
  a.kh = kh;
  a.kw = kw;
  a.stride_h = stride_h;
  a.stride_w = stride_w;
  a.pad_h = pad_h;
  a.pad_w = pad_w;
  a.dil_h = dil_h;
  a.dil_w = dil_w;
  // Checked: a huge kernel, padding or dilation raises instead of wrapping around.
  const int64_t ph2 = checked_mul(2, pad_h, "padding"), pw2 = checked_mul(2, pad_w, "padding");
  const int64_t span_h = checked_mul(dil_h, kh - 1, "kernel_size"), span_w = checked_mul(dil_w, kw - 1, "kernel_size");
  const int64_t eh = checked_add(a.h, ph2, "padding") - span_h - 1, ew = checked_add(a.w, pw2, "padding") - span_w - 1;
  if (eh < 0 || ew < 0) value_error("x: input is smaller than the (dilated) kernel");
  a.ho = eh / stride_h + 1;
  a.wo = ew / stride_w + 1;
  checked_mul(checked_mul(a.n, a.ho, "x"), a.wo, "x");
  checked_mul(checked_mul(kh, kw, "kernel_size"), a.c, "kernel_size");
  return a;
}

namespace {

// The chained-layer input and output (lowbit::ConvIO): a uint8 x is the image already quantized with
// the layer's static activation parameters; out_scale > 0 asks for a uint8 output quantized with
// (out_scale, out_zero_point) of out dtype int8 (out_signed) or uint8 after clamping to [out_lo, out_hi].
ConvIO conv_io(const py::array& x, const std::string& act, double out_scale, int32_t out_zero_point, bool out_signed,
               double out_lo, double out_hi) {
  ConvIO io;
  if (has_dtype<uint8_t>(x)) {
    if (act != "static")
      value_error("x: a uint8 image needs act='static' (it is quantized with the layer's parameters)");
    io.img = static_cast<const uint8_t*>(x.data());
  }
  if (out_scale != 0.0) {
    if (!scale_ok(out_scale)) value_error("out_scale: must be finite and > 0 (or 0 for a float32 output)");
    const int32_t lo = out_signed ? -128 : 0, hi = out_signed ? 127 : 255;
    if (out_zero_point < lo || out_zero_point > hi)
      value_error("out_zero_point: " + std::to_string(out_zero_point) + " is outside [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "]");
    if (std::isnan(out_lo) || std::isnan(out_hi) || out_lo > out_hi)
      value_error("out_lo, out_hi: expected out_lo <= out_hi (infinite for no bound)");
    io.out_u8 = true;
    io.out_scale = static_cast<float>(out_scale);
    io.out_zero_point = out_zero_point + (out_signed ? 128 : 0);
    io.out_lo = static_cast<float>(out_lo);
    io.out_hi = static_cast<float>(out_hi);
  }
  return io;
}

py::array im2col_py(const py::array& x, int64_t kh, int64_t kw, int64_t stride_h, int64_t stride_w, int64_t pad_h,
                    int64_t pad_w, int64_t dil_h, int64_t dil_w) {
  const Im2colArgs a = im2col_geometry(x, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, false);
  py::array out(py::dtype::of<float>(), std::vector<int64_t>{a.n * a.ho * a.wo, kh * kw * a.c});
  float* o = static_cast<float*>(out.mutable_data());
  {
    py::gil_scoped_release release;
    im2col_nhwc(a, o);
  }
  return out;
}

// A convolution with byte patches (QuantConv2d's eager CPU path): x is the (N, H, W, C) image with
// any strides; the result is the (N * Ho * Wo, n) output, bit-identical to im2col +
// linear(act=act). act: "static", or "dynamic_per_tensor" with the range taken over the image
// (the patches' range when every pixel is in some patch; the caller checks that).
py::array conv2d_static_py(const py::array& x, const py::array& packed, const py::array& colsum, int64_t n,
                           const py::array& scale_in, const py::object& bias_in, int64_t kh, int64_t kw, int64_t sh,
                           int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, double act_scale,
                           int32_t act_zero_point, bool act_signed, bool relu, const std::string& act, double out_scale,
                           int32_t out_zero_point, bool out_signed, double out_lo, double out_hi) {
  const Im2colArgs g = im2col_geometry(x, kh, kw, sh, sw, ph, pw, dh, dw, true);
  const int64_t k = kh * kw * g.c;
  if (act != "static" && act != "dynamic_per_tensor")
    value_error("act: expected 'static' or 'dynamic_per_tensor', got '" + act + "'");
  const LinearCall c = prepare_linear_call(packed, colsum, n, k, scale_in, bias_in, act, act_scale, act_zero_point,
                                           act_signed, relu, py::none(), 0);
  const ConvIO io = conv_io(x, act, out_scale, out_zero_point, out_signed, out_lo, out_hi);
  const int64_t m = g.n * g.ho * g.wo;
  py::array out = io.out_u8 ? pooled_array<uint8_t>({m, n}) : linear_out(c, m, n);
  void* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    conv2d_static_packed(g, g.x, c.packed, c.colsum, c.scale.data(), n, c.p, o, io);
  }
  return out;
}

// A depthwise convolution (groups == channels) with its weights prepared once (lowbit::DepthwiseConv):
// weight int8 (C, kh * kw) in (kh, kw) order, scale float32 (C,) (> 0), bias float32 (C,) or None;
// act "static" (act_scale, act_zero_point in the act dtype's range, act_signed for int8) or
// "dynamic_per_tensor" (uint8 parameters from the image's finite range and 0). Called with x, the
// (N, H, W, C) float32 image with any strides (or the uint8 image of ConvIO), and the optional
// uint8 output parameters: result (N * Ho * Wo, C) float32, or uint8.
class DepthwiseConvPy {
 public:
  DepthwiseConvPy(const py::array& weight, const py::array& scale, const py::object& bias_in, int64_t kh, int64_t kw,
                  int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, double act_scale,
                  int32_t act_zero_point, bool act_signed, bool relu, const std::string& act)
      : kh_(kh), kw_(kw), sh_(sh), sw_(sw), ph_(ph), pw_(pw), dh_(dh), dw_(dw), relu_(relu), act_(act) {
    check_conv_params(kh, kw, sh, sw, ph, pw, dh, dw);
    require_dtype<int8_t>(weight, "weight", "an int8 array");
    require_contiguous(weight, "weight");
    if (weight.ndim() != 2 || weight.shape(1) != kh * kw)
      value_error("weight: expected shape (C, " + std::to_string(kh * kw) + ")");
    const int64_t c = weight.shape(0);
    const float* s = require_f32(scale, "scale");
    if (scale.ndim() != 1 || scale.shape(0) != c) value_error("scale: expected shape (" + std::to_string(c) + ",)");
    for (int64_t i = 0; i < c; ++i)
      if (!scale_ok(s[i])) value_error("scale: every weight scale must be finite and > 0");
    const float* b = nullptr;
    py::array bias;
    if (!bias_in.is_none()) {
      bias = py::array::ensure(bias_in);
      if (!bias) type_error("bias: expected a float32 array");
      b = require_f32(bias, "bias");
      if (bias.ndim() != 1 || bias.shape(0) != c) value_error("bias: expected shape (" + std::to_string(c) + ",)");
    }
    if (act == "dynamic_per_tensor") {
      dynamic_ = true;
      act_scale = 1.0;
      act_zero_point = 0;
    } else if (act == "static") {
      if (!scale_ok(act_scale)) value_error("act_scale: must be finite and > 0");
      const int32_t lo = act_signed ? -128 : 0, hi = act_signed ? 127 : 255;
      if (act_zero_point < lo || act_zero_point > hi)
        value_error("act_zero_point: " + std::to_string(act_zero_point) + " is outside [" + std::to_string(lo) + ", " +
                    std::to_string(hi) + "]");
      if (act_signed) act_zero_point += 128;
    } else {
      value_error("act: expected 'static' or 'dynamic_per_tensor', got '" + act + "'");
    }
    act_scale_ = static_cast<float>(act_scale);
    act_zero_point_ = act_zero_point;
    conv_ = std::make_shared<DepthwiseConv>(static_cast<const int8_t*>(weight.data()), s, b, c, kh, kw);
    c_ = c;
  }

  py::array operator()(const py::array& x, double out_scale, int32_t out_zero_point, bool out_signed, double out_lo,
                       double out_hi) const {
    const Im2colArgs g = im2col_geometry(x, kh_, kw_, sh_, sw_, ph_, pw_, dh_, dw_, true);
    if (g.c != c_)
      value_error("x: expected " + std::to_string(c_) + " channels (the weight's), got " + std::to_string(g.c));
    const ConvIO io = conv_io(x, act_, out_scale, out_zero_point, out_signed, out_lo, out_hi);
    const std::vector<int64_t> shape{g.n * g.ho * g.wo, g.c};
    py::array out = io.out_u8 ? pooled_array<uint8_t>(shape) : pooled_array<float>(shape);
    void* o = out.mutable_data();
    {
      py::gil_scoped_release release;
      conv_->run(g, g.x, dynamic_, act_scale_, act_zero_point_, relu_, o, io);
    }
    return out;
  }

 private:
  int64_t kh_, kw_, sh_, sw_, ph_, pw_, dh_, dw_, c_ = 0;
  bool relu_, dynamic_ = false;
  std::string act_;
  float act_scale_ = 1.0f;
  int32_t act_zero_point_ = 0;
  std::shared_ptr<const DepthwiseConv> conv_;
};

// The one-call form: DepthwiseConvPy built and called once (lowbit::conv2d_depthwise).
py::array conv2d_depthwise_py(const py::array& x, const py::array& weight, const py::array& scale,
                              const py::object& bias_in, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                              int64_t pw, int64_t dh, int64_t dw, double act_scale, int32_t act_zero_point,
                              bool act_signed, bool relu, const std::string& act, double out_scale,
                              int32_t out_zero_point, bool out_signed, double out_lo, double out_hi) {
  const Im2colArgs g = im2col_geometry(x, kh, kw, sh, sw, ph, pw, dh, dw, true);  // the geometry's errors first
  if (weight.ndim() != 2 || weight.shape(0) != g.c || weight.shape(1) != kh * kw)
    value_error("weight: expected shape (" + std::to_string(g.c) + ", " + std::to_string(kh * kw) + ")");
  return DepthwiseConvPy(weight, scale, bias_in, kh, kw, sh, sw, ph, pw, dh, dw, act_scale, act_zero_point, act_signed,
                         relu, act)(x, out_scale, out_zero_point, out_signed, out_lo, out_hi);
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("im2col", &im2col_py, py::arg("x"), py::arg("kh"), py::arg("kw"), py::arg("stride_h"), py::arg("stride_w"),
        py::arg("pad_h"), py::arg("pad_w"), py::arg("dil_h"), py::arg("dil_w"));
  m.def("conv2d_static", &conv2d_static_py, py::arg("x"), py::arg("packed"), py::arg("colsum"), py::arg("n"),
        py::arg("scale"), py::arg("bias"), py::arg("kh"), py::arg("kw"), py::arg("stride_h"), py::arg("stride_w"),
        py::arg("pad_h"), py::arg("pad_w"), py::arg("dil_h"), py::arg("dil_w"), py::arg("act_scale"),
        py::arg("act_zero_point"), py::arg("act_signed"), py::arg("relu"), py::arg("act") = "static",
        py::arg("out_scale") = 0.0, py::arg("out_zero_point") = 0, py::arg("out_signed") = false,
        py::arg("out_lo") = -INFINITY, py::arg("out_hi") = INFINITY);
  m.def("conv2d_depthwise", &conv2d_depthwise_py, py::arg("x"), py::arg("weight"), py::arg("scale"), py::arg("bias"),
        py::arg("kh"), py::arg("kw"), py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_h"), py::arg("pad_w"),
        py::arg("dil_h"), py::arg("dil_w"), py::arg("act_scale"), py::arg("act_zero_point"), py::arg("act_signed"),
        py::arg("relu"), py::arg("act") = "static", py::arg("out_scale") = 0.0, py::arg("out_zero_point") = 0,
        py::arg("out_signed") = false, py::arg("out_lo") = -INFINITY, py::arg("out_hi") = INFINITY);
  py::class_<DepthwiseConvPy>(m, "DepthwiseConv",
                              "A depthwise convolution with its int8 weights laid out once (conv2d_depthwise's "
                              "arguments but x and the output's); call it with x and the output parameters.")
      .def(py::init<const py::array&, const py::array&, const py::object&, int64_t, int64_t, int64_t, int64_t, int64_t,
                    int64_t, int64_t, int64_t, double, int32_t, bool, bool, const std::string&>(),
           py::arg("weight"), py::arg("scale"), py::arg("bias"), py::arg("kh"), py::arg("kw"), py::arg("stride_h"),
           py::arg("stride_w"), py::arg("pad_h"), py::arg("pad_w"), py::arg("dil_h"), py::arg("dil_w"),
           py::arg("act_scale"), py::arg("act_zero_point"), py::arg("act_signed"), py::arg("relu"),
           py::arg("act") = "static")
      .def("__call__", &DepthwiseConvPy::operator(), py::arg("x"), py::arg("out_scale") = 0.0,
           py::arg("out_zero_point") = 0, py::arg("out_signed") = false, py::arg("out_lo") = -INFINITY,
           py::arg("out_hi") = INFINITY);
}

}  // namespace bind
}  // namespace lowbit
