// Binding for the float32 x 4-bit-weight linear op: validate arrays and shapes, allocate the
// result, release the GIL. No arithmetic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "common.hpp"
#include "lowbit/linear4.hpp"

namespace lowbit {
namespace bind {
namespace {

py::array linear_4bit_py(const py::array& x, const py::array& w, const py::array& scales, const py::object& bias,
                         int64_t group, const std::string& kind) {
  if (kind != "int4" && kind != "nf4") value_error("kind: expected 'int4' or 'nf4', got '" + kind + "'");
  if (!has_dtype<float>(x) || x.ndim() != 2) type_error("x: expected a 2-D float32 array, got " + dtype_str(x));
  require_contiguous(x, "x");
  if (!has_dtype<uint8_t>(w) || w.ndim() != 2) type_error("w: expected 2-D uint8 packed weights, got " + dtype_str(w));
  require_contiguous(w, "w");
  if (!has_dtype<float>(scales) || scales.ndim() != 2) type_error("scales: expected a 2-D float32 array");
  require_contiguous(scales, "scales");
  const int64_t m = x.shape(0), k = x.shape(1), n = w.shape(0);
  if (group <= 0 || group % 32 != 0 || k % group != 0)
    value_error("group_size: must be a positive multiple of 32 that divides K = " + std::to_string(k));
  if (w.shape(1) != k / 2) value_error("w: expected K / 2 packed bytes per row");
  if (scales.shape(0) != n || scales.shape(1) != k / group) value_error("scales: expected shape (N, K / group_size)");
  const float* b = nullptr;
  py::array bias_arr;
  if (!bias.is_none()) {
    bias_arr = bias.cast<py::array>();
    if (!has_dtype<float>(bias_arr) || bias_arr.ndim() != 1 || bias_arr.shape(0) != n)
      value_error("bias: expected float32 of shape (N,)");
    require_contiguous(bias_arr, "bias");
    b = static_cast<const float*>(bias_arr.data());
  }
  py::array y(py::dtype::of<float>(), std::vector<int64_t>{m, n});
  Linear4Args a{static_cast<const float*>(x.data()), m, k, k, static_cast<const uint8_t*>(w.data()),
                static_cast<const float*>(scales.data()), b, group, static_cast<float*>(y.mutable_data()), n};
  const bool nf4 = kind == "nf4";
  {
    py::gil_scoped_release release;
    if (m > 0 && n > 0) linear_f32_4bit(a, n, nf4);
  }
  return y;
}

}  // namespace

void bind_linear4(py::module_& m) {
  m.def("linear_4bit", &linear_4bit_py, py::arg("x"), py::arg("w"), py::arg("scales"), py::arg("bias"),
        py::arg("group_size"), py::arg("kind"));
}

}  // namespace bind
}  // namespace lowbit
