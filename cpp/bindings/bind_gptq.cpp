// Bindings for the GPTQ column loop: validate the arrays (dtypes, shapes, writable results, group
// indices, zero points, codebook sizes), release the GIL around the op. No arithmetic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "common.hpp"
#include "lowbit/gptq.hpp"

namespace lowbit {
namespace bind {
namespace {

float* require_f32_out(py::array& a, int64_t n, int64_t k, const char* name) {
  require_dtype<float>(a, name, "a float32 array");
  require_contiguous(a, name);
  if (!a.writeable()) value_error(std::string(name) + ": array is read-only");
  if (shape_of(a) != std::vector<int64_t>{n, k})
    value_error(std::string(name) + ": expected shape (" + std::to_string(n) + ", " + std::to_string(k) + ")");
  return static_cast<float*>(a.mutable_data());
}

void gptq_columns_py(py::array x, const py::array& w, py::array q, py::array delta, const py::array& a, int64_t begin,
                     int64_t end, const py::array& scale, const py::object& zero_point, const py::array& group,
                     int32_t qmin, int32_t qmax, const py::object& levels, const py::object& thresholds) {
  require_ndim(w, 2, "w");
  const int64_t n = w.shape(0), k = w.shape(1);
  const float* pw = require_f32(w, "w");
  float* px = require_f32_out(x, n, k, "x");
  float* pq = require_f32_out(q, n, k, "q");
  float* pd = require_f32_out(delta, n, k, "delta");
  const float* pa = require_f32(a, "a");
  if (shape_of(a) != std::vector<int64_t>{k, k}) value_error("a: expected shape (k, k) with k = w.shape[1]");
  if (begin < 0 || end < begin || end > k) value_error("begin/end: expected 0 <= begin <= end <= " + std::to_string(k));
  require_ndim(scale, 2, "scale");
  const float* ps = require_f32(scale, "scale");
  const int64_t groups = scale.shape(1);
  if (scale.shape(0) != n || (groups < 1 && n * k > 0)) value_error("scale: expected shape (n, groups), groups >= 1");
  require_dtype<int32_t>(group, "group", "an int32 array");
  require_contiguous(group, "group");
  if (group.ndim() != 1 || group.shape(0) != k) value_error("group: expected shape (k,)");
  const int32_t* pg = static_cast<const int32_t*>(group.data());
  for (int64_t j = 0; j < k; ++j)
    if (pg[j] < 0 || pg[j] >= groups) value_error("group: indices must lie in [0, groups)");
  GptqGrid grid{ps, nullptr, pg, groups, qmin, qmax, nullptr, nullptr, 0};
  if (levels.is_none() != thresholds.is_none()) value_error("levels/thresholds: give both or neither");
  if (!levels.is_none()) {
    const py::array lv = levels.cast<py::array>(), th = thresholds.cast<py::array>();
    grid.levels = require_f32(lv, "levels");
    grid.thresholds = require_f32(th, "thresholds");
    if (lv.ndim() != 1 || lv.shape(0) < 2 || lv.shape(0) > 256) value_error("levels: expected 2 to 256 levels");
    if (th.ndim() != 1 || th.shape(0) != lv.shape(0) - 1) value_error("thresholds: expected len(levels) - 1 values");
    grid.n_levels = static_cast<int32_t>(lv.shape(0));
    if (!zero_point.is_none()) value_error("zero_point: a codebook grid has none");
  } else {
    constexpr int32_t kLimit = 1 << 24;
    if (qmin > qmax || qmin < -kLimit || qmax > kLimit)
      value_error("qmin/qmax: expected -2**24 <= qmin <= qmax <= 2**24");
    if (!zero_point.is_none()) {
      const py::array zp = zero_point.cast<py::array>();
      require_dtype<int32_t>(zp, "zero_point", "an int32 array");
      require_contiguous(zp, "zero_point");
      if (shape_of(zp) != shape_of(scale)) value_error("zero_point: expected the shape of scale");
      grid.zero_point = static_cast<const int32_t*>(zp.data());
      for (int64_t i = 0; i < zp.size(); ++i)
        if (grid.zero_point[i] < qmin || grid.zero_point[i] > qmax) value_error("zero_point: must lie in [qmin, qmax]");
    }
  }
  py::gil_scoped_release release;
  gptq_columns(px, pw, pq, pd, pa, n, k, begin, end, grid);
}

}  // namespace

void bind_gptq(py::module_& m) {
  m.def("gptq_columns", &gptq_columns_py, py::arg("x"), py::arg("w"), py::arg("q"), py::arg("delta"), py::arg("a"),
        py::arg("begin"), py::arg("end"), py::arg("scale"), py::arg("zero_point"), py::arg("group"), py::arg("qmin"),
        py::arg("qmax"), py::arg("levels"), py::arg("thresholds"),
        "GPTQ's column loop over columns [begin, end) in place (x, q, delta; see lowbit/gptq.hpp): "
        "affine grid (scale, zero_point, qmin, qmax) or codebook grid (scale = absmax, levels, thresholds).");
}

}  // namespace bind
}  // namespace lowbit
