// Bindings for quantize / dequantize / fake_quantize: validate arrays and parameters, allocate
// the result, release the GIL around the op. No arithmetic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include "common.hpp"
#include "lowbit/quantize.hpp"

namespace lowbit {
namespace bind {
namespace {

QDtype parse_dtype(const std::string& s) {
  if (s == "int8") return QDtype::kInt8;
  if (s == "uint8") return QDtype::kUint8;
  if (s == "int4") return QDtype::kInt4;
  if (s == "uint4") return QDtype::kUint4;
  value_error("dtype: expected one of 'int8', 'uint8', 'int4', 'uint4', got '" + s + "'");
}

ParamMode parse_mode(const std::string& s) {
  if (s == "tensor") return ParamMode::kTensor;
  if (s == "row") return ParamMode::kRow;
  if (s == "element") return ParamMode::kElement;
  if (s == "group") return ParamMode::kGroup;
  value_error("mode: expected 'tensor', 'row', 'element' or 'group', got '" + s + "'");
}

// Holds the parameter arrays alive and the layout that points into them.
struct Layout {
  QuantLayout l;
  InArray<float> scale;
  InArray<int32_t> zp;
};

Layout make_layout(const std::vector<int64_t>& shape, const std::string& dtype, const std::string& mode,
                   int64_t row_div, int64_t group_size, const py::object& scale_in, const py::object& zp_in,
                   int32_t qmin, int32_t qmax) {
  Layout L;
  QuantLayout& l = L.l;
  l.dtype = parse_dtype(dtype);
  l.mode = parse_mode(mode);
  const int bits = qdtype_bits(l.dtype);
  const bool sgn = qdtype_signed(l.dtype);
  const int32_t lo = sgn ? -(1 << (bits - 1)) : 0;
  const int32_t hi = sgn ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
  if (qmin < lo || qmax > hi || qmin > qmax)
    value_error("qmin/qmax: [" + std::to_string(qmin) + ", " + std::to_string(qmax) + "] is not inside the " + dtype +
                " range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  l.qmin = qmin;
  l.qmax = qmax;
  checked_numel(shape, "shape");
  l.cols = shape.empty() ? 1 : shape.back();
  l.rows = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) l.rows *= shape[i];  // cannot overflow: the product is checked
  L.scale = InArray<float>::ensure(scale_in);
  L.zp = InArray<int32_t>::ensure(zp_in);
  if (!L.scale || !L.zp) type_error("scale and zero_point must be numeric arrays");
  const int64_t n = L.scale.size();
  if (L.zp.size() != n)
    value_error("zero_point: expected " + std::to_string(n) + " values (one per scale), got " +
                std::to_string(L.zp.size()));
  l.n_params = n;
  int64_t expected = 1;
  switch (l.mode) {
    case ParamMode::kTensor:
      expected = 1;
      break;
    case ParamMode::kRow:
      if (row_div < 1) value_error("row_div must be >= 1");
      expected = n;
      if (n == 0 ? l.rows * l.cols != 0 : l.rows % checked_mul(row_div, n, "scale") != 0)
        value_error("scale: per-channel size does not match the tensor's shape");
      break;
    case ParamMode::kElement:
      expected = l.cols;
      break;
    case ParamMode::kGroup:
      if (group_size < 1) value_error("group_size: must be >= 1, got " + std::to_string(group_size));
      check_group_cap(group_size, "group_size");
      expected = l.rows * ceil_div(l.cols, group_size);  // <= rows * cols
      break;
  }
  if (n != expected && !(n >= 1 && l.rows * l.cols == 0 && l.mode != ParamMode::kTensor))
    value_error("scale: expected " + std::to_string(expected) + " values for this granularity, got " +
                std::to_string(n));
  l.row_div = row_div;
  l.group_size = group_size;
  const float* s = L.scale.data();
  const int32_t* z = L.zp.data();
  for (int64_t i = 0; i < n; ++i) {
    if (!(std::isfinite(s[i]) && s[i] > 0.0f))
      value_error("scale: every scale must be finite and > 0, got " + std::to_string(s[i]) + " at index " +
                  std::to_string(i));
    if (!scale_ok(s[i]))
      value_error("scale: " + std::to_string(s[i]) + " at index " + std::to_string(i) +
                  " is so small that 1/scale overflows float32");
    if (z[i] < qmin || z[i] > qmax)
      value_error("zero_point: " + std::to_string(z[i]) + " at index " + std::to_string(i) + " is outside [" +
                  std::to_string(qmin) + ", " + std::to_string(qmax) + "]");
  }
  l.scale = s;
  l.zero_point = z;
  return L;
}

Rounding make_rounding(const std::string& rounding, uint64_t seed) {
  Rounding r;
  if (rounding == "stochastic") {
    r.stochastic = true;
    r.seed = seed;
  } else if (rounding != "nearest") {
    value_error("rounding: expected 'nearest' or 'stochastic', got '" + rounding + "'");
  }
  return r;
}

// A caller-provided float32 result buffer, or a new one of `shape`.
py::array float_out(const py::object& out_obj, const std::vector<int64_t>& shape) {
  if (out_obj.is_none()) return pooled_array<float>(shape);
  if (!py::isinstance<py::array>(out_obj)) type_error("out: expected a NumPy float32 array");
  py::array out = out_obj.cast<py::array>();
  require_dtype<float>(out, "out", "float32");
  require_out(out, shape, "the result");
  return out;
}

// x: a C-contiguous float32 (returns true) or float16 (false) array.
bool require_f32_or_f16(const py::array& x) {
  const bool f32 = has_dtype<float>(x);
  if (!f32 && !is_f16(x)) type_error("x: expected a float32 or float16 array, got " + dtype_str(x));
  require_contiguous(x, "x");
  return f32;
}

py::array quantize_py(const py::array& x, const std::string& dtype, const std::string& mode, int64_t row_div,
                      int64_t group_size, const py::object& scale, const py::object& zp, int32_t qmin, int32_t qmax,
                      const std::string& rounding, uint64_t seed, const py::object& out_obj) {
  const bool f32 = require_f32_or_f16(x);
  auto shape = shape_of(x);
  Layout L = make_layout(shape, dtype, mode, row_div, group_size, scale, zp, qmin, qmax);
  Rounding r = make_rounding(rounding, seed);
  std::vector<int64_t> out_shape = shape;
  if (!out_shape.empty()) out_shape.back() = L.l.row_bytes();
  const bool sgn = qdtype_signed(L.l.dtype);
  py::array out;
  if (out_obj.is_none()) {
    out = sgn ? pooled_array<int8_t>(out_shape) : pooled_array<uint8_t>(out_shape);
  } else {
    if (!py::isinstance<py::array>(out_obj)) type_error("out: expected a NumPy array");
    out = out_obj.cast<py::array>();
    if (!(sgn ? has_dtype<int8_t>(out) : has_dtype<uint8_t>(out)))
      type_error("out: expected " + std::string(sgn ? "int8" : "uint8") + " for dtype " + dtype + ", got " +
                 dtype_str(out));
    require_out(out, out_shape, "the quantized data");
  }
  auto* q = static_cast<uint8_t*>(out.mutable_data());
  const void* src = x.data();
  {
    py::gil_scoped_release release;
    if (f32)
      quantize(static_cast<const float*>(src), L.l, r, q);
    else
      quantize_f16(static_cast<const uint16_t*>(src), L.l, r, q);
  }
  return out;
}

py::array fake_quantize_py(const py::array& x, const std::string& dtype, const std::string& mode, int64_t row_div,
                           int64_t group_size, const py::object& scale, const py::object& zp, int32_t qmin,
                           int32_t qmax, const std::string& rounding, uint64_t seed, const py::object& out_obj) {
  const bool f32 = require_f32_or_f16(x);
  auto shape = shape_of(x);
  Layout L = make_layout(shape, dtype, mode, row_div, group_size, scale, zp, qmin, qmax);
  Rounding r = make_rounding(rounding, seed);
  py::array out = float_out(out_obj, shape);
  auto* o = static_cast<float*>(out.mutable_data());
  const void* src = x.data();
  if (src == o) value_error("out: must not be the input array (kernels do not run in place)");
  {
    py::gil_scoped_release release;
    if (f32)
      fake_quantize(static_cast<const float*>(src), L.l, r, o);
    else
      fake_quantize_f16(static_cast<const uint16_t*>(src), L.l, r, o);
  }
  return out;
}

py::array dequantize_py(const py::array& q, const std::vector<int64_t>& shape, const std::string& dtype,
                        const std::string& mode, int64_t row_div, int64_t group_size, const py::object& scale,
                        const py::object& zp, int32_t qmin, int32_t qmax, const py::object& out_obj) {
  Layout L = make_layout(shape, dtype, mode, row_div, group_size, scale, zp, qmin, qmax);
  const bool want_signed = qdtype_signed(L.l.dtype);
  if (!(want_signed ? has_dtype<int8_t>(q) : has_dtype<uint8_t>(q)))
    type_error("q: expected " + std::string(want_signed ? "int8" : "uint8") + " data for dtype " + dtype + ", got " +
               dtype_str(q));
  require_contiguous(q, "q");
  std::vector<int64_t> data_shape = shape;
  if (!data_shape.empty()) data_shape.back() = L.l.row_bytes();
  if (shape_of(q) != data_shape) value_error("q: stored data shape does not match the logical shape");
  py::array out = float_out(out_obj, shape);
  auto* o = static_cast<float*>(out.mutable_data());
  const auto* src = static_cast<const uint8_t*>(q.data());
  {
    py::gil_scoped_release release;
    dequantize(src, L.l, o);
  }
  return out;
}

}  // namespace

void bind_quantize(py::module_& m) {
  m.def("quantize", &quantize_py, py::arg("x"), py::arg("dtype"), py::arg("mode"), py::arg("row_div"),
        py::arg("group_size"), py::arg("scale"), py::arg("zero_point"), py::arg("qmin"), py::arg("qmax"),
        py::arg("rounding"), py::arg("seed"), py::arg("out") = py::none());
  m.def("fake_quantize", &fake_quantize_py, py::arg("x"), py::arg("dtype"), py::arg("mode"), py::arg("row_div"),
        py::arg("group_size"), py::arg("scale"), py::arg("zero_point"), py::arg("qmin"), py::arg("qmax"),
        py::arg("rounding"), py::arg("seed"), py::arg("out") = py::none());
  m.def("dequantize", &dequantize_py, py::arg("q"), py::arg("shape"), py::arg("dtype"), py::arg("mode"),
        py::arg("row_div"), py::arg("group_size"), py::arg("scale"), py::arg("zero_point"), py::arg("qmin"),
        py::arg("qmax"), py::arg("out") = py::none());
}

}  // namespace bind
}  // namespace lowbit
