// Binding for im2col (convolution as a matmul): validate the array and geometry, allocate the
// patches, release the GIL. No arithmetic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "common.hpp"
#include "lowbit/im2col.hpp"

namespace lowbit {
namespace bind {

Im2colArgs im2col_geometry(const py::array& x, int64_t kh, int64_t kw, int64_t stride_h, int64_t stride_w,
                           int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w) {
  if (!has_dtype<float>(x) || x.ndim() != 4) type_error("x: expected a 4-D (N, H, W, C) float32 array, got " + dtype_str(x));
  if (kh < 1 || kw < 1) value_error("kernel_size: must be >= 1");
  if (stride_h < 1 || stride_w < 1) value_error("stride: must be >= 1");
  if (dil_h < 1 || dil_w < 1) value_error("dilation: must be >= 1");
  if (pad_h < 0 || pad_w < 0) value_error("padding: must be >= 0");
  Im2colArgs a{};
  a.x = static_cast<const float*>(x.data());
  a.n = x.shape(0);
  a.h = x.shape(1);
  a.w = x.shape(2);
  a.c = x.shape(3);
  for (int d = 0; d < 4; ++d)
    if (x.strides(d) % static_cast<py::ssize_t>(sizeof(float)) != 0) value_error("x: strides must be whole elements");
  a.sn = x.strides(0) / 4;
  a.sh = x.strides(1) / 4;
  a.sw = x.strides(2) / 4;
  a.sc = x.strides(3) / 4;
  a.kh = kh;
  a.kw = kw;
  a.stride_h = stride_h;
  a.stride_w = stride_w;
  a.pad_h = pad_h;
  a.pad_w = pad_w;
  a.dil_h = dil_h;
  a.dil_w = dil_w;
  const int64_t eh = a.h + 2 * pad_h - dil_h * (kh - 1) - 1, ew = a.w + 2 * pad_w - dil_w * (kw - 1) - 1;
  if (eh < 0 || ew < 0) value_error("x: input is smaller than the (dilated) kernel");
  a.ho = eh / stride_h + 1;
  a.wo = ew / stride_w + 1;
  return a;
}

namespace {

py::array im2col_py(const py::array& x, int64_t kh, int64_t kw, int64_t stride_h, int64_t stride_w, int64_t pad_h,
                    int64_t pad_w, int64_t dil_h, int64_t dil_w) {
  const Im2colArgs a = im2col_geometry(x, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w);
  py::array out(py::dtype::of<float>(), std::vector<int64_t>{a.n * a.ho * a.wo, kh * kw * a.c});
  float* o = static_cast<float*>(out.mutable_data());
  {
    py::gil_scoped_release release;
    im2col_nhwc(a, o);
  }
  return out;
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("im2col", &im2col_py, py::arg("x"), py::arg("kh"), py::arg("kw"), py::arg("stride_h"), py::arg("stride_w"),
        py::arg("pad_h"), py::arg("pad_w"), py::arg("dil_h"), py::arg("dil_w"));
}

}  // namespace bind
}  // namespace lowbit
